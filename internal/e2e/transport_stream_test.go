package e2e

import (
	"net"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/asyncsip/asyncsip"
	"github.com/asyncsip/asyncsip/internal/e2e/e2etest"
	"github.com/asyncsip/asyncsip/tm"
	"github.com/asyncsip/asyncsip/transport"
)

const wait = 3 * time.Second

// TestTCPToUDPConversion: an INVITE over TCP leaves over UDP with a UDP Via
// and two Record-Routes (UDP interface on top, TCP one below); the 200 goes
// back on the caller's connection; the callee's BYE, routed through both
// Record-Routes, reaches the caller on its own connection.
func TestTCPToUDPConversion(t *testing.T) {
	srv := startStream(t, asyncsip.Config{Listen: []string{"udp:127.0.0.1:0", "tcp:127.0.0.1:0"}},
		tm.Routes{Request: relayOrReply})
	udpAddr, tcpAddr := srv.Addrs()[0], srv.Addrs()[1]
	uas := e2etest.NewUDPPeer(t)
	uac := dialStream(t, "tcp", tcpAddr)

	ruri := "sip:bob@127.0.0.1:" + strconv.Itoa(uas.Port())
	uac.send(e2etest.Request("INVITE", ruri, "TCP", uac.port(), "conv-1", ""))
	inv, from := uas.Read(wait)
	require.Equal(t, udpAddr, from)
	require.Contains(t, e2etest.Header(inv, "Via"), "SIP/2.0/UDP 127.0.0.1:"+strconv.Itoa(int(udpAddr.Port())))
	rr := e2etest.Headers(inv, "Record-Route")
	plain, tokens := withoutFlow(t, rr)
	require.Equal(t, 1, tokens, "the caller's connection is named by a flow token")
	require.Equal(t, []string{
		"<sip:127.0.0.1:" + strconv.Itoa(int(udpAddr.Port())) + ";lr>",
		"<sip:127.0.0.1:" + strconv.Itoa(int(tcpAddr.Port())) + ";transport=tcp;lr>",
	}, plain)

	uas.SendTo(from, e2etest.Answer(inv, 200, "OK"))
	for {
		resp := uac.read(wait)
		if strings.HasPrefix(resp, "SIP/2.0 100 ") {
			continue
		}
		require.True(t, strings.HasPrefix(resp, "SIP/2.0 200 "), resp)
		require.Len(t, e2etest.Headers(resp, "Record-Route"), 2)
		break
	}

	// The callee's BYE follows the route set: both of our entries are
	// removed and the caller's contact (transport=tcp, its connection's
	// port) is reached over the connection it opened.
	bye := "BYE sip:alice@127.0.0.1:" + strconv.Itoa(uac.port()) + ";transport=tcp SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP 127.0.0.1:" + strconv.Itoa(uas.Port()) + ";branch=z9hG4bK-bye1;rport\r\n" +
		"Route: " + rr[0] + "\r\nRoute: " + rr[1] + "\r\n" +
		"Max-Forwards: 70\r\nFrom: <" + ruri + ">;tag=uas\r\nTo: <sip:alice@127.0.0.1>;tag=a-conv-1\r\n" +
		"Call-ID: conv-1\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n"
	uas.SendTo(udpAddr, bye)
	got := uac.read(wait)
	require.True(t, strings.HasPrefix(got, "BYE "), got)
	require.Empty(t, e2etest.Headers(got, "Route"), "both of our Route entries are removed")
	require.Contains(t, e2etest.Header(got, "Via"), "SIP/2.0/TCP 127.0.0.1:"+strconv.Itoa(int(tcpAddr.Port())))
	uac.send(e2etest.Answer(got, 200, "OK"))
	resp, _ := uas.Read(wait)
	require.True(t, strings.HasPrefix(resp, "SIP/2.0 200 "), resp)
	require.EqualValues(t, 0, srv.StreamStats().Dialed, "the caller's connection was reused")
}

