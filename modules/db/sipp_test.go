package db_test

// Through the real server: an asyncsip proxy whose request route looks the
// INVITE's Request-URI user up in a database table and relays to the SIPp
// UAS found there, driven by a SIPp UAC on 127.0.0.1.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/stretchr/testify/require"

	"github.com/asyncsip/asyncsip"
	"github.com/asyncsip/asyncsip/async"
	"github.com/asyncsip/asyncsip/internal/sipp"
	"github.com/asyncsip/asyncsip/internal/testenv"
	"github.com/asyncsip/asyncsip/modules/db"
	"github.com/asyncsip/asyncsip/tm"
)

// lookupRoute is the request route under test. In-dialog requests follow
// their Route set; an INVITE is relayed to the host:port that query returns
// for its user, answered 404 when there is none and 503 when the lookup
// fails. With blocking, the same query runs in the route itself (the worker
// waits for it): the baseline the async version is measured against.
func lookupRoute(h *db.Handle, query string, blocking bool) func(c *tm.Context) {
	relay := func(c *tm.Context, row db.Row, err error) {
		user := c.Recipient().User
		switch {
		case errors.Is(err, db.ErrNoRows):
			_ = c.Reply(404, "Not Found")
		case err != nil:
			c.Logger().Debug("lookup failed", "user", user, "err", err)
			_ = c.Reply(503, "Routing Unavailable")
		default:
			_ = c.Relay("sip:" + user + "@" + row.String(0))
		}
	}
	return func(c *tm.Context) {
		if c.InDialog() { // ACK and BYE along our signed Record-Route
			_ = c.Relay()
			return
		}
		if c.Method() != sip.INVITE {
			_ = c.Reply(405, "Method Not Allowed")
			return
		}
		user := c.Recipient().User
		if blocking {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			row, err := h.QueryRowContext(ctx, query, user)
			cancel()
			relay(c, row, err)
			return
		}
		async.Await(c, h.QueryRow(query, user), func(row db.Row, err error) { relay(c, row, err) },
			async.Timeout(2*time.Second))
	}
}

// startProxy starts an asyncsip server on udp:127.0.0.1:0 with route; it
// is shut down when the test ends. It returns SIPp's remote "host:port".
func startProxy(t testing.TB, workers int, route func(*tm.Context)) string {
	t.Helper()
	srv, err := asyncsip.New(asyncsip.Config{
		Listen:  []string{"udp:127.0.0.1:0"},
		Workers: workers,
		Logger:  slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	require.NoError(t, err)
	srv.Request(route)
	require.NoError(t, srv.Start())
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			// Only a measurement that overloaded the proxy leaves calls
			// to drain; tests with failed calls have failed already.
			t.Logf("shutdown: %v", err)
			if !t.Failed() && os.Getenv("ASYNCSIP_MEASURE") != "1" {
				t.Errorf("shutdown: %v", err)
			}
		}
	})
	return srv.Addrs()[0].String()
}

func scenario(name string) string { return filepath.Join("testdata", name) }

// startUAS runs the record-route-echoing SIPp UAS (sipp.UAS) on a free
// port.
func startUAS(t testing.TB) (*sipp.Process, int) {
	t.Helper()
	p := sipp.Start(t, sipp.Config{Scenario: sipp.UAS, Timeout: 3 * time.Minute})
	return p, p.Port()
}

// routesTable creates the lookup table with user -> "127.0.0.1:uasPort".
func routesTable(t testing.TB, h *db.Handle, schema, insert string, uasPort int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := h.ExecContext(ctx, schema)
	require.NoError(t, err)
	for _, user := range []string{"bob", "carol"} {
		_, err = h.ExecContext(ctx, insert, user, "127.0.0.1:"+strconv.Itoa(uasPort))
		require.NoError(t, err)
	}
}

// callsOK runs calls through the proxy (sipp.UAC, which follows the
// proxy's signed Record-Route) and requires every one to succeed. SIPp
// gets a free port of its own (sipp.Run picks one): its default (5060 and
// up) is shared with every other SIPp on the machine, and a late
// retransmission from another test's proxy would land in this run.
func callsOK(t testing.TB, proxy, user string, calls int, rate float64) sipp.Result {
	t.Helper()
	res := sipp.Run(t, sipp.Config{Scenario: sipp.UAC, Remote: proxy, Service: user,
		Calls: calls, Rate: rate, Limit: 100, Timeout: 2 * time.Minute})
	require.Equal(t, 0, res.ExitCode, res.String())
	require.Equal(t, calls, res.Successful, res.String())
	require.Zero(t, res.Failed, res.String())
	return res
}

