package tm

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/netip"
	"strings"

	"github.com/emiago/sipgo/sip"
)

// Transport selection for the proxy core: which of the registered transports
// carries a message, the RFC 3261 §18.1.1 switch to TCP for large requests,
// and the Record-Route values of a branch (RFC 5658 double Record-Route when
// the request leaves on another transport or interface than it came in on).

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
	if len(c.ls.w.bytes(req))+viaRRSlack <= UDPMaxRequest {
		return tp
	}
	if t, err := c.s.transportFor(dst, "TCP"); err == nil {
		return t
	}
	return tp
}

// recordRoute adds this proxy's Record-Route to a branch leaving over out
// to dst. When the request came in over another transport or interface,
// two values are added (RFC 5658): the inbound interface below, the
// outbound one on top, so that each side of the dialog reaches the
// interface facing it. A side reached over a connection (TCP, TLS, WS) gets
// a flow token in its value's user part (RFC 5626 §5.3 style): the
// connection's address, authenticated, so that in-dialog requests towards
// that side go back on the connection even when its Contact cannot be
// resolved (a WebSocket client's ".invalid" host) or is behind NAT. Two
// connection-oriented sides always get two values, one token each.
func (c *Context) recordRoute(req *sip.Request, dst netip.AddrPort, out Transport) {
	in := c.tp
	var inTok, outTok string
	if in != nil && !strings.EqualFold(in.Protocol(), "UDP") && c.src.IsValid() {
		inTok = c.s.flowToken(c.src)
	}
	if !strings.EqualFold(out.Protocol(), "UDP") {
		outTok = c.s.flowToken(dst)
	}
	if in != nil && (!sameInterface(in, out) || inTok != "" || outTok != "") {
		rr := rrHeader(in, inTok)
		c.s.signRecordRoute(rr, req)
		req.PrependHeader(rr)
	}
	rr := rrHeader(out, outTok)
	c.s.signRecordRoute(rr, req)
	req.PrependHeader(rr)
}

// sameInterface reports whether two transports share protocol and
// advertised address (a connection and its listener do).
func sameInterface(a, b Transport) bool {
	ah, ap := a.Advertised()
	bh, bp := b.Advertised()
	return ap == bp && stripBrackets(ah) == stripBrackets(bh) && strings.EqualFold(a.Protocol(), b.Protocol())
}

// rrHeader is the Record-Route value naming tp, with a flow token as user
// part when one is given: ;transport= is added for anything but UDP.
func rrHeader(tp Transport, token string) *sip.RecordRouteHeader {
	host, port := tp.Advertised()
	params := sip.HeaderParams{}
	if p := strings.ToLower(tp.Protocol()); p != "udp" {
		params = append(params, sip.HeaderKV{K: "transport", V: p})
	}
	params = append(params, sip.HeaderKV{K: "lr", V: ""})
	return &sip.RecordRouteHeader{Address: sip.Uri{Scheme: "sip", User: token, Host: host, Port: port, UriParams: params}}
}

// flowPrefix starts a flow token.
const flowPrefix = "ft-"

// flowToken encodes addr as "ft-<address hex>-<MAC hex>", the MAC keyed by
// a secret of this server so that a token cannot be forged to reach
// another connection.
func (s *Server) flowToken(addr netip.AddrPort) string {
	b, _ := netip.AddrPortFrom(addr.Addr().Unmap(), addr.Port()).MarshalBinary()
	return flowPrefix + hex.EncodeToString(b) + "-" + hex.EncodeToString(s.flowMAC(b))
}

func (s *Server) flowMAC(b []byte) []byte {
	m := hmac.New(sha256.New, s.flowKey)
	m.Write(b)
	return m.Sum(nil)[:8]
}

// parseFlow returns the connection a Route value of ours names, and the
// transport it asks for; the zero address when it carries no valid token.
func (s *Server) parseFlow(u *sip.Uri) (netip.AddrPort, string) {
	if !strings.HasPrefix(u.User, flowPrefix) {
		return netip.AddrPort{}, ""
	}
	addrHex, macHex, ok := strings.Cut(u.User[len(flowPrefix):], "-")
	if !ok {
		return netip.AddrPort{}, ""
	}
	b, err1 := hex.DecodeString(addrHex)
	mac, err2 := hex.DecodeString(macHex)
	var a netip.AddrPort
	if err1 != nil || err2 != nil || !hmac.Equal(mac, s.flowMAC(b)) || a.UnmarshalBinary(b) != nil {
		return netip.AddrPort{}, ""
	}
	return a, uriTransport(u)
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