// TestLargeRequestSwitchesToTCP: RFC 3261 §18.1.1. A request over 1300
// bytes whose target names no transport leaves over TCP; a small one, or a
// large one to a ;transport=udp target, over UDP.
func TestLargeRequestSwitchesToTCP(t *testing.T) {
	srv := startStream(t, asyncsip.Config{Listen: []string{"udp:127.0.0.1:0", "tcp:127.0.0.1:0"}},
		tm.Routes{Request: relayOrReply})
	udpAddr := srv.Addrs()[0]
	// The callee listens on TCP and UDP on one port.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	uc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port})
	if err != nil {
		t.Skipf("UDP port %d taken: %v", port, err)
	}
	uas := e2etest.WrapUDP(t, uc)
	defer uc.Close()
	uac := e2etest.NewUDPPeer(t)
	ruri := "sip:bob@127.0.0.1:" + strconv.Itoa(port)

	uac.SendTo(udpAddr, e2etest.Request("MESSAGE", ruri, "UDP", uac.Port(), "small-1", "hello"))
	msg, from := uas.Read(wait)
	require.Contains(t, e2etest.Header(msg, "Via"), "SIP/2.0/UDP")
	uas.SendTo(from, e2etest.Answer(msg, 200, "OK"))
	resp, _ := uac.Read(wait)
	require.True(t, strings.HasPrefix(resp, "SIP/2.0 200 "), resp)

	big := strings.Repeat("x", 1500)
	uac.SendTo(udpAddr, e2etest.Request("MESSAGE", ruri, "UDP", uac.Port(), "big-1", big))
	acc := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			acc <- c
		}
		close(acc)
	}()
	var nc net.Conn
	select {
	case nc = <-acc:
	case <-time.After(wait):
		t.Fatal("the large MESSAGE did not open a TCP connection")
	}
	require.NotNil(t, nc)
	defer nc.Close()
	peer := &streamPeer{t: t, nc: nc}
	peer.br = newReader(nc)
	got := peer.read(wait)
	require.Contains(t, e2etest.Header(got, "Via"), "SIP/2.0/TCP")
	require.True(t, strings.HasSuffix(got, big))
	peer.send(e2etest.Answer(got, 200, "OK"))
	resp, _ = uac.Read(wait)
	require.True(t, strings.HasPrefix(resp, "SIP/2.0 200 "), resp)

	uac.SendTo(udpAddr, e2etest.Request("MESSAGE", ruri+";transport=udp", "UDP", uac.Port(), "big-2", big))
	msg, from = uas.Read(wait)
	require.Contains(t, e2etest.Header(msg, "Via"), "SIP/2.0/UDP", "a target that forces UDP keeps it")
	uas.SendTo(from, e2etest.Answer(msg, 200, "OK"))
	resp, _ = uac.Read(wait)
	require.True(t, strings.HasPrefix(resp, "SIP/2.0 200 "), resp)
	require.EqualValues(t, 1, srv.StreamStats().Dialed)
}

// TestStreamKeepAliveAndFraming: CRLFCRLF gets CRLF (RFC 5626 §3.5.1);
// pipelined messages are framed by Content-Length; an oversized
// Content-Length or header section closes the connection.
func TestStreamKeepAliveAndFraming(t *testing.T) {
	srv := startStream(t, asyncsip.Config{
		Listen: []string{"tcp:127.0.0.1:0"},
		Stream: transport.StreamConfig{MaxHeader: 2048},
		Core:   tm.Config{Limits: tm.Limits{MaxMessage: 4096}},
	}, tm.Routes{Request: relayOrReply})
	addr := srv.Addrs()[0]

	p := dialStream(t, "tcp", addr)
	p.send("\r\n\r\n")
	_ = p.nc.SetReadDeadline(time.Now().Add(wait))
	pong := make([]byte, 2)
	_, err := p.br.Read(pong)
	require.NoError(t, err)
	require.Equal(t, "\r\n", string(pong))

	// Two requests in one write, then one split across writes.
	o1 := e2etest.Request("OPTIONS", "sip:127.0.0.1", "TCP", p.port(), "ka-1", "")
	o2 := e2etest.Request("OPTIONS", "sip:127.0.0.1", "TCP", p.port(), "ka-2", "")
	p.send(o1 + o2)
	// Two transactions (two Call-IDs): each is answered on its own, and SIP
	// promises no order between them (RFC 3261 §17; a proxy serves them in
	// parallel), so the responses are matched by Call-ID, not position.
	got := []string{e2etest.Header(p.read(wait), "Call-ID"), e2etest.Header(p.read(wait), "Call-ID")}
	require.ElementsMatch(t, []string{"ka-1", "ka-2"}, got)
	o3 := e2etest.Request("OPTIONS", "sip:127.0.0.1", "TCP", p.port(), "ka-3", "")
	p.send(o3[:20])
	time.Sleep(20 * time.Millisecond)
	p.send(o3[20:])
	require.Equal(t, "ka-3", e2etest.Header(p.read(wait), "Call-ID"))
	require.EqualValues(t, 1, srv.StreamStats().KeepAlives)

	big := dialStream(t, "tcp", addr)
	big.send("OPTIONS sip:127.0.0.1 SIP/2.0\r\nContent-Length: 100000\r\n\r\n")
	require.True(t, big.closedWithin(wait), "oversized Content-Length closes the connection")
	hdr := dialStream(t, "tcp", addr)
	hdr.send("OPTIONS sip:127.0.0.1 SIP/2.0\r\nX-Pad: " + strings.Repeat("y", 3000) + "\r\n")
	require.True(t, hdr.closedWithin(wait), "oversized header section closes the connection")
	require.EqualValues(t, 2, srv.StreamStats().FramingErrors)
}

