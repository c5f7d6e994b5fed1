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
