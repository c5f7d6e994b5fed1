package tm

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"hash"
	"net/netip"
	"strings"

	"github.com/emiago/sipgo/sip"
)

// Signed Record-Route: an in-dialog request is routed only along a route
// this proxy signed.
//
// Every Record-Route value we add carries ";sig=<MAC>", a 64-bit
// HMAC-SHA256 of the dialog's Call-ID, the caller's From tag and the
// value's user part (the flow token, if any), keyed by Security.RouteKey.
// The To tag is not bound: it does not exist yet when the INVITE is
// relayed. The From tag is: requests of the caller carry it as their From
// tag, requests of the callee as their To tag, so verification tries both
// and needs no state. A request with a To tag is in-dialog; tm loose-routes
// it (and the route sees Context.InDialog true) only when its top Route
// names us with a MAC that verifies — the caller cannot make us relay an
// in-dialog-looking request to a Request-URI of its choice, and a Route
// copied from another dialog does not verify (other Call-ID).
//
// A branch gets one value, or two when it leaves on another transport or
// interface than the request came in on (RFC 5658: the outgoing interface
// on top, the incoming one below), and a side reached over a connection
// gets a flow token as its value's user part (RFC 5626 §5.3 style), so
// in-dialog requests find the connection again (recordRoute, parseFlow).
// Loose routing (looseRoute) removes our values and checks their MAC.

// sigParam is the Record-Route URI parameter holding the MAC.
const sigParam = "sig"

// deriveKeys returns the Record-Route and flow-token keys derived from the
// configured route key, or from a random one when it is empty.
func deriveKeys(routeKey []byte) (rr, flow []byte) {
	if len(routeKey) == 0 {
		routeKey = make([]byte, 32)
		_, _ = rand.Read(routeKey)
	}
	derive := func(label string) []byte {
		m := hmac.New(sha256.New, routeKey)
		m.Write([]byte(label))
		return m.Sum(nil)
	}
	return derive("asyncsip record-route v1"), derive("asyncsip flow-token v1")
}

// routeMAC is the MAC of a Record-Route value for a dialog.
func (s *Server) routeMAC(callID, fromTag, user string) string {
	var sum [16]byte
	return string(s.appendRouteMAC(sum[:0], callID, fromTag, user))
}

// appendRouteMAC appends routeMAC's 16 hex digits to b. The HMAC state
// comes from a pool (SignedRoute may run on any goroutine), reset, not
// rebuilt.
func (s *Server) appendRouteMAC(b []byte, callID, fromTag, user string) []byte {
	return appendRouteMACOf(s, b, callID, fromTag, user)
}

// appendRouteMACOf is appendRouteMAC over strings or bytes (the index's
// spans, ixroute.go).
func appendRouteMACOf[S string | []byte](s *Server, b []byte, callID, fromTag, user S) []byte {
	m, _ := s.rrMACs.Get().(*routeMACState)
	if m == nil {
		m = &routeMACState{h: hmac.New(sha256.New, s.rrKey)}
	}
	m.h.Reset()
	m.in = m.in[:0]
	for _, p := range [...]S{callID, fromTag, user} {
		m.in = append(m.in, p...)
		m.in = append(m.in, 0)
	}
	m.h.Write(m.in)
	m.sum = m.h.Sum(m.sum[:0])
	b = hex.AppendEncode(b, m.sum[:8])
	if cap(m.in) <= 4096 {
		s.rrMACs.Put(m)
	}
	return b
}

// routeMACState is a reusable Record-Route HMAC with its scratch buffers.
type routeMACState struct {
	h       hash.Hash
	in, sum []byte
}

// signRecordRoute adds the MAC of req's dialog to rr.
func (s *Server) signRecordRoute(rr *sip.RecordRouteHeader, req *sip.Request) {
	callID, fromTag := dialogIDs(req)
	rr.Address.UriParams.Add(sigParam, s.routeMAC(callID, fromTag, rr.Address.User))
}

// SignedRoute returns the Record-Route value this server adds, naming tp,
// to a request of req's dialog: "<sip:host:port;lr;sig=…>", with
// ";transport=" for anything but UDP and, when flow is valid, the flow
// token of that connection as user part (what tm puts in the value facing
// a side reached over a connection). The signature binds req's Call-ID and
// From tag (the caller's) and the token, keyed by Config.Security.RouteKey.
//
// A UA puts the value in the Route of its in-dialog requests; a request
// carrying it on top is loose-routed with Context.InDialog true, from the
// caller (From tag signed) or the callee (the same tag as To tag). Tests
// and tools use it to build such requests without setting up the call
// first (siptest.Harness.InDialog does); a server sharing RouteKey returns
// the same value. It returns "" when req has no Call-ID or no From tag:
// such a dialog cannot be signed for.
func (s *Server) SignedRoute(req *sip.Request, tp Transport, flow netip.AddrPort) string {
	callID, fromTag := dialogIDs(req)
	if callID == "" || fromTag == "" {
		return ""
	}
	var tok string
	if flow.IsValid() {
		tok = s.flowToken(flow)
	}
	rr := rrHeader(tp, tok)
	s.signRecordRoute(rr, req)
	return rr.Value()
}

