package db_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/asyncsip/asyncsip/async"
	"github.com/asyncsip/asyncsip/internal/testenv"
	"github.com/asyncsip/asyncsip/modules/db"
	"github.com/asyncsip/asyncsip/reactor"
)

// dialect is what differs between the databases the op suite runs on.
type dialect struct {
	name     string
	open     func(t testing.TB, opts ...db.Option) *db.Handle
	ph       func(i int) string // placeholder of argument i (1-based)
	schema   string             // CREATE TABLE %s (...) for the suite's table
	insertID bool               // Exec reports LastInsertID
	// slow is a statement that runs for far longer than any test waits.
	slow string
	// echo is a statement returning its one text argument followed by "x".
	echo string
}

var sqliteSchema = `CREATE TABLE %s (id INTEGER PRIMARY KEY, name TEXT NOT NULL, score REAL, data BLOB, note TEXT)`

func sqliteDialect(dsn func(t testing.TB) string) dialect {
	return dialect{
		name: "sqlite",
		open: func(t testing.TB, opts ...db.Option) *db.Handle {
			return open(t, "sqlite", dsn(t), opts...)
		},
		ph:       func(int) string { return "?" },
		schema:   sqliteSchema,
		insertID: true,
		slow:     slowSQLite,
		echo:     "SELECT CAST(? AS TEXT) || 'x'",
	}
}

// slowSQLite counts to 10^10 in a recursive CTE: minutes of CPU, unless
// interrupted.
const slowSQLite = `WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x < 10000000000) SELECT count(*) FROM c`

func memoryDSN(testing.TB) string { return ":memory:" }

func fileDSN(t testing.TB) string { return "file:" + filepath.Join(t.TempDir(), "test.db") }

func TestOpsSQLite(t *testing.T) {
	t.Run("memory", func(t *testing.T) { t.Parallel(); opSuite(t, sqliteDialect(memoryDSN)) })
	t.Run("file", func(t *testing.T) { t.Parallel(); opSuite(t, sqliteDialect(fileDSN)) })
}