// TestSlowlorisCut: a connection that sends half a header and stalls is
// closed by MessageTimeout; a silent one by IdleTimeout.
func TestSlowlorisCut(t *testing.T) {
	srv := startStream(t, asyncsip.Config{
		Listen: []string{"tcp:127.0.0.1:0"},
		Stream: transport.StreamConfig{MessageTimeout: 300 * time.Millisecond, IdleTimeout: 600 * time.Millisecond},
	}, tm.Routes{Request: relayOrReply})
	addr := srv.Addrs()[0]
	slow := dialStream(t, "tcp", addr)
	start := time.Now()
	slow.send("INVITE sip:bob@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:5")
	require.True(t, slow.closedWithin(wait))
	require.Less(t, time.Since(start), wait)
	idle := dialStream(t, "tcp", addr)
	require.True(t, idle.closedWithin(wait))
	require.EqualValues(t, 2, srv.StreamStats().Timeouts)
}

// TestConnectionLimits: MaxConnsPerIP and MaxConns refuse connections
// beyond them; a closed connection frees its slot.
func TestConnectionLimits(t *testing.T) {
	srv := startStream(t, asyncsip.Config{
		Listen: []string{"tcp:127.0.0.1:0", "tcp:[::1]:0"},
		Stream: transport.StreamConfig{MaxConnsPerIP: 2, MaxConns: 3},
	}, tm.Routes{Request: relayOrReply})
	v4 := srv.Addrs()[0]
	ping := func(p *streamPeer, id string) {
		p.send(e2etest.Request("OPTIONS", "sip:127.0.0.1", "TCP", p.port(), id, ""))
		require.True(t, strings.HasPrefix(p.read(wait), "SIP/2.0 200 "))
	}
	a, b := dialStream(t, "tcp", v4), dialStream(t, "tcp", v4)
	ping(a, "lim-a")
	ping(b, "lim-b")
	c := dialStream(t, "tcp", v4)
	require.True(t, c.closedWithin(wait), "a third connection from 127.0.0.1 is refused")
	require.EqualValues(t, 1, srv.StreamStats().Rejected)

	v6 := dialIPv6(t, srv.Addrs()[1])
	if v6 != nil {
		ping(v6, "lim-v6") // another source IP: allowed, and the total reaches 3
		v6b := dialIPv6(t, srv.Addrs()[1])
		require.True(t, v6b.closedWithin(wait), "MaxConns is reached")
	}
	open := srv.StreamStats().Open
	_ = a.nc.Close()
	require.Eventually(t, func() bool { return srv.StreamStats().Open < open }, wait, 10*time.Millisecond)
	d := dialStream(t, "tcp", v4)
	ping(d, "lim-d")
}

// dialIPv6 connects to an IPv6 listener, or returns nil when ::1 is not
// usable here.
func dialIPv6(t *testing.T, addr netip.AddrPort) *streamPeer {
	t.Helper()
	nc, err := net.DialTimeout("tcp6", addr.String(), 2*time.Second)
	if err != nil {
		t.Logf("IPv6 loopback unusable: %v", err)
		return nil
	}
	t.Cleanup(func() { _ = nc.Close() })
	return &streamPeer{t: t, nc: nc, br: newReader(nc)}
}

// TestStreamPipelined: many requests in one write are all answered, in
// batches larger than the writer's (a regression test for a writer that
// lost its batch buffer after a full batch).
func TestStreamPipelined(t *testing.T) {
	srv := startStream(t, asyncsip.Config{Listen: []string{"tcp:127.0.0.1:0"}}, tm.Routes{Request: relayOrReply})
	p := dialStream(t, "tcp", srv.Addrs()[0])
	const n = 100
	var all strings.Builder
	for i := 0; i < n; i++ {
		all.WriteString(e2etest.Request("OPTIONS", "sip:127.0.0.1", "TCP", p.port(), "pipe-"+strconv.Itoa(i), ""))
	}
	p.send(all.String())
	seen := map[string]bool{}
	for i := 0; i < n; i++ {
		resp := p.read(wait)
		require.True(t, strings.HasPrefix(resp, "SIP/2.0 200 "), resp)
		seen[e2etest.Header(resp, "Call-ID")] = true
	}
	require.Len(t, seen, n)
}

