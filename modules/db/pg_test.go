package db_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/asyncsip/asyncsip/async"
	"github.com/asyncsip/asyncsip/internal/testenv"
	"github.com/asyncsip/asyncsip/modules/db"
)

func pgDialect(dsn string) dialect {
	return dialect{
		name: "postgres",
		open: func(t testing.TB, opts ...db.Option) *db.Handle {
			return open(t, "pgx", dsn, opts...)
		},
		ph:     func(i int) string { return "$" + strconv.Itoa(i) },
		schema: `CREATE TABLE %s (id SERIAL PRIMARY KEY, name TEXT NOT NULL, score DOUBLE PRECISION, data BYTEA, note TEXT)`,
		slow:   `SELECT pg_sleep(60)`,
		echo:   `SELECT CAST($1 AS TEXT) || 'x'`,
	}
}

func TestOpsPostgres(t *testing.T) {
	dsn := testenv.PostgresDSN(t)
	t.Parallel()
	opSuite(t, pgDialect(dsn))
}

// activeQueries counts the statements containing marker that are running on
// the server, other than the counting one.
func activeQueries(t testing.TB, mon *db.Handle, marker string) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	row, err := mon.QueryRowContext(ctx, `SELECT count(*) FROM pg_stat_activity
		WHERE state = 'active' AND pid <> pg_backend_pid() AND position($1 in query) > 0`, marker)
	require.NoError(t, err)
	return row.Int(0)
}

// A slow query cancelled by the handle's Timeout, by an await's timeout or
// by its transaction ending stops on the server too: pg_stat_activity shows
// it running, then not, long before pg_sleep(60) would have returned.
func TestPostgresCancelReachesServer(t *testing.T) {
	dsn := testenv.PostgresDSN(t)
	t.Parallel()
	l := testenv.StartLoop(t)
	mon := open(t, "pgx", dsn)
	cases := []struct {
		name    string
		timeout time.Duration // the handle's
		await   time.Duration // the await's
		abort   bool          // end the context instead
		want    error
	}{
		{name: "HandleTimeout", timeout: 2 * time.Second, await: time.Minute, want: async.ErrTimeout},
		{name: "AwaitTimeout", timeout: time.Minute, await: 2 * time.Second, want: async.ErrTimeout},
		{name: "Abort", timeout: time.Minute, await: time.Minute, abort: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := open(t, "pgx", dsn, db.Timeout(tc.timeout), db.Workers(1))
			pid := must(t, l, h.QueryRow("SELECT pg_backend_pid()")).Int(0)
			marker := fmt.Sprintf("cancel-%s-%d", tc.name, time.Now().UnixNano())
			c := &fakeCtx{loop: l}
			got := make(chan error, 1)
			testenv.OnLoop(t, l, func() {
				async.Await(c, h.QueryRow(fmt.Sprintf(`SELECT pg_sleep(60), '%s'`, marker)),
					func(_ db.Row, err error) { got <- err }, async.Timeout(tc.await))
			})
			testenv.Eventually(t, 10*time.Second, "query running on the server", func() bool { return activeQueries(t, mon, marker) == 1 })
			if tc.abort {
				testenv.OnLoop(t, l, c.end)
			} else {
				require.ErrorIs(t, testenv.Wait(t, 10*time.Second, got, "resume"), tc.want)
			}
			testenv.Eventually(t, 10*time.Second, "query gone from the server", func() bool { return activeQueries(t, mon, marker) == 0 })
			testenv.Eventually(t, 10*time.Second, "worker free", func() bool { return h.Stats().Pool.Busy == 0 })
			// A cancel request, not a dropped connection: the one connection
			// of the handle is still the same backend.
			require.Equal(t, pid, must(t, l, h.QueryRow("SELECT pg_backend_pid()")).Int(0))
		})
	}
}

// cluster is a private PostgreSQL started with .ci/pg.sh, which the test
// stops and starts again with pg_ctl on the same data directory.
type cluster struct {
	port        int
	dir, bindir string
}

func repoRoot(t testing.TB) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	require.NoError(t, err)
	return root
}

