package db_test

import (
	"context"
	"database/sql/driver"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/stretchr/testify/require"
	"modernc.org/sqlite"

	"github.com/asyncsip/asyncsip/async"
	"github.com/asyncsip/asyncsip/internal/testenv"
	"github.com/asyncsip/asyncsip/modules/db"
	"github.com/asyncsip/asyncsip/tm"
)

// TestCancelInterruptsQuery: a CANCEL while the route awaits a query that
// would run for minutes, through the real server on 127.0.0.1. The handle's
// timeout and the await's are a minute; the caller gets 200 for the CANCEL
// and 487 for the INVITE at once (within the 5 s read bound), the query
// ends with context.Canceled (SQLite: sqlite3_interrupt; PostgreSQL: a
// cancel request, the statement gone from pg_stat_activity) and the resume
// never runs.
func TestCancelInterruptsQuery(t *testing.T) {
	t.Run("sqlite", func(t *testing.T) {
		started := probe(t)
		h, obs := openCancellable(t, "sqlite", fileDSN(t))
		// Counts to 10^11 one row at a time: hours of work for SQLite. The
		// probe, called for the first row, tells that the statement runs
		// (a job cancelled while still queued never runs at all).
		cancelDuringQuery(t, h, obs, fmt.Sprintf(`WITH RECURSIVE c(x) AS
			(SELECT %s('%s') UNION ALL SELECT x+1 FROM c WHERE x < 100000000000)
			SELECT count(*) FROM c`, probeFunc, t.Name()), started.Load, false)
	})
	t.Run("postgres", func(t *testing.T) {
		dsn := testenv.PostgresDSN(t)
		h, obs := openCancellable(t, "pgx", dsn)
		mon := open(t, "pgx", dsn)
		marker := fmt.Sprintf("cancel-sip-%d", time.Now().UnixNano())
		cancelDuringQuery(t, h, obs, fmt.Sprintf(`SELECT pg_sleep(600), '%s'`, marker), func() int64 {
			return activeQueries(t, mon, marker)
		}, true)
	})
}

// probeFunc is an SQLite function (registered once per process) that
// returns 1 and counts its calls per argument: probe(t) returns the count
// for t.Name().
const probeFunc = "asyncsip_test_probe"

var (
	probeOnce  sync.Once
	probeCalls sync.Map // argument → *atomic.Int64
)

func probe(t *testing.T) *atomic.Int64 {
	probeOnce.Do(func() {
		sqlite.MustRegisterScalarFunction(probeFunc, 1, func(_ *sqlite.FunctionContext, args []driver.Value) (driver.Value, error) {
			if name, ok := args[0].(string); ok {
				if n, ok := probeCalls.Load(name); ok {
					n.(*atomic.Int64).Add(1)
				}
			}
			return int64(1), nil
		})
	})
	n := new(atomic.Int64)
	probeCalls.Store(t.Name(), n)
	t.Cleanup(func() { probeCalls.Delete(t.Name()) })
	return n
}

// openCancellable opens a one-worker handle whose own timeout (a minute)
// cannot be what ends the query, with an observer.
func openCancellable(t *testing.T, driver, dsn string) (*db.Handle, *recorder) {
	obs := &recorder{}
	return open(t, driver, dsn, db.Workers(1), db.Timeout(time.Minute), db.WithObserver(obs)), obs
}

// cancelDuringQuery runs the INVITE / CANCEL exchange against a route that
// awaits query on h; running counts the statement's runs (1 once it runs),
// and with server, the statements running on the server (0 once it ended).
func cancelDuringQuery(t *testing.T, h *db.Handle, obs *recorder, query string, running func() int64, server bool) {
	var resumed atomic.Int64
	addr := startProxy(t, 1, func(c *tm.Context) {
		async.Await(c, h.QueryRow(query), func(db.Row, error) { resumed.Add(1) }, async.Timeout(time.Minute))
	})
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	defer conn.Close()
	proxy, err := net.ResolveUDPAddr("udp", addr)
	require.NoError(t, err)
	send := func(method string) {
		msg := fmt.Sprintf("%s sip:bob@%s SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bK-cancel-db\r\n"+
			"Max-Forwards: 70\r\nFrom: <sip:alice@127.0.0.1>;tag=a1\r\nTo: <sip:bob@127.0.0.1>\r\n"+
			"Call-ID: cancel-db\r\nCSeq: 1 %s\r\nContent-Length: 0\r\n\r\n", method, addr, conn.LocalAddr(), method)
		_, err := conn.WriteToUDP([]byte(msg), proxy)
		require.NoError(t, err)
	}
	recv := func() *sip.Response {
		buf := make([]byte, 65535)
		require.NoError(t, conn.SetReadDeadline(time.Now().Add(5*time.Second)))
		n, _, err := conn.ReadFromUDP(buf)
		require.NoError(t, err, "no response within 5 s")
		m, err := sip.ParseMessage(buf[:n])
		require.NoError(t, err)
		resp, ok := m.(*sip.Response)
		require.True(t, ok, "got a request: %s", m)
		return resp
	}

	send("INVITE")
	require.Equal(t, 100, recv().StatusCode)
	testenv.Eventually(t, 10*time.Second, "query running", func() bool { return running() == 1 })

	send("CANCEL")
	got := map[string]int{}
	for len(got) < 2 {
		resp := recv()
		got[resp.CSeq().MethodName.String()] = resp.StatusCode
	}
	require.Equal(t, map[string]int{"CANCEL": 200, "INVITE": 487}, got)
	send("ACK")

	// The query returned because its context was cancelled: not its result,
	// not the handle's timeout (a minute).
	testenv.Eventually(t, 10*time.Second, "query returned", func() bool { _, ok := obs.last(nil); return ok })
	ev, _ := obs.last(nil)
	require.ErrorIs(t, ev.err, context.Canceled, "op %s", ev.op)
	require.NotErrorIs(t, ev.err, async.ErrTimeout)
	if server {
		testenv.Eventually(t, 10*time.Second, "query gone from the server", func() bool { return running() == 0 })
	}
	testenv.Eventually(t, 10*time.Second, "worker free", func() bool { return h.Stats().Pool.Busy == 0 })
	require.Zero(t, resumed.Load(), "the resume never runs")
}
