package transport

import (
	"net/netip"

	"github.com/asyncsip/asyncsip/reactor"
)

// UDP is a UDP listener: a reactor socket (one per loop with SO_REUSEPORT)
// whose datagrams go to Core.Receive on the loop that read them, and the
// transport that sends on it.
type UDP struct {
	sock *reactor.UDPSocket
	host string
	port int
}

// ListenUDP opens a UDP listener on g's loops; adv is what it advertises
// (see Advertised). Datagrams are handed to core.Receive as they are read.
func ListenUDP(g *reactor.Group, cfg reactor.UDPConfig, adv string, core Core) (*UDP, error) {
	t := &UDP{}
	var tp Transport = t // converted once, not per datagram
	sock, err := reactor.ListenUDP(g, cfg, func(l *reactor.Loop, p *reactor.Packet) {
		core.Receive(l, p.Data, p.From, tp)
	})
	if err != nil {
		return nil, err
	}
	t.sock = sock
	t.host, t.port = Advertised(sock.LocalAddr(), adv)
	return t, nil
}

// Send writes b to `to` from loop l's socket.
func (t *UDP) Send(l *reactor.Loop, b []byte, to netip.AddrPort) error {
	return t.sock.Send(l, b, to)
}

// Protocol returns "UDP".
func (t *UDP) Protocol() string { return "UDP" }

// Advertised returns the host and port put in Via and Record-Route.
func (t *UDP) Advertised() (string, int) { return t.host, t.port }

// LocalAddr returns the bound address.
func (t *UDP) LocalAddr() netip.AddrPort { return t.sock.LocalAddr() }

// Stats returns the socket's counters.
func (t *UDP) Stats() reactor.UDPStats { return t.sock.Stats() }

// Close closes the socket.
func (t *UDP) Close() error { return t.sock.Close() }
