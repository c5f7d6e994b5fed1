package e2e

// Regression tests for bugs the SIPp interop tests found, each pinned with
// plain UDP sockets so that it fails deterministically.

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/asyncsip/asyncsip"
	"github.com/asyncsip/asyncsip/tm"
)

// udpPeer is a bare UDP socket on 127.0.0.1 playing a UA in a test.
type udpPeer struct {
	t    testing.TB
	conn *net.UDPConn
	port int
}

func newUDPPeer(t testing.TB) *udpPeer {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	return &udpPeer{t: t, conn: c, port: c.LocalAddr().(*net.UDPAddr).Port}
}

func (p *udpPeer) send(msg string, to *net.UDPAddr) {
	p.t.Helper()
	_, err := p.conn.WriteToUDP([]byte(strings.ReplaceAll(msg, "\n", "\r\n")), to)
	require.NoError(p.t, err)
}

// recv returns the next datagram, failing the test after 3 s.
func (p *udpPeer) recv() (string, *net.UDPAddr) {
	p.t.Helper()
	buf := make([]byte, 65536)
	require.NoError(p.t, p.conn.SetReadDeadline(time.Now().Add(3*time.Second)))
	n, from, err := p.conn.ReadFromUDP(buf)
	require.NoError(p.t, err, "waiting for a message")
	return string(buf[:n]), from
}

// A provisional response that reaches the proxy after the 2xx of its
// INVITE (a UAS sending 180 and 200 back to back is enough: with several
// loops the 180 can be handed over to the owner loop after the 200 was
// read there) was forwarded upstream statelessly, after the 200: SIPp
// aborted such calls ("unexpected message while pausing"). Only 2xx
// retransmissions may follow the 2xx (RFC 3261 §16.7 step 5, RFC 6026 §8).
func TestRegressLateProvisionalAfter2xx(t *testing.T) {
	uac, uas := newUDPPeer(t), newUDPPeer(t)
	// One worker: the order in which the proxy handles the UAS's messages
	// is the order they were sent.
	p := startProxy(t, asyncsip.Config{Workers: 1}, tm.Routes{Request: func(c *tm.Context) { _ = c.Relay() }})
	paddr := net.UDPAddrFromAddrPort(p.srv.Addrs()[0])

	uac.send(`INVITE sip:bob@127.0.0.1:`+itoa(uas.port)+` SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:`+itoa(uac.port)+`;branch=z9hG4bK-late-1;rport
Max-Forwards: 70
From: <sip:alice@127.0.0.1>;tag=a1
To: <sip:bob@127.0.0.1>
Call-ID: late-provisional
CSeq: 1 INVITE
Contact: <sip:alice@127.0.0.1:`+itoa(uac.port)+`>
Content-Length: 0

`, paddr)
	got, _ := uac.recv()
	require.True(t, strings.HasPrefix(got, "SIP/2.0 100 "), got)

	inv, from := uas.recv()
	require.True(t, strings.HasPrefix(inv, "INVITE "), inv)
	lines := strings.Split(inv, "\r\n")
	ok, ringing := response(lines, "200 OK", uas.port), response(lines, "180 Ringing", uas.port)
	for _, m := range [][]byte{ok, ringing, ok} { // 200, the late 180, a 200 retransmission
		_, err := uas.conn.WriteToUDP(m, from)
		require.NoError(t, err)
	}

	got, _ = uac.recv()
	require.True(t, strings.HasPrefix(got, "SIP/2.0 200 "), got)
	got, _ = uac.recv()
	require.True(t, strings.HasPrefix(got, "SIP/2.0 200 "), "after the 200, only its retransmission may follow:\n%s", got)
}
