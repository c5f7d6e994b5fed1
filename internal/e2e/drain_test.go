package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/asyncsip/asyncsip"
	"github.com/asyncsip/asyncsip/async"
	"github.com/asyncsip/asyncsip/internal/e2e/e2etest"
	"github.com/asyncsip/asyncsip/internal/sipp"
	"github.com/asyncsip/asyncsip/internal/testenv"
	"github.com/asyncsip/asyncsip/modules/metrics"
	"github.com/asyncsip/asyncsip/tm"
)

// A UAC that INVITEs and ACKs the 200 (no BYE: a BYE during a drain is a
// new transaction, answered 503), and a UAS that answers 200 at once.
const (
	uacInviteAck = `<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="uac invite ack">
  <send retrans="500">
    <![CDATA[
      INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: sipp <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: [service] <sip:[service]@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: 1 INVITE
      Contact: sip:sipp@[local_ip]:[local_port]
      Max-Forwards: 70
      Content-Length: 0
    ]]>
  </send>
  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="200"/>
  <send>
    <![CDATA[
      ACK sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: sipp <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: [service] <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 1 ACK
      Contact: sip:sipp@[local_ip]:[local_port]
      Max-Forwards: 70
      Content-Length: 0
    ]]>
  </send>
</scenario>
`
	uasAnswer = `<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="uas answer">
  <recv request="INVITE"/>
  <send>
    <![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]SIPpTag01[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      [last_Record-Route:]
      Contact: <sip:[local_ip]:[local_port];transport=[transport]>
      Content-Length: 0
    ]]>
  </send>
  <recv request="ACK"/>
</scenario>
`
)

// writeScenario writes a SIPp scenario into the test's temporary directory.
func writeScenario(t *testing.T, name, xml string) string {
	path := filepath.Join(t.TempDir(), name)
	require.NoError(t, os.WriteFile(path, []byte(xml), 0o644))
	return path
}

// relayOr relays INVITEs after hold (if set) and sends every other request
// (ACK, OPTIONS) to the UAS by destination; OPTIONS is answered 200 when no
// UAS is given, as a liveness probe.
func relayOr(uasPort int, hold func(c *tm.Context, relay func())) func(c *tm.Context) {
	dst := fmt.Sprintf("127.0.0.1:%d", uasPort)
	return func(c *tm.Context) {
		if c.Method() == "OPTIONS" {
			_ = c.Reply(200, "")
			return
		}
		_ = c.SetDestination(dst)
		if c.Method() == "INVITE" && hold != nil {
			hold(c, func() { _ = c.Relay() })
			return
		}
		_ = c.Relay()
	}
}

// waitDraining sends OPTIONS probes until one is answered 503 (5 s at most).
func waitDraining(t *testing.T, srv *asyncsip.Server, p *e2etest.UDPPeer) {
	t.Helper()
	i := 0
	testenv.Eventually(t, 5*time.Second, "the server starts draining", func() bool {
		i++
		p.SendTo(srv.Addrs()[0], e2etest.Request("OPTIONS", "sip:probe@127.0.0.1", "UDP", p.Port(), fmt.Sprintf("probe-%d", i), ""))
		status := e2etest.StatusLine(p.Final(5 * time.Second))
		return strings.HasPrefix(status, "SIP/2.0 503")
	})
}

// Calls suspended on a 1-second await all complete while Shutdown waits;
// new INVITEs meanwhile get 503 with Retry-After.
func TestDrainCompletesSuspendedCalls(t *testing.T) {
	const calls = 10
	sipp.Path(t)
	uasPort := testenv.FreeUDPPort(t)
	sipp.Start(t, sipp.Config{Scenario: writeScenario(t, "uas.xml", uasAnswer), LocalPort: uasPort,
		Timeout: 60 * time.Second})
	var resumed atomic.Int64
	e2etest.NoLeaks(t)
	srv := e2etest.NewServer(t, asyncsip.Config{}, tm.Routes{Request: relayOr(uasPort, func(c *tm.Context, relay func()) {
		async.Await(c, async.Sleep(time.Second), func(struct{}, error) { resumed.Add(1); relay() },
			async.Name("test.hold"))
	})})
	require.NoError(t, srv.Start())

	results := make(chan sipp.Result, 1)
	go func() {
		results <- sipp.Run(t, sipp.Config{Scenario: writeScenario(t, "uac.xml", uacInviteAck),
			Remote: srv.Addrs()[0].String(), Service: "bob", Calls: calls, Rate: 100, Timeout: 30 * time.Second})
	}()
	waitStats(t, srv, "every call suspended", func(s tm.StatsSnapshot) bool { return s.Suspended == calls })

	shutdown := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		shutdown <- srv.Shutdown(ctx)
	}()
	probe := e2etest.NewUDPPeer(t)
	waitDraining(t, srv, probe)
	probe.SendTo(srv.Addrs()[0], e2etest.Request("INVITE", "sip:bob@127.0.0.1", "UDP", probe.Port(), "late-invite", ""))
	msg := probe.Final(5 * time.Second)
	assert.True(t, strings.HasPrefix(msg, "SIP/2.0 503 "), msg)
	assert.NotEmpty(t, e2etest.Header(msg, "Retry-After"), msg)
	assert.Equal(t, "late-invite", e2etest.Header(msg, "Call-ID"))

	require.NoError(t, <-shutdown, "the drain completed")
	assert.EqualValues(t, calls, resumed.Load(), "every suspended call resumed before Shutdown returned")
	res := <-results
	assert.Equal(t, calls, res.Successful, res.String())
	assert.Zero(t, res.Failed, res.String())
	st := srv.Stats()
	assert.Zero(t, st.SuspendTimeouts, "%+v", st)
	assert.Zero(t, st.InProgress, "%+v", st)
}

