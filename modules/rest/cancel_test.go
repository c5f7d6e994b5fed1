package rest_test

import (
	"fmt"
	"net"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/stretchr/testify/require"

	"github.com/asyncsip/asyncsip/async"
	"github.com/asyncsip/asyncsip/internal/testenv"
	"github.com/asyncsip/asyncsip/modules/rest"
	"github.com/asyncsip/asyncsip/tm"
)

// TestCancelCancelsRequest: a CANCEL while the route awaits a REST call,
// through the real server on 127.0.0.1. The HTTP server holds the request
// (up to 15 s), the await allows a minute; the caller gets 200 for the
// CANCEL and 487 for the INVITE at once (within the 5 s read bound), the
// HTTP handler sees its request context cancelled, and the resume never
// runs.
func TestCancelCancelsRequest(t *testing.T) {
	testenv.CheckFDs(t)
	g := newGate()
	ts := httptest.NewServer(g)
	defer ts.Close()
	defer g.open()
	client := newClient(t, rest.Config{BaseURL: ts.URL, Timeout: time.Minute})
	var resumed atomic.Int64
	srv := startProxy(t, 1, func(c *tm.Context) {
		async.Await(c, client.Get("/lookup"), func(rest.Result, error) { resumed.Add(1) }, async.Timeout(time.Minute))
	})
	addr := srv.Addrs()[0].String()

	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	defer conn.Close()
	proxy, err := net.ResolveUDPAddr("udp", addr)
	require.NoError(t, err)
	send := func(method string) {
		msg := fmt.Sprintf("%s sip:bob@%s SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bK-cancel-rest\r\n"+
			"Max-Forwards: 70\r\nFrom: <sip:alice@127.0.0.1>;tag=a1\r\nTo: <sip:bob@127.0.0.1>\r\n"+
			"Call-ID: cancel-rest\r\nCSeq: 1 %s\r\nContent-Length: 0\r\n\r\n", method, addr, conn.LocalAddr(), method)
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
	testenv.Eventually(t, 5*time.Second, "the HTTP request reached the server", func() bool { return g.arrived.Load() == 1 })

	send("CANCEL")
	got := map[string]int{}
	for len(got) < 2 {
		resp := recv()
		got[resp.CSeq().MethodName.String()] = resp.StatusCode
	}
	require.Equal(t, map[string]int{"CANCEL": 200, "INVITE": 487}, got)
	send("ACK")
	testenv.Eventually(t, 5*time.Second, "the HTTP handler saw its request cancelled", func() bool { return g.cancelled.Load() == 1 })
	testenv.Eventually(t, 5*time.Second, "the call counted as cancelled", func() bool {
		return client.Stats().Errors(rest.KindCancelled) == 1 && client.Stats().InFlight == 0
	})
	require.Zero(t, resumed.Load(), "the resume never runs")
}