func pgScript(t testing.TB, port int, arg string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", filepath.Join(repoRoot(t), ".ci", "pg.sh"), arg)
	cmd.Env = append(os.Environ(), "ASYNCSIP_PG_PORT="+strconv.Itoa(port))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("pg.sh %s: %v\n%s", arg, err, out.String())
	}
}

func startCluster(t testing.TB) *cluster {
	t.Helper()
	port := testenv.FreeTCPPort(t)
	pgScript(t, port, "start")
	t.Cleanup(func() { pgScript(t, port, "stop") })
	state, err := os.ReadFile(filepath.Join(repoRoot(t), ".ci", ".state", fmt.Sprintf("pg-%d.state", port)))
	require.NoError(t, err)
	c := &cluster{port: port}
	for _, line := range strings.Split(string(state), "\n") {
		if v, ok := strings.CutPrefix(line, "dir="); ok {
			c.dir = v
		}
		if v, ok := strings.CutPrefix(line, "bindir="); ok {
			c.bindir = v
		}
	}
	require.NotEmpty(t, c.dir)
	require.NotEmpty(t, c.bindir)
	return c
}

func (c *cluster) dsn() string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/asyncsip_test?sslmode=disable", c.port)
}

// pgCtl runs pg_ctl on the cluster as the user that owns it.
func (c *cluster) pgCtl(t testing.TB, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	args = append([]string{"-D", filepath.Join(c.dir, "data"), "-w", "-t", "30", "-s"}, args...)
	bin := filepath.Join(c.bindir, "pg_ctl")
	var cmd *exec.Cmd
	if os.Geteuid() == 0 {
		cmd = exec.CommandContext(ctx, "runuser", append([]string{"-u", "postgres", "--", bin}, args...)...)
	} else {
		cmd = exec.CommandContext(ctx, bin, args...)
	}
	cmd.Dir = c.dir
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "pg_ctl %v: %s", args, out)
}

// The database stops while queries run: every op in flight and every new
// op fails promptly (long before the handle's Timeout) with ErrUnavailable;
// when the database is back the same handle works again.
func TestPostgresDown(t *testing.T) {
	testenv.PostgresDSN(t) // a PostgreSQL installation is required under CI
	c := startCluster(t)
	l := testenv.StartLoop(t)
	const timeout = 30 * time.Second // far longer than any wait below
	h := open(t, "pgx", c.dsn(), db.Timeout(timeout), db.Workers(8))
	require.Equal(t, int64(1), must(t, l, h.QueryRow("SELECT 1")).Int(0))

	const inflight = 4
	got := make(chan error, inflight)
	testenv.OnLoop(t, l, func() {
		for range inflight {
			async.Launch(l, h.QueryRow("SELECT pg_sleep(20)"), func(_ db.Row, err error) { got <- err },
				async.Timeout(timeout))
		}
	})
	testenv.Eventually(t, 10*time.Second, "queries running", func() bool { return h.Stats().DB.InUse == inflight })

	stopped := time.Now()
	c.pgCtl(t, "-m", "fast", "stop")
	for range inflight {
		err := testenv.Wait(t, 10*time.Second, got, "in-flight query failed")
		require.ErrorIs(t, err, db.ErrUnavailable)
	}
	require.Less(t, time.Since(stopped), timeout/2, "errors came promptly, not on the timeout")

	// While it is down: new ops fail at once, the loop is never blocked.
	for range 3 {
		o := run(t, l, h.QueryRow("SELECT 1"))
		require.ErrorIs(t, o.err, db.ErrUnavailable)
		require.NotErrorIs(t, o.err, async.ErrTimeout)
	}
	testenv.Eventually(t, 10*time.Second, "workers free", func() bool { return h.Stats().Pool.Busy == 0 })

	c.pgCtl(t, "-l", filepath.Join(c.dir, "server.log"), "start")
	// The handle recovers by itself: dead connections are dropped and new
	// ones made on the next ops.
	testenv.Eventually(t, 10*time.Second, "handle recovered", func() bool { return run(t, l, h.QueryRow("SELECT 1")).err == nil })
	for i := range 20 {
		require.Equal(t, int64(i), must(t, l, h.QueryRow("SELECT $1::int", i)).Int(0))
	}
}