// opSuite runs every op against a real database: Exec, Query, QueryRow,
// typed and named access, NULLs, Scan, ErrNoRows, bad SQL, limits.
func opSuite(t *testing.T, d dialect) {
	l := testenv.StartLoop(t)
	obs := &recorder{}
	h := d.open(t, db.WithObserver(obs))
	table := fmt.Sprintf("suite_%d", time.Now().UnixNano())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := h.ExecContext(ctx, fmt.Sprintf(d.schema, table))
	require.NoError(t, err)
	t.Cleanup(func() { _, _ = h.ExecContext(context.Background(), "DROP TABLE "+table) })
	p := d.ph

	insert := fmt.Sprintf("INSERT INTO %s (name, score, data, note) VALUES (%s, %s, %s, %s)", table, p(1), p(2), p(3), p(4))
	rows := []struct {
		name  string
		score float64
		data  []byte
		note  any
	}{
		{"alice", 1.5, []byte{0, 1, 2}, "first"},
		{"bob", 2, nil, nil},
		{"carol", -3.25, []byte("xyz"), "third"},
	}
	var lastID int64
	for _, r := range rows {
		res := must(t, l, h.Exec(insert, r.name, r.score, r.data, r.note))
		require.Equal(t, int64(1), res.RowsAffected)
		if d.insertID {
			require.Greater(t, res.LastInsertID, lastID)
			lastID = res.LastInsertID
		}
	}

	t.Run("Query", func(t *testing.T) {
		rs := must(t, l, h.Query(fmt.Sprintf("SELECT id, name, score, data, note FROM %s ORDER BY id", table)))
		require.Equal(t, 3, rs.Len())
		require.Equal(t, []string{"id", "name", "score", "data", "note"}, rs.Columns())
		require.Equal(t, 2, rs.Index("score"))
		require.Equal(t, 1, rs.Index("NAME"))
		require.Equal(t, -1, rs.Index("nope"))
		var names []string
		for i, row := range rs.All() {
			require.Equal(t, rows[i].name, row.String(1))
			require.Equal(t, rows[i].name, row.Named("name").String())
			require.Equal(t, rows[i].score, row.Float(2))
			require.Equal(t, rows[i].data, row.Bytes(3))
			require.Equal(t, rows[i].note == nil, row.IsNull(4))
			names = append(names, row.Named("name").String())
		}
		require.Equal(t, []string{"alice", "bob", "carol"}, names)
		first := rs.Row(0)
		require.Equal(t, first.Int(0), first.Named("id").Int())
		require.Equal(t, "1.5", first.String(2))
		require.Equal(t, int64(-3), rs.Row(2).Int(2), "lenient Int truncates")
		require.True(t, rs.Row(1).IsNull(3), "NULL blob")
		require.Equal(t, "", rs.Row(1).String(4), "NULL reads as empty")
		require.True(t, rs.Row(9).IsNull(0), "a row out of range reads as NULL")
		require.False(t, first.Named("nope").Exists())
		require.True(t, first.Named("note").Exists())

		var (
			id    int64
			name  string
			score float64
			data  []byte
			note  *string
		)
		require.NoError(t, rs.Row(1).Scan(&id, &name, &score, &data, &note))
		require.Equal(t, "bob", name)
		require.Equal(t, 2.0, score)
		require.Nil(t, data)
		require.Nil(t, note, "NULL into **string")
		require.NoError(t, rs.Row(0).Scan(&id, &name, &score, &data, &note))
		require.NotNil(t, note)
		require.Equal(t, "first", *note)
		require.Equal(t, []byte{0, 1, 2}, data)
		var plain string
		err := rs.Row(1).Scan(&id, &name, &score, &data, &plain)
		require.ErrorIs(t, err, db.ErrScan, "NULL into *string")
		require.Contains(t, err.Error(), "note")
	})

	t.Run("QueryRow", func(t *testing.T) {
		row := must(t, l, h.QueryRow(fmt.Sprintf("SELECT name, score, note FROM %s WHERE name = %s", table, p(1)), "carol"))
		require.Equal(t, "carol", row.String(0))
		require.Equal(t, -3.25, row.Named("score").Float())
		var ns sql.NullString
		var f float32
		var s string
		require.NoError(t, row.Scan(&s, &f, &ns))
		require.Equal(t, sql.NullString{String: "third", Valid: true}, ns)
		require.Equal(t, float32(-3.25), f)
	})

	t.Run("ErrNoRows", func(t *testing.T) {
		before := h.Stats()
		o := run(t, l, h.QueryRow(fmt.Sprintf("SELECT name FROM %s WHERE name = %s", table, p(1)), "nobody"))
		require.ErrorIs(t, o.err, db.ErrNoRows)
		require.Zero(t, o.v.Len())
		after := h.Stats()
		require.Equal(t, before.Errors, after.Errors, "an empty result is not an error")
		require.Equal(t, before.NoRows+1, after.NoRows)
		_, ok := obs.last(db.ErrNoRows)
		require.True(t, ok, "observer saw the empty result")
	})

	t.Run("Exec", func(t *testing.T) {
		res := must(t, l, h.Exec(fmt.Sprintf("UPDATE %s SET score = score + 1 WHERE score > %s", table, p(1)), 0))
		require.Equal(t, int64(2), res.RowsAffected)
		rs := must(t, l, h.Query(fmt.Sprintf("SELECT score FROM %s WHERE score > %s ORDER BY score", table, p(1)), 0))
		require.Equal(t, 2, rs.Len())
		require.Equal(t, 2.5, rs.Row(0).Float(0))
		require.Equal(t, 3.0, rs.Row(1).Float(0))
	})

	t.Run("BadSQL", func(t *testing.T) {
		for _, q := range []string{"SELEC nothing", "SELECT * FROM no_such_table_xyz"} {
			o := run(t, l, h.Query(q))
			require.Error(t, o.err, q)
			require.NotErrorIs(t, o.err, db.ErrNoRows)
			require.NotErrorIs(t, o.err, db.ErrUnavailable)
			require.Contains(t, o.err.Error(), db.OpQuery)
			o2 := run(t, l, h.QueryRow(q))
			require.Error(t, o2.err)
			require.NotErrorIs(t, o2.err, db.ErrNoRows, "an error is not an empty result")
			o3 := run(t, l, h.Exec(q))
			require.Error(t, o3.err)
		}
		_, ok := obs.last(nil)
		require.True(t, ok)
	})

	t.Run("Limits", func(t *testing.T) {
		small := d.open(t, db.MaxRows(2), db.MaxBytes(64))
		q := "SELECT 1 AS n UNION ALL SELECT 2 UNION ALL SELECT 3 ORDER BY n"
		o := run(t, l, small.Query(q))
		require.ErrorIs(t, o.err, db.ErrTooLarge)
		require.Contains(t, o.err.Error(), "MaxRows")
		require.Nil(t, o.v)
		// QueryRow reads one row: the row bound does not apply.
		require.Equal(t, int64(1), must(t, l, small.QueryRow(q)).Int(0))
		// 100 bytes of text in one value is over MaxBytes.
		o2 := run(t, l, small.QueryRow(d.echo, strings.Repeat("x", 100)))
		require.ErrorIs(t, o2.err, db.ErrTooLarge)
		require.Contains(t, o2.err.Error(), "MaxBytes")
		// The handle is fine afterwards.
		require.Equal(t, 2, must(t, l, small.Query("SELECT 1 UNION ALL SELECT 2")).Len())
	})

	t.Run("SyncHelpers", func(t *testing.T) {
		rs, err := h.QueryContext(ctx, fmt.Sprintf("SELECT count(*) FROM %s", table))
		require.NoError(t, err)
		require.Equal(t, int64(3), rs.Row(0).Int(0))
		row, err := h.QueryRowContext(ctx, fmt.Sprintf("SELECT name FROM %s WHERE name = %s", table, p(1)), "bob")
		require.NoError(t, err)
		require.Equal(t, "bob", row.String(0))
		_, err = h.QueryRowContext(ctx, fmt.Sprintf("SELECT name FROM %s WHERE name = %s", table, p(1)), "zed")
		require.ErrorIs(t, err, db.ErrNoRows)
		require.NoError(t, h.PingContext(ctx))
	})

	t.Run("SlowQueryTimeout", func(t *testing.T) {
		slowSuite(t, d, l)
	})
}

