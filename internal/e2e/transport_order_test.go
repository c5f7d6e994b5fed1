package e2e

import (
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/asyncsip/asyncsip"
	"github.com/asyncsip/asyncsip/internal/e2e/e2etest"
	"github.com/asyncsip/asyncsip/tm"
)

// TestStreamOrderAckBye: the messages of one connection keep their order
// through the proxy (an ACK and the BYE right behind it, for many calls at
// once). Regression: delivered as loop tasks, a message owned by the loop
// that read it was queued again behind pending work, and the next message,
// already in the batch being run, overtook it.
//
// The calls are set up first (INVITE relayed with the proxy's signed
// Record-Route, 200 back), so that ACK and BYE carry the route set a UA
// would: tm refuses in-dialog requests without it.
func TestStreamOrderAckBye(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	srv := startStream(t, asyncsip.Config{Listen: []string{"tcp:127.0.0.1:0"}}, tm.Routes{Request: relayOrReply})
	uac := dialStream(t, "tcp", srv.Addrs()[0])
	ruri := "sip:bob@127.0.0.1:" + strconv.Itoa(ln.Addr().(*net.TCPAddr).Port) + ";transport=tcp"
	const n = 1000
	id := func(i int) string { return "ord-" + strconv.Itoa(i) }
	// The UAC side reads and drops what the proxy sends back (100s, 200s),
	// so that the proxy's writes never wait on a full socket.
	go func() { _, _ = io.Copy(io.Discard, uac.nc) }()
	writeBatched := func(build func(i int) string) {
		var b strings.Builder
		for i := 0; i < n; i++ {
			b.WriteString(build(i))
			if i%50 == 49 {
				_, _ = uac.nc.Write([]byte(b.String()))
				b.Reset()
			}
		}
	}
	go writeBatched(func(i int) string { return e2etest.Request("INVITE", ruri, "TCP", uac.port(), id(i), "") })
	_ = ln.(*net.TCPListener).SetDeadline(time.Now().Add(wait))
	nc, err := ln.Accept()
	require.NoError(t, err)
	defer nc.Close()
	p := &streamPeer{t: t, nc: nc, br: newReader(nc)}
	routes := map[string]string{} // Call-ID → the UAC's Route headers
	for len(routes) < n {
		inv := p.read(5 * time.Second)
		require.True(t, strings.HasPrefix(inv, "INVITE "), inv)
		rr := e2etest.Headers(inv, "Record-Route")
		require.NotEmpty(t, rr)
		var route strings.Builder
		for i := len(rr) - 1; i >= 0; i-- { // RFC 3261 §12.1.2: reversed
			route.WriteString("Route: " + rr[i] + "\r\n")
		}
		routes[e2etest.Header(inv, "Call-ID")] = strings.TrimSuffix(route.String(), "\r\n")
		p.send(e2etest.Answer(inv, 200, "OK"))
	}

	go writeBatched(func(i int) string {
		var b strings.Builder
		for _, m := range []string{"ACK", "BYE"} {
			r := e2etest.Request(m, ruri, "TCP", uac.port(), id(i), "", routes[id(i)])
			b.WriteString(strings.Replace(r, "To: <"+ruri+">", "To: <"+ruri+">;tag=uas", 1))
		}
		return b.String()
	})
	seenAck := map[string]bool{}
	bad := 0
	for i := 0; i < 2*n; i++ {
		m := p.read(5 * time.Second)
		id := e2etest.Header(m, "Call-ID")
		if strings.HasPrefix(m, "ACK") {
			seenAck[id] = true
		} else if !seenAck[id] {
			bad++
		}
	}
	require.Zero(t, bad)
	require.Len(t, seenAck, n, "every ACK relayed")
	require.Zero(t, srv.Stats().DropUnsigned)
}
