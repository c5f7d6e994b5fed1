package db_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/asyncsip/asyncsip/async"
	"github.com/asyncsip/asyncsip/internal/sipp"
	"github.com/asyncsip/asyncsip/internal/testenv"
	"github.com/asyncsip/asyncsip/modules/db"
)

const benchQuery = `SELECT target FROM routes WHERE username = ?`

// benchDB opens a file SQLite database with the lookup table.
func benchDB(b *testing.B) *db.Handle {
	h := open(b, "sqlite", fileDSN(b), db.Workers(4))
	ctx := context.Background()
	_, err := h.ExecContext(ctx, `CREATE TABLE routes (username TEXT PRIMARY KEY, target TEXT NOT NULL)`)
	require.NoError(b, err)
	for i := range 100 {
		_, err = h.ExecContext(ctx, `INSERT INTO routes VALUES (?, ?)`, fmt.Sprintf("u%d", i), "127.0.0.1:5060")
		require.NoError(b, err)
	}
	return h
}

// BenchmarkQueryRowAdapter measures one QueryRow op on a real loop: the
// hand-off to the handle's pool, the statement (cached), reading the row,
// and the result posted back to the loop. The ops are chained on the loop,
// each report starting the next, so the harness adds nothing per op.
func BenchmarkQueryRowAdapter(b *testing.B) {
	h := benchDB(b)
	l := testenv.StartLoop(b)
	done := make(chan error, 1)
	var step func(i int)
	step = func(i int) {
		if i == b.N {
			done <- nil
			return
		}
		async.Launch(l, h.QueryRow(benchQuery, "u42"), func(r db.Row, err error) {
			if err != nil || r.String(0) == "" {
				done <- fmt.Errorf("op %d: %v", i, err)
				return
			}
			step(i + 1)
		})
	}
	b.ReportAllocs()
	b.ResetTimer()
	require.NoError(b, l.Post(func() { step(0) }))
	require.NoError(b, <-done)
}

// BenchmarkQueryRowPlain is the same lookup with plain database/sql on the
// benchmark goroutine: QueryRowContext and Scan into a string.
func BenchmarkQueryRowPlain(b *testing.B) {
	h := benchDB(b)
	sdb := h.DB()
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		var target string
		if err := sdb.QueryRowContext(ctx, benchQuery, "u42").Scan(&target); err != nil || target == "" {
			b.Fatal(err)
		}
	}
}

// BenchmarkQueryRowPlainTimeout is plain database/sql with a per-query
// timeout context, as every adapter op has: with a cancellable context
// database/sql and the SQLite driver each start a goroutine per query to
// watch it, the price of cancellation reaching the driver.
func BenchmarkQueryRowPlainTimeout(b *testing.B) {
	h := benchDB(b)
	sdb := h.DB()
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		ctx, cancel := context.WithTimeout(context.Background(), db.DefaultTimeout)
		var target string
		err := sdb.QueryRowContext(ctx, benchQuery, "u42").Scan(&target)
		cancel()
		if err != nil || target == "" {
			b.Fatal(err)
		}
	}
}

// BenchmarkQueryRowPlainPrepared is plain database/sql with a prepared
// statement, as the adapter's statement cache does.
func BenchmarkQueryRowPlainPrepared(b *testing.B) {
	h := benchDB(b)
	ctx := context.Background()
	st, err := h.DB().PrepareContext(ctx, benchQuery)
	require.NoError(b, err)
	defer st.Close()
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		var target string
		if err := st.QueryRowContext(ctx, "u42").Scan(&target); err != nil || target == "" {
			b.Fatal(err)
		}
	}
}

// BenchmarkQueryRowSync is the adapter's synchronous helper: statement
// cache and result reading, without the pool and the loop.
func BenchmarkQueryRowSync(b *testing.B) {
	h := benchDB(b)
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		r, err := h.QueryRowContext(ctx, benchQuery, "u42")
		if err != nil || r.String(0) == "" {
			b.Fatal(err)
		}
	}
}

