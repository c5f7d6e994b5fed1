package tm

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/emiago/sipgo/sip"
)

// Transport selection for the proxy core: which of the registered transports
// carries a message, the RFC 3261 §18.1.1 switch to TCP for large requests,
// and the branches to fail when a connection cannot be opened. The
// Record-Route values a branch gets for its transports (RFC 5658, flow
// tokens) are in recordroute.go; every send goes through send.go.

// ConnTracker is implemented by connection-oriented transports (TCP, TLS,
// WebSocket). HasConn reports whether a connection to addr is open, so that
// a target that names no transport reuses it (RFC 5923 spirit: a request
// back to a peer goes on the connection the peer opened). It is called on
// the loops and must not block.
type ConnTracker interface {
	HasConn(addr netip.AddrPort) bool
}

// UDPMaxRequest is the size above which a request whose target does not
// force a transport goes over TCP when a TCP transport exists (RFC 3261
// §18.1.1: the path MTU is unknown, so 1300 bytes).
const UDPMaxRequest = 1300

// viaRRSlack is what our Via and Record-Route add to a request, counted
// when deciding whether it still fits in a datagram.
const viaRRSlack = 200

// uriTransport returns the transport a URI asks for (upper case, as in a
// Via), or "" when it leaves the choice to the proxy. sips: means TLS (or
// WSS with transport=ws).
func uriTransport(u *sip.Uri) string {
	t, _ := u.UriParams.Get("transport")
	t = strings.ToUpper(t)
	if strings.EqualFold(u.Scheme, "sips") {
		if t == "WS" || t == "WSS" {
			return "WSS"
		}
		return "TLS"
	}
	switch t {
	case "UDP", "TCP", "TLS", "WS", "WSS", "SCTP":
		return t
	}
	return ""
}

// defaultPort is the port of a URI without one: 5061 for TLS (RFC 3261
// §19.1.2), 5060 otherwise.
func defaultPort(proto string) int {
	if proto == "TLS" || proto == "WSS" {
		return 5061
	}
	return 5060
}

// transportFor picks a transport that can reach addr: one of the same
// address family speaking proto when proto is set; otherwise one that
// already has a connection to addr, else the first registered.
func (s *Server) transportFor(addr netip.AddrPort, proto string) (Transport, error) {
	v4 := addr.Addr().Unmap().Is4()
	var first Transport
	for _, tp := range s.tps {
		if tp.LocalAddr().Addr().Unmap().Is4() != v4 {
			continue
		}
		if proto != "" {
			if strings.EqualFold(tp.Protocol(), proto) {
				return tp, nil
			}
			continue
		}
		if ct, ok := tp.(ConnTracker); ok && ct.HasConn(addr) {
			return tp, nil
		}
		if first == nil {
			first = tp
		}
	}
	if first == nil {
		if proto != "" {
			return nil, fmt.Errorf("%w: %s over %s", ErrNoTransport, addr, proto)
		}
		return nil, fmt.Errorf("%w: %s", ErrNoTransport, addr)
	}
	return first, nil
}

// hasProtocol reports whether a transport of proto is registered.
func (s *Server) hasProtocol(proto string) bool {
	for _, tp := range s.tps {
		if strings.EqualFold(tp.Protocol(), proto) {
			return true
		}
	}
	return false
}

// largeSwitch applies RFC 3261 §18.1.1 to a branch about to leave over UDP
// with no transport forced by its target: when the request (with our Via
// and Record-Route) exceeds UDPMaxRequest and a TCP transport of the right
// family exists, that transport is returned instead.
func (c *Context) largeSwitch(req *sip.Request, dst netip.AddrPort, tp Transport) Transport {
	if !strings.EqualFold(tp.Protocol(), "UDP") || !c.s.hasProtocol("TCP") {
		return tp
	}
	return c.largeSwitchLen(len(c.ls.w.bytes(req)), dst, tp)
}

// largeSwitchLen is largeSwitch for a request of n bytes before our Via
// and Record-Route.
func (c *Context) largeSwitchLen(n int, dst netip.AddrPort, tp Transport) Transport {
	if !strings.EqualFold(tp.Protocol(), "UDP") || !c.s.hasProtocol("TCP") {
		return tp
	}
	if n+viaRRSlack <= UDPMaxRequest {
		return tp
	}
	if t, err := c.s.transportFor(dst, "TCP"); err == nil {
		return t
	}
	return tp
}

// sameInterface reports whether two transports share protocol and
// advertised address (a connection and its listener do).
func sameInterface(a, b Transport) bool {
	ah, ap := a.Advertised()
	bh, bp := b.Advertised()
	return ap == bp && stripBrackets(ah) == stripBrackets(bh) && strings.EqualFold(a.Protocol(), b.Protocol())
}

// ConnectionFailed tells tm that dst cannot be reached over tp (a
// connection-oriented transport's connect failed, so what it queued was
// dropped). Client transactions sent there that have no response yet fail
// now, as RFC 3261 §8.1.3.1 says of transport errors, instead of waiting
// for Timer B or F: the branch ends with 408 and the failure route can try
// another target. It is safe from any goroutine.
func (s *Server) ConnectionFailed(tp Transport, dst netip.AddrPort) {
	for _, ls := range s.loops {
		_ = ls.loop.Post(func() {
			var failed []*clientTx
			for _, t := range ls.ctx {
				if t.state == stTrying && t.dst == dst && sameInterface(t.tp, tp) {
					failed = append(failed, t)
				}
			}
			for _, t := range failed {
				t.timeout()
			}
		})
	}
}