// slowSuite checks that the handle's Timeout, an await's timeout and an
// aborted await all cancel a running statement in the driver: the worker
// is freed long before the statement could have finished.
func slowSuite(t *testing.T, d dialect, l *reactor.Loop) {
	t.Run("HandleTimeout", func(t *testing.T) {
		obs := &recorder{}
		h := d.open(t, db.Timeout(200*time.Millisecond), db.WithObserver(obs))
		o := run(t, l, h.QueryRow(d.slow), async.Timeout(30*time.Second))
		require.ErrorIs(t, o.err, async.ErrTimeout)
		require.Equal(t, uint64(1), h.Stats().Timeouts)
		testenv.Eventually(t, 10*time.Second, "worker free", func() bool { return h.Stats().Pool.Busy == 0 })
	})
	t.Run("AwaitTimeout", func(t *testing.T) {
		obs := &recorder{}
		h := d.open(t, db.Timeout(time.Minute), db.WithObserver(obs))
		o := run(t, l, h.QueryRow(d.slow), async.Timeout(200*time.Millisecond))
		require.ErrorIs(t, o.err, async.ErrTimeout)
		// The statement was cancelled in the driver: it reports a
		// cancellation, not a result, and the worker is free.
		testenv.Eventually(t, 10*time.Second, "statement cancelled", func() bool { _, ok := obs.last(context.Canceled); return ok })
		testenv.Eventually(t, 10*time.Second, "worker free", func() bool { return h.Stats().Pool.Busy == 0 })
	})
	t.Run("Abort", func(t *testing.T) {
		obs := &recorder{}
		h := d.open(t, db.Timeout(time.Minute), db.WithObserver(obs))
		c := &fakeCtx{loop: l}
		resumed := make(chan error, 1)
		testenv.OnLoop(t, l, func() {
			async.Await(c, h.QueryRow(d.slow), func(_ db.Row, err error) { resumed <- err }, async.Timeout(time.Minute))
		})
		// A connection in use: the statement is in the driver.
		testenv.Eventually(t, 10*time.Second, "statement running", func() bool { return h.Stats().DB.InUse == 1 })
		testenv.OnLoop(t, l, c.end) // the transaction ends while suspended
		testenv.Eventually(t, 10*time.Second, "worker free", func() bool { return h.Stats().Pool.Busy == 0 })
		ev, ok := obs.last(nil)
		require.True(t, ok)
		require.ErrorIs(t, ev.err, context.Canceled, "statement cancelled")
		select {
		case err := <-resumed:
			t.Fatalf("resume ran after the context ended: %v", err)
		default:
		}
	})
}