// When the drain deadline passes, transactions still suspended are ended:
// their callers get 503 rather than silence.
func TestDrainDeadlineAnswersSuspended(t *testing.T) {
	g := &gate{} // never opened
	e2etest.NoLeaks(t)
	srv := e2etest.NewServer(t, asyncsip.Config{}, tm.Routes{Request: func(c *tm.Context) {
		async.Await(c, g.op(), func(string, error) { _ = c.Reply(200, "") }, async.Timeout(time.Minute))
	}})
	require.NoError(t, srv.Start())
	uac := e2etest.NewUDPPeer(t)
	uac.SendTo(srv.Addrs()[0], e2etest.Request("INVITE", "sip:bob@127.0.0.1", "UDP", uac.Port(), "stuck-1", ""))
	first, _ := uac.Next(5 * time.Second)
	assert.True(t, strings.HasPrefix(first, "SIP/2.0 100 "), first)
	waitStats(t, srv, "the call suspended", func(s tm.StatsSnapshot) bool { return s.Suspended == 1 })

	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	err := srv.Shutdown(ctx)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	resp := uac.Final(5 * time.Second)
	status, callID := e2etest.StatusLine(resp), e2etest.Header(resp, "Call-ID")
	assert.True(t, strings.HasPrefix(status, "SIP/2.0 503 "), status)
	assert.Equal(t, "stuck-1", callID)
}

// SetRoutes while awaits are pending: the suspended transactions resume
// under the routes they started with (their failure route), new ones use
// the new routes at once.
func TestHotSwapWhileAwaitsPending(t *testing.T) {
	const n = 5
	g := &gate{}
	uas := e2etest.NewUDPPeer(t)
	uas.AnswerAll(486, "Busy Here")
	target := fmt.Sprintf("sip:bob@127.0.0.1:%d", uas.Port())
	e2etest.NoLeaks(t)
	srv := e2etest.NewServer(t, asyncsip.Config{}, tm.Routes{
		Request: func(c *tm.Context) {
			async.Await(c, g.op(), func(string, error) { _ = c.Relay(target) }, async.Name("test.gate"))
		},
		Failure: func(c *tm.Context) { _ = c.Reply(480, "Failure A") },
	})
	require.NoError(t, srv.Start())
	uac := e2etest.NewUDPPeer(t)
	for i := range n {
		uac.SendTo(srv.Addrs()[0], e2etest.Request("OPTIONS", "sip:bob@127.0.0.1", "UDP", uac.Port(), fmt.Sprintf("old-%d", i), ""))
	}
	waitStats(t, srv, "the old requests suspended", func(s tm.StatsSnapshot) bool { return s.Suspended == n })

	srv.SetRoutes(tm.Routes{
		Request: func(c *tm.Context) { _ = c.Relay(target) },
		Failure: func(c *tm.Context) { _ = c.Reply(404, "Failure B") },
	})
	for i := range n {
		uac.SendTo(srv.Addrs()[0], e2etest.Request("OPTIONS", "sip:bob@127.0.0.1", "UDP", uac.Port(), fmt.Sprintf("new-%d", i), ""))
	}
	got := map[string]string{}
	for range n {
		resp := uac.Final(5 * time.Second)
		status, callID := e2etest.StatusLine(resp), e2etest.Header(resp, "Call-ID")
		got[callID] = status
	}
	assert.EqualValues(t, n, srv.Stats().Suspended, "the old ones are still waiting")
	g.release()
	for range n {
		resp := uac.Final(5 * time.Second)
		status, callID := e2etest.StatusLine(resp), e2etest.Header(resp, "Call-ID")
		got[callID] = status
	}
	for i := range n {
		assert.Equal(t, "SIP/2.0 480 Failure A", got[fmt.Sprintf("old-%d", i)], "old-%d", i)
		assert.Equal(t, "SIP/2.0 404 Failure B", got[fmt.Sprintf("new-%d", i)], "new-%d", i)
	}
}