// TestTCPConnectRefused: a TCP target that refuses the connection fails
// its branch at once; the failure route can fork to another target, which
// gets the request over TCP.
func TestTCPConnectRefused(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	dead := ln.Addr().(*net.TCPAddr).Port
	require.NoError(t, ln.Close()) // nothing listens there now
	good, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer good.Close()
	alive := good.Addr().(*net.TCPAddr).Port
	srv := startStream(t, asyncsip.Config{Listen: []string{"udp:127.0.0.1:0", "tcp:127.0.0.1:0"}}, tm.Routes{
		Request: func(c *tm.Context) { _ = c.Relay("sip:bob@127.0.0.1:" + strconv.Itoa(dead) + ";transport=tcp") },
		Failure: func(c *tm.Context) {
			if len(c.Branches()) == 1 {
				_ = c.Relay("sip:bob@127.0.0.1:" + strconv.Itoa(alive) + ";transport=tcp")
			}
		},
	})
	acc := make(chan net.Conn, 1)
	go func() {
		defer close(acc)
		if c, err := good.Accept(); err == nil {
			acc <- c
		}
	}()
	uac := e2etest.NewUDPPeer(t)
	uac.SendTo(srv.Addrs()[0], e2etest.Request("MESSAGE", "sip:bob@example.net", "UDP", uac.Port(), "refused-1", "x"))
	var nc net.Conn
	select {
	case nc = <-acc:
	case <-time.After(wait):
		t.Fatal("the failure route's branch never connected")
	}
	require.NotNil(t, nc)
	defer nc.Close()
	p := &streamPeer{t: t, nc: nc, br: newReader(nc)}
	msg := p.read(wait)
	require.Equal(t, "refused-1", e2etest.Header(msg, "Call-ID"))
	p.send(e2etest.Answer(msg, 200, "OK"))
	resp, _ := uac.Read(wait)
	require.True(t, strings.HasPrefix(resp, "SIP/2.0 200 "), resp)
	st := srv.StreamStats()
	require.EqualValues(t, 1, st.DialFailures, "%+v", st)
	require.EqualValues(t, 1, st.Dialed, "%+v", st)
}

// TestReconnectAfterPeerClose: a peer that closed its connection gets a
// new one for the next request.
func TestReconnectAfterPeerClose(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	srv := startStream(t, asyncsip.Config{Listen: []string{"udp:127.0.0.1:0", "tcp:127.0.0.1:0"}},
		tm.Routes{Request: relayOrReply})
	uac := e2etest.NewUDPPeer(t)
	ruri := "sip:bob@127.0.0.1:" + strconv.Itoa(ln.Addr().(*net.TCPAddr).Port) + ";transport=tcp"
	for i := 0; i < 2; i++ {
		id := "reconn-" + strconv.Itoa(i)
		uac.SendTo(srv.Addrs()[0], e2etest.Request("MESSAGE", ruri, "UDP", uac.Port(), id, "x"))
		_ = ln.(*net.TCPListener).SetDeadline(time.Now().Add(wait))
		nc, err := ln.Accept()
		require.NoError(t, err, "request %d opens a connection", i)
		p := &streamPeer{t: t, nc: nc, br: newReader(nc)}
		msg := p.read(wait)
		require.Equal(t, id, e2etest.Header(msg, "Call-ID"))
		p.send(e2etest.Answer(msg, 200, "OK"))
		resp, _ := uac.Read(wait)
		require.True(t, strings.HasPrefix(resp, "SIP/2.0 200 "), resp)
		_ = nc.Close() // hang up
		require.Eventually(t, func() bool { return srv.StreamStats().Open == 0 }, wait, 5*time.Millisecond)
	}
	require.EqualValues(t, 2, srv.StreamStats().Dialed)
}

// TestIPv6StreamConversion: the same conversion over IPv6 loopback: a
// MESSAGE over TCP [::1] leaves over UDP [::1] and its 200 comes back on
// the connection.
func TestIPv6StreamConversion(t *testing.T) {
	uc, err := net.ListenUDP("udp6", &net.UDPAddr{IP: net.IPv6loopback})
	if err != nil {
		t.Skipf("IPv6 loopback unusable: %v", err)
	}
	uas := e2etest.WrapUDP(t, uc)
	defer uc.Close()
	srv := startStream(t, asyncsip.Config{Listen: []string{"udp:[::1]:0", "tcp:[::1]:0"}},
		tm.Routes{Request: relayOrReply})
	uac := dialIPv6(t, srv.Addrs()[1])
	require.NotNil(t, uac)
	ruri := "sip:bob@[::1]:" + strconv.Itoa(uas.Port())
	req := strings.ReplaceAll(e2etest.Request("MESSAGE", ruri, "TCP", uac.port(), "v6-1", "hi"), "127.0.0.1", "[::1]")
	uac.send(req)
	msg, from := uas.Read(wait)
	require.Equal(t, srv.Addrs()[0], from)
	require.Contains(t, e2etest.Header(msg, "Via"), "SIP/2.0/UDP [::1]:")
	uas.SendTo(from, e2etest.Answer(msg, 200, "OK"))
	resp := uac.read(wait)
	require.True(t, strings.HasPrefix(resp, "SIP/2.0 200 "), resp)
}