func TestOverloaded(t *testing.T) {
	t.Parallel()
	l := testenv.StartLoop(t)
	obs := &recorder{}
	h := open(t, "sqlite", fileDSN(t), db.Workers(1), db.Queue(-1), db.Timeout(2*time.Second), db.WithObserver(obs))
	slow := make(chan outcome[db.Row], 1)
	testenv.OnLoop(t, l, func() {
		async.Launch(l, h.QueryRow(slowSQLite), func(v db.Row, err error) { slow <- outcome[db.Row]{v: v, err: err} },
			async.Timeout(20*time.Second))
	})
	testenv.Eventually(t, 10*time.Second, "slow query running", func() bool { return h.Stats().Pool.Busy == 1 })

	o := run(t, l, h.QueryRow("SELECT 1"))
	require.ErrorIs(t, o.err, async.ErrOverloaded)
	require.True(t, o.inline, "a full pool fails the op at once, without suspending")
	require.Equal(t, uint64(1), h.Stats().Rejected)
	obs.mu.Lock()
	require.Equal(t, []string{db.OpQueryRow}, obs.rejected)
	obs.mu.Unlock()

	// Closing the handle cancels the running query and rejects new ops.
	require.NoError(t, h.Close())
	require.Error(t, testenv.Wait(t, 10*time.Second, slow, "slow query cancelled").err)
	oe := run(t, l, h.Exec("SELECT 1"))
	require.ErrorIs(t, oe.err, db.ErrClosed)
	_, err := h.ExecContext(context.Background(), "SELECT 1")
	require.ErrorIs(t, err, db.ErrClosed)
	require.ErrorIs(t, h.PingContext(context.Background()), db.ErrClosed)
	require.NoError(t, h.Close(), "Close is idempotent")
}

// Concurrent writers on a file database wait for each other (busy timeout)
// instead of failing with SQLITE_BUSY.
func TestConcurrentWritersSQLite(t *testing.T) {
	t.Parallel()
	l := testenv.StartLoop(t)
	h := open(t, "sqlite", fileDSN(t), db.Workers(8))
	_, err := h.ExecContext(context.Background(), `CREATE TABLE w (n INTEGER); CREATE INDEX w_n ON w (n)`)
	require.NoError(t, err, "a script of several statements")
	const n = 200
	got := make(chan error, n)
	testenv.OnLoop(t, l, func() {
		for i := range n {
			async.Launch(l, h.Exec("INSERT INTO w (n) VALUES (?)", i), func(_ db.Result, err error) { got <- err })
		}
	})
	for range n {
		require.NoError(t, testenv.Wait(t, 10*time.Second, got, "insert"))
	}
	row := must(t, l, h.QueryRow("SELECT count(*), sum(n) FROM w"))
	require.Equal(t, int64(n), row.Int(0))
	require.Equal(t, int64(n*(n-1)/2), row.Int(1))
	s := h.Stats()
	require.Equal(t, 2, s.StmtCached, "INSERT and SELECT cached")
	require.LessOrEqual(t, s.Pool.Workers, 8)
}