// The first SIGTERM drains: new requests get 503 while the suspended call
// finishes, then asyncsip.ServeSignals returns nil.
func TestServeSignalsDrainsOnFirstSignal(t *testing.T) {
	g := &gate{}
	e2etest.NoLeaks(t)
	srv := e2etest.NewServer(t, asyncsip.Config{DrainTimeout: 10 * time.Second}, tm.Routes{Request: func(c *tm.Context) {
		if c.Method() == "OPTIONS" {
			_ = c.Reply(200, "")
			return
		}
		async.Await(c, g.op(), func(string, error) { _ = c.Reply(200, "Released") })
	}})
	served := make(chan error, 1)
	go func() { served <- asyncsip.ServeSignals(context.Background(), srv) }()
	waitStarted(t, srv)
	uac := e2etest.NewUDPPeer(t)
	uac.SendTo(srv.Addrs()[0], e2etest.Request("INVITE", "sip:bob@127.0.0.1", "UDP", uac.Port(), "held-1", ""))
	waitStats(t, srv, "the call suspended", func(s tm.StatsSnapshot) bool { return s.Suspended == 1 })

	require.NoError(t, syscall.Kill(os.Getpid(), syscall.SIGTERM))
	waitDraining(t, srv, e2etest.NewUDPPeer(t))
	select {
	case err := <-served:
		t.Fatalf("asyncsip.ServeSignals returned before the call finished: %v", err)
	default:
	}
	g.release()
	resp := uac.Final(5 * time.Second)
	status, callID := e2etest.StatusLine(resp), e2etest.Header(resp, "Call-ID")
	assert.Equal(t, "SIP/2.0 200 Released", status)
	assert.Equal(t, "held-1", callID)
	select {
	case err := <-served:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("asyncsip.ServeSignals did not return after the drain")
	}
}

// A second SIGTERM during the drain stops at once: asyncsip.ServeSignals returns
// asyncsip.ErrStopped well before DrainTimeout, and the suspended caller gets 503.
func TestServeSignalsSecondSignalStops(t *testing.T) {
	g := &gate{} // never opened
	e2etest.NoLeaks(t)
	srv := e2etest.NewServer(t, asyncsip.Config{DrainTimeout: time.Minute}, tm.Routes{Request: func(c *tm.Context) {
		if c.Method() == "OPTIONS" {
			_ = c.Reply(200, "")
			return
		}
		async.Await(c, g.op(), func(string, error) { _ = c.Reply(200, "") }, async.Timeout(time.Minute))
	}})
	served := make(chan error, 1)
	go func() { served <- asyncsip.ServeSignals(context.Background(), srv) }()
	waitStarted(t, srv)
	uac := e2etest.NewUDPPeer(t)
	uac.SendTo(srv.Addrs()[0], e2etest.Request("INVITE", "sip:bob@127.0.0.1", "UDP", uac.Port(), "stuck-2", ""))
	waitStats(t, srv, "the call suspended", func(s tm.StatsSnapshot) bool { return s.Suspended == 1 })

	require.NoError(t, syscall.Kill(os.Getpid(), syscall.SIGTERM))
	waitDraining(t, srv, e2etest.NewUDPPeer(t))
	require.NoError(t, syscall.Kill(os.Getpid(), syscall.SIGTERM))
	select {
	case err := <-served:
		require.ErrorIs(t, err, asyncsip.ErrStopped)
		require.ErrorIs(t, err, context.Canceled, "stopped by the signal, not by the deadline")
	case <-time.After(10 * time.Second):
		t.Fatal("a second signal did not stop the server")
	}
	resp := uac.Final(5 * time.Second)
	status, callID := e2etest.StatusLine(resp), e2etest.Header(resp, "Call-ID")
	assert.True(t, strings.HasPrefix(status, "SIP/2.0 503 "), status)
	assert.Equal(t, "stuck-2", callID)
}

// Without signals, the end of ctx drains as Serve does.
func TestServeSignalsContext(t *testing.T) {
	e2etest.NoLeaks(t)
	srv := e2etest.NewServer(t, asyncsip.Config{}, tm.Routes{Request: func(c *tm.Context) { _ = c.Reply(200, "") }})
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- asyncsip.ServeSignals(ctx, srv, syscall.SIGUSR2) }()
	waitStarted(t, srv)
	cancel()
	select {
	case err := <-served:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("asyncsip.ServeSignals did not return after ctx ended")
	}
	require.ErrorIs(t, asyncsip.ServeSignals(context.Background(), srv), asyncsip.ErrServerClosed)
}

func TestServeSignalsStartError(t *testing.T) {
	exp := metrics.New(metrics.Config{Addr: "127.0.0.1:notaport", Logger: e2etest.Quiet})
	e2etest.NoLeaks(t)
	srv := e2etest.NewServer(t, asyncsip.Config{Extensions: []asyncsip.Extension{exp}}, tm.Routes{})
	err := asyncsip.ServeSignals(context.Background(), srv)
	require.ErrorContains(t, err, "metrics: listen")
	require.False(t, errors.Is(err, asyncsip.ErrStopped))
}

// waitStarted waits until srv has bound its sockets.
func waitStarted(t *testing.T, srv *asyncsip.Server) {
	t.Helper()
	testenv.Eventually(t, 5*time.Second, "the server binds its sockets", func() bool { return len(srv.Addrs()) > 0 })
}