// TestMeasureThroughput measures calls/s through the proxy (4 workers)
// with a database lookup per INVITE, async against the same query run
// blocking in the route, for SQLite (a plain indexed lookup) and
// PostgreSQL (the lookup plus pg_sleep(0.01): a 10 ms query). For each it
// raises the SIPp call rate step by step and reports the highest rate
// whose calls all succeeded. It is a measurement, not a test: it runs only
// with ASYNCSIP_MEASURE=1 and asserts nothing about speed.
//
//	ASYNCSIP_MEASURE=1 go test -run TestMeasureThroughput -v ./modules/db
func TestMeasureThroughput(t *testing.T) {
	if os.Getenv("ASYNCSIP_MEASURE") != "1" {
		t.Skip("a measurement: set ASYNCSIP_MEASURE=1")
	}
	testenv.SIPp(t)
	_, uasPort := startUAS(t)
	type backend struct {
		name  string
		h     *db.Handle
		query string
	}
	var backends []backend
	sq := open(t, "sqlite", fileDSN(t), db.Workers(64))
	routesTable(t, sq, `CREATE TABLE routes (username TEXT PRIMARY KEY, target TEXT NOT NULL)`,
		`INSERT INTO routes VALUES (?, ?)`, uasPort)
	backends = append(backends, backend{"sqlite", sq, `SELECT target FROM routes WHERE username = ?`})
	if dsn := os.Getenv(testenv.PostgresDSNEnv); dsn != "" {
		pg := open(t, "pgx", dsn, db.Workers(64))
		table := fmt.Sprintf("routes_%d", time.Now().UnixNano())
		routesTable(t, pg, fmt.Sprintf(`CREATE TABLE %s (username TEXT PRIMARY KEY, target TEXT NOT NULL)`, table),
			fmt.Sprintf(`INSERT INTO %s VALUES ($1, $2)`, table), uasPort)
		t.Cleanup(func() { _, _ = pg.ExecContext(context.Background(), "DROP TABLE "+table) })
		backends = append(backends, backend{"postgres+pg_sleep(0.01)", pg,
			fmt.Sprintf(`SELECT target FROM %s, pg_sleep(0.01) WHERE username = $1`, table)})
	}
	rates := []float64{100, 200, 300, 400, 600, 800, 1200, 1600, 2400, 3200, 4800}
	var report strings.Builder
	fmt.Fprintf(&report, "%-26s %-9s %9s %12s\n", "database", "mode", "rate", "calls/s")
	for _, be := range backends {
		for _, blocking := range []bool{false, true} {
			mode := map[bool]string{false: "async", true: "blocking"}[blocking]
			proxy := startProxy(t, 4, lookupRoute(be.h, be.query, blocking))
			var best float64
			var bestRes sipp.Result
			for _, rate := range rates {
				calls := int(rate * 3)
				res := sipp.Run(t, sipp.Config{Scenario: sipp.UAC, Remote: proxy, Service: "bob",
					LocalPort: testenv.FreeUDPPort(t), Calls: calls, Rate: rate, Limit: 1000, Timeout: time.Minute})
				cps := float64(res.Successful) / res.Elapsed.Seconds()
				t.Logf("%s %s rate %v: %d ok, %d failed, %.0f calls/s", be.name, mode, rate, res.Successful, res.Failed, cps)
				if res.Failed > 0 || res.Successful != calls {
					t.Logf("first failures:\n%.1500s", res.Errors)
					break
				}
				best, bestRes = rate, res
			}
			cps := 0.0
			if best > 0 {
				cps = float64(bestRes.Successful) / bestRes.Elapsed.Seconds()
			}
			fmt.Fprintf(&report, "%-26s %-9s %9.0f %12.0f\n", be.name, mode, best, cps)
		}
	}
	t.Logf("highest SIPp rate with 0 failed calls (4 workers), and calls/s achieved at it:\n%s", report.String())
}