func TestStmtCacheBounded(t *testing.T) {
	t.Parallel()
	l := testenv.StartLoop(t)
	h := open(t, "sqlite", ":memory:", db.StmtCache(2))
	for round := range 3 {
		for i := range 5 {
			require.Equal(t, int64(i+round), must(t, l, h.QueryRow(fmt.Sprintf("SELECT %d + ?", i), round)).Int(0))
		}
	}
	s := h.Stats()
	require.Equal(t, 2, s.StmtCached)
	require.Equal(t, uint64(15), s.StmtPrepares, "LRU of 2 cycling over 5 statements never hits")
	for range 3 {
		must(t, l, h.QueryRow("SELECT 4 + ?", 0))
	}
	require.Equal(t, uint64(3), h.Stats().StmtHits)

	off := open(t, "sqlite", ":memory:", db.StmtCache(-1))
	require.Equal(t, "7", must(t, l, off.QueryRow("SELECT 3 + ?", 4)).String(0))
	require.Zero(t, off.Stats().StmtPrepares)
}

// Many ops at once over a cache of one statement: eviction never closes a
// statement in use.
func TestStmtCacheConcurrentEviction(t *testing.T) {
	t.Parallel()
	l := testenv.StartLoop(t)
	h := open(t, "sqlite", fileDSN(t), db.StmtCache(1), db.Workers(8), db.Queue(512))
	const n = 300
	got := make(chan error, n)
	testenv.OnLoop(t, l, func() {
		for i := range n {
			q := fmt.Sprintf("SELECT %d + ?", i%7)
			async.Launch(l, h.QueryRow(q, i), func(r db.Row, err error) {
				if err == nil && r.Int(0) != int64(i%7+i) {
					err = fmt.Errorf("got %d", r.Int(0))
				}
				got <- err
			}, async.Timeout(20*time.Second))
		}
	})
	for range n {
		require.NoError(t, testenv.Wait(t, 10*time.Second, got, "query"))
	}
}

// A MySQL server that is not there: the real driver fails promptly with
// ErrUnavailable, and a connect to a port that drops nothing is bounded by
// the handle's Timeout.
func TestUnavailableMySQL(t *testing.T) {
	t.Parallel()
	l := testenv.StartLoop(t)
	port := testenv.FreeTCPPort(t)
	h := open(t, "mysql", fmt.Sprintf("u:p@tcp(127.0.0.1:%d)/x", port), db.Timeout(2*time.Second))
	o := run(t, l, h.QueryRow("SELECT 1"))
	require.ErrorIs(t, o.err, db.ErrUnavailable)
	require.NotErrorIs(t, o.err, async.ErrTimeout)
	require.Equal(t, uint64(1), h.Stats().Errors)
}

func TestOpenErrors(t *testing.T) {
	t.Parallel()
	_, err := db.Open("no-such-driver", "x")
	require.Error(t, err)
	require.Contains(t, err.Error(), "no-such-driver")
	_, err = db.Open("pgx", "postgres://%zz")
	require.Error(t, err)
}