// dialogIDs returns the Call-ID and From tag of req.
func dialogIDs(req *sip.Request) (callID, fromTag string) {
	if id := req.CallID(); id != nil {
		callID = string(*id)
	}
	if f := req.From(); f != nil {
		fromTag, _ = f.Params.Get("tag")
	}
	return callID, fromTag
}

// routeSigned reports whether u, a Route value naming us, carries a MAC
// for the dialog of callID whose caller's tag is tagA or tagB (the From
// and To tags of a request in either direction).
func (s *Server) routeSigned(u *sip.Uri, callID, tagA, tagB string) bool {
	sig, ok := u.UriParams.Get(sigParam)
	if !ok || len(sig) != 16 || callID == "" {
		return false
	}
	for _, tag := range [...]string{tagA, tagB} {
		var want [16]byte
		if tag != "" && hmac.Equal([]byte(sig), s.appendRouteMAC(want[:0], callID, tag, u.User)) {
			return true
		}
	}
	return false
}

// requestSigned reports whether u verifies for req's dialog.
func (s *Server) requestSigned(u *sip.Uri, req *sip.Request) bool {
	callID, from := dialogIDs(req)
	var to string
	if t := req.To(); t != nil {
		to, _ = t.Params.Get("tag")
	}
	return s.routeSigned(u, callID, from, to)
}

// hasToTag reports whether req is in-dialog (RFC 3261 §12.2: a To tag).
func hasToTag(req *sip.Request) bool {
	to := req.To()
	return to != nil && to.Params.Has("tag")
}

// looseRoute applies §16.4: undo a strict router's rewrite, then remove the
// Route values that name this proxy. It reports whether one was removed,
// and notes in c the connection named by the last one removed (a flow
// token, see parseFlow), whether the removed values were signed for
// the dialog (c.signed) and whether a Route not naming us is left on a request
// that did not come along our signed Record-Route (c.foreignRoute). A value of ours that does not verify on
// an in-dialog request is left in place, unsigned.
func (s *Server) looseRoute(c *Context, req *sip.Request) bool {
	inDialog := hasToTag(req)
	routes := req.GetHeaders("Route")
	if len(routes) > 0 && req.Recipient.User == "" && s.isLocal(req.Recipient.Host, req.Recipient.Port) {
		if last, ok := routes[len(routes)-1].(*sip.RouteHeader); ok {
			c.signed = inDialog && s.requestSigned(&req.Recipient, req)
			req.Recipient = *last.Address.Clone()
			removeLastRoute(req)
		}
	}
	removed := false
	for i := 0; i < 2; i++ { // double Record-Route puts two of ours on top
		r := firstRoute(req)
		if r == nil || !s.isLocal(r.Address.Host, r.Address.Port) {
			break
		}
		if inDialog {
			if !s.requestSigned(&r.Address, req) {
				c.signed = false
				break
			}
			c.signed = true
		}
		c.flow, c.flowProto = s.parseFlow(&r.Address)
		req.RemoveHeader("Route")
		removed = true
	}
	// A Route left that does not name us was chosen by the sender, unless
	// the request came along our signed Record-Route (then it is the rest
	// of the dialog's route set).
	c.foreignRoute = !c.signed && firstRoute(req) != nil
	return removed
}

func removeLastRoute(req *sip.Request) {
	all := req.GetHeaders("Route")
	keep := make([]sip.Header, 0, len(all)-1)
	keep = append(keep, all[:len(all)-1]...)
	for req.RemoveHeader("Route") {
	}
	for _, h := range keep {
		req.AppendHeader(h)
	}
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

// recordRoutable: Record-Route goes on dialog-creating requests.
func recordRoutable(req *sip.Request) bool {
	if req.Method == sip.REGISTER || req.Method == sip.CANCEL || req.Method == sip.ACK {
		return false
	}
	to := req.To()
	return to == nil || !to.Params.Has("tag")
}

// firstRoute is req.Route() without its cost when req has no Route: sipgo's
// Route allocates a header to parse into on every call that finds none
// (9 allocations per relayed call, from looseRoute, nextHop and
// strictRoute).
func firstRoute(req *sip.Request) *sip.RouteHeader {
	if req.GetHeader("Route") == nil {
		return nil
	}
	return req.Route()
}
