package e2etest

import (
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// UDPPeer is a raw SIP endpoint on a UDP socket of 127.0.0.1, closed when
// the test ends.
type UDPPeer struct {
	t    testing.TB
	conn *net.UDPConn
}

// NewUDPPeer opens a UDP peer on an ephemeral port of 127.0.0.1.
func NewUDPPeer(t testing.TB) *UDPPeer {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	return &UDPPeer{t: t, conn: c}
}

// Port is the peer's local port.
func (p *UDPPeer) Port() int { return p.conn.LocalAddr().(*net.UDPAddr).Port }

// Conn is the peer's socket.
func (p *UDPPeer) Conn() *net.UDPConn { return p.conn }

// SendTo sends raw to `to`.
func (p *UDPPeer) SendTo(to netip.AddrPort, raw string) {
	p.t.Helper()
	_, err := p.conn.WriteToUDPAddrPort([]byte(raw), to)
	require.NoError(p.t, err)
}

// Read returns the next datagram that is not a 100 Trying, and its source,
// failing the test when none arrives within d.
func (p *UDPPeer) Read(d time.Duration) (string, netip.AddrPort) {
	p.t.Helper()
	buf := make([]byte, 65535)
	deadline := time.Now().Add(d)
	for {
		_ = p.conn.SetReadDeadline(deadline)
		n, from, err := p.conn.ReadFromUDPAddrPort(buf)
		require.NoError(p.t, err)
		msg := string(buf[:n])
		if !strings.HasPrefix(msg, "SIP/2.0 100 ") {
			return msg, from
		}
	}
}

// WrapUDP makes a peer of an open socket (a port chosen by the test, an
// IPv6 one); the caller closes it.
func WrapUDP(t testing.TB, c *net.UDPConn) *UDPPeer { return &UDPPeer{t: t, conn: c} }

// Next returns the next datagram, 100 Trying included, and its source,
// failing the test when none arrives within d.
func (p *UDPPeer) Next(d time.Duration) (string, netip.AddrPort) {
	p.t.Helper()
	buf := make([]byte, 65535)
	require.NoError(p.t, p.conn.SetReadDeadline(time.Now().Add(d)))
	n, from, err := p.conn.ReadFromUDPAddrPort(buf)
	require.NoError(p.t, err, "no message within %v", d)
	return string(buf[:n]), from
}

// Final reads until a final response (2xx–6xx) arrives and returns it,
// failing the test when a read waits longer than d.
func (p *UDPPeer) Final(d time.Duration) string {
	p.t.Helper()
	for {
		msg, _ := p.Next(d)
		if strings.HasPrefix(msg, "SIP/2.0 ") && !strings.HasPrefix(msg, "SIP/2.0 1") {
			return msg
		}
	}
}

// AnswerAll makes the peer a UAS that answers every request but ACK with
// code (see Answer), until the test ends. The peer must not be read
// otherwise meanwhile.
func (p *UDPPeer) AnswerAll(code int, reason string) {
	done := make(chan struct{})
	p.t.Cleanup(func() { _ = p.conn.Close(); <-done })
	go func() {
		defer close(done)
		buf := make([]byte, 65535)
		for {
			n, from, err := p.conn.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			msg := string(buf[:n])
			if strings.HasPrefix(msg, "ACK ") || strings.HasPrefix(msg, "SIP/2.0") {
				continue
			}
			_, _ = p.conn.WriteToUDPAddrPort([]byte(Answer(msg, code, reason)), from)
		}
	}()
}