func TestConfigDefaults(t *testing.T) {
	t.Parallel()
	h := open(t, "sqlite", fileDSN(t), db.WithConfig(db.Config{Workers: 3}), db.MaxRows(5))
	c := h.Config()
	require.Equal(t, 3, c.Workers)
	require.Equal(t, 3, c.MaxOpenConns)
	require.Equal(t, 3, c.MaxIdleConns)
	require.Equal(t, db.DefaultQueue, c.Queue)
	require.Equal(t, 5, c.MaxRows)
	require.Equal(t, int64(db.DefaultMaxBytes), c.MaxBytes)
	require.Equal(t, db.DefaultTimeout, c.Timeout)
	require.Equal(t, db.DefaultStmtCache, c.StmtCache)
	m := open(t, "sqlite", ":memory:", db.Workers(4))
	require.Equal(t, 1, m.Config().MaxOpenConns, "an in-memory database has one connection")
}

// Chained ops on several loops at once, under -race.
func TestManyLoops(t *testing.T) {
	t.Parallel()
	h := open(t, "sqlite", fileDSN(t), db.Workers(4))
	_, err := h.ExecContext(context.Background(), `CREATE TABLE kv (k TEXT PRIMARY KEY, v INTEGER)`)
	require.NoError(t, err)
	const loops, per = 3, 50
	errs := make(chan error, loops*per)
	for li := range loops {
		l := testenv.StartLoop(t)
		testenv.OnLoop(t, l, func() {
			for i := range per {
				k := fmt.Sprintf("%d-%d", li, i)
				op := async.Then(h.Exec("INSERT INTO kv VALUES (?, ?)", k, i), func(db.Result) async.Op[db.Row] {
					return h.QueryRow("SELECT v FROM kv WHERE k = ?", k)
				})
				async.Launch(l, op, func(r db.Row, err error) {
					if err == nil && r.Int(0) != int64(i) {
						err = fmt.Errorf("%s: got %d", k, r.Int(0))
					}
					errs <- err
				}, async.Timeout(20*time.Second))
			}
		})
	}
	for range loops * per {
		require.NoError(t, testenv.Wait(t, 10*time.Second, errs, "chained op"))
	}
}

// Not parallel: the process's descriptors and goroutines are counted
// around a handle's whole life, with every op kind, a timeout and an
// overload on a file database.
func TestNoLeaks(t *testing.T) {
	l := testenv.StartLoop(t)
	dsn := fileDSN(t)
	base := testenv.CountFDs()
	h, err := db.Open("sqlite", dsn, db.Workers(2), db.Queue(-1), db.Timeout(100*time.Millisecond))
	require.NoError(t, err)
	_, err = h.ExecContext(context.Background(), `CREATE TABLE t (v TEXT)`)
	require.NoError(t, err)
	must(t, l, h.Exec("INSERT INTO t VALUES (?)", "x"))
	require.Equal(t, 1, must(t, l, h.Query("SELECT v FROM t")).Len())
	require.ErrorIs(t, run(t, l, h.QueryRow("SELECT v FROM t WHERE v = 'y'")).err, db.ErrNoRows)
	require.ErrorIs(t, run(t, l, h.QueryRow(slowSQLite)).err, async.ErrTimeout)
	require.NoError(t, h.Close())
	testenv.FDsBackTo(t, base, 5*time.Second)
}

// A server that accepts the TCP connection and never answers (a hung
// database): the connect is bounded by the handle's Timeout, not by the
// await's minute, and the error says so.
func TestConnectBoundedByTimeout(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close() // never accepted: the kernel completes the handshake
	l := testenv.StartLoop(t)
	dsn := fmt.Sprintf("postgres://u@%s/x?sslmode=disable", ln.Addr())
	h := open(t, "pgx", dsn, db.Timeout(300*time.Millisecond))
	o := run(t, l, h.QueryRow("SELECT 1"), async.Timeout(time.Minute))
	require.Error(t, o.err)
	require.True(t, errors.Is(o.err, async.ErrTimeout) || errors.Is(o.err, db.ErrUnavailable), o.err)
	require.False(t, o.inline, "the loop did not wait for the connect")
}