func TestSIPpRoutesBySQLite(t *testing.T) {
	testenv.SIPp(t)
	uas, uasPort := startUAS(t)
	h := open(t, "sqlite", fileDSN(t), db.Workers(8))
	routesTable(t, h, `CREATE TABLE routes (username TEXT PRIMARY KEY, target TEXT NOT NULL)`,
		`INSERT INTO routes VALUES (?, ?)`, uasPort)
	proxy := startProxy(t, 4, lookupRoute(h, `SELECT target FROM routes WHERE username = ?`, false))

	const calls = 200
	res := callsOK(t, proxy, "bob", calls, 100)
	t.Logf("sqlite: %d calls in %v", res.Successful, res.Elapsed.Round(time.Millisecond))
	require.GreaterOrEqual(t, h.Stats().Queries, uint64(calls), "one lookup per INVITE")
	require.Zero(t, h.Stats().Errors)
	u := uas.Stop()
	require.Equal(t, calls, u.Successful, "UAS: %s", u.String())
	require.Zero(t, u.Failed, "UAS: %s", u.String())
}

func TestSIPpRoutesByPostgres(t *testing.T) {
	dsn := testenv.PostgresDSN(t)
	testenv.SIPp(t)
	uas, uasPort := startUAS(t)
	h := open(t, "pgx", dsn, db.Workers(8))
	table := fmt.Sprintf("routes_%d", time.Now().UnixNano())
	routesTable(t, h, fmt.Sprintf(`CREATE TABLE %s (username TEXT PRIMARY KEY, target TEXT NOT NULL)`, table),
		fmt.Sprintf(`INSERT INTO %s VALUES ($1, $2)`, table), uasPort)
	t.Cleanup(func() { _, _ = h.ExecContext(context.Background(), "DROP TABLE "+table) })
	proxy := startProxy(t, 4, lookupRoute(h, fmt.Sprintf(`SELECT target FROM %s WHERE username = $1`, table), false))

	const calls = 200
	res := callsOK(t, proxy, "carol", calls, 100)
	t.Logf("postgres: %d calls in %v", res.Successful, res.Elapsed.Round(time.Millisecond))
	require.Zero(t, h.Stats().Errors)
	u := uas.Stop()
	require.Equal(t, calls, u.Successful, "UAS: %s", u.String())
}

// The database stops while the proxy runs: the lookups fail, the errors
// reach the resume and the proxy answers what the route decides (503) to
// every call; when the database is back, calls go through again.
func TestSIPpPostgresDown(t *testing.T) {
	testenv.PostgresDSN(t) // a PostgreSQL installation is required under CI
	testenv.SIPp(t)
	c := startCluster(t)
	_, uasPort := startUAS(t)
	h := open(t, "pgx", c.dsn(), db.Workers(8), db.Timeout(time.Second))
	routesTable(t, h, `CREATE TABLE routes (username TEXT PRIMARY KEY, target TEXT NOT NULL)`,
		`INSERT INTO routes VALUES ($1, $2)`, uasPort)
	proxy := startProxy(t, 2, lookupRoute(h, `SELECT target FROM routes WHERE username = $1`, false))

	callsOK(t, proxy, "bob", 20, 50)

	c.pgCtl(t, "-m", "fast", "stop")
	const refused = 30
	res := sipp.Run(t, sipp.Config{Scenario: scenario("uac_503.xml"), Remote: proxy, Service: "bob",
		LocalPort: testenv.FreeUDPPort(t), Calls: refused, Rate: 50, Timeout: time.Minute})
	require.Equal(t, refused, res.Successful, res.String())
	require.Zero(t, res.Failed, res.String())
	require.GreaterOrEqual(t, h.Stats().Errors, uint64(refused))

	c.pgCtl(t, "-l", filepath.Join(c.dir, "server.log"), "start")
	l := testenv.StartLoop(t)
	testenv.Eventually(t, 10*time.Second, "handle recovered", func() bool { return run(t, l, h.QueryRow("SELECT 1")).err == nil })
	callsOK(t, proxy, "bob", 20, 50)
}
