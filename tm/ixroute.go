package tm

import (
	"bytes"
	"crypto/hmac"
	"encoding/hex"
	"net/netip"

	"github.com/asyncsip/asyncsip/tm/internal/sipindex"
)

// Loose routing from the index (issue 19): what looseRoute
// (recordroute.go) decides for a request, read from its datagram and
// sipindex.Index, so that an in-dialog ACK or BYE along our signed
// Record-Route is relayed without a sipgo message. ixLooseRoute reports
// ok=false for what it does not read exactly as sipgo would (the caller
// then materialises the request and calls looseRoute): the strict-router
// case (a Request-URI naming us without a user part, with Routes), a
// Route value that is not a plain "<sip:[user@]host[:port];params>", a
// parameter list with whitespace or quotes, a To or From tag not read
// plainly. Held to looseRoute by ixroute_test.go.

// routeValues iterates the values of the Route fields of an index, in
// order, a comma-separated field giving one value per element (as sipgo
// splits them: commas outside double quotes and angle brackets).
type routeValues struct {
	ix    *sipindex.Index
	field int // index in ix.Fields of the current field, -1 before the first
	pos   int // next offset in the current field's value
}

// next returns the next Route value's span and the index of its field;
// ok is false at the end, bad is true for a value it does not split as
// sipgo does (an empty element, a backslash, a folded field).
func (it *routeValues) next() (val sipindex.Span, field int, ok, bad bool) {
	ix := it.ix
	data := ix.Data()
	for {
		if it.field >= 0 && it.field < len(ix.Fields) {
			f := ix.Fields[it.field]
			if it.pos < int(f.Value.End) {
				v := data[it.pos:f.Value.End]
				end, good := routeValueEnd(v)
				if !good {
					return sipindex.Span{}, 0, false, true
				}
				s, e := 0, end
				for s < e && (v[s] == ' ' || v[s] == '\t') {
					s++
				}
				for e > s && (v[e-1] == ' ' || v[e-1] == '\t') {
					e--
				}
				if s == e {
					return sipindex.Span{}, 0, false, true
				}
				val = sipindex.Span{Start: int32(it.pos + s), End: int32(it.pos + e)}
				if end < len(v) {
					it.pos += end + 1 // past the comma
					if it.pos >= int(f.Value.End) {
						return sipindex.Span{}, 0, false, true // a trailing comma
					}
				} else {
					it.pos = int(f.Value.End)
				}
				return val, it.field, true, false
			}
		}
		it.field++
		for it.field < len(ix.Fields) && ix.Fields[it.field].Kind != sipindex.KindRoute {
			it.field++
		}
		if it.field >= len(ix.Fields) {
			return sipindex.Span{}, 0, false, false
		}
		f := ix.Fields[it.field]
		if f.Folded || f.Value.Len() == 0 {
			return sipindex.Span{}, 0, false, true // sipgo keeps an empty Route
		}
		it.pos = int(f.Value.Start)
	}
}

// routeValueEnd is the offset of the comma ending the first value of v
// (len(v) when none); good is false for a backslash or unbalanced quotes
// or brackets.
func routeValueEnd(v []byte) (int, bool) {
	inQ, inB := false, false
	for i, c := range v {
		switch {
		case c == '\\', c == '"' && inB:
			return 0, false // sipgo toggles quotes inside brackets too
		case c == '"':
			inQ = !inQ
		case inQ:
		case c == '<':
			if inB {
				return 0, false
			}
			inB = true
		case c == '>':
			if !inB {
				return 0, false
			}
			inB = false
		case c == ',' && !inB:
			return i, true
		}
	}
	return len(v), !inQ && !inB
}

// fieldLineEnd is where the line of field i ends (after its CRLF): the
// next field's start, or the empty line.
func fieldLineEnd(ix *sipindex.Index, i int) int32 {
	if i+1 < len(ix.Fields) {
		return ix.Fields[i+1].Name.Start
	}
	return ix.Body.Start - 2
}

// ixRouteCuts returns the byte ranges that remove the first k (≤ 2) Route
// values, for ixSplice.Cuts: a field all of whose values go loses its
// whole line, one that keeps some loses its first values and their commas
// (what RemoveHeader("Route") k times, then serializing, leaves). ok is
// false when there are fewer than k values or routeValues does not read
// them.
func ixRouteCuts(ix *sipindex.Index, k int) (cuts [2]sipindex.Span, ok bool) {
	if k < 0 || k > 2 {
		return cuts, false
	}
	if k == 0 {
		return cuts, true
	}
	it := routeValues{ix: ix, field: -1}
	var vals [2]sipindex.Span
	var fields [2]int
	for i := 0; i < k; i++ {
		v, fi, more, bad := it.next()
		if bad || !more {
			return cuts, false
		}
		vals[i], fields[i] = v, fi
	}
	nv, nfi, nmore, bad := it.next()
	if bad {
		return cuts, false
	}
	n := 0
	for i := 0; i < k; i++ {
		if i > 0 && fields[i] == fields[i-1] {
			continue // the same field as the value before: one cut
		}
		fi := fields[i]
		if fi == fields[k-1] && nmore && nfi == fi {
			cuts[n] = sipindex.Span{Start: vals[i].Start, End: nv.Start}
		} else {
			cuts[n] = sipindex.Span{Start: ix.Fields[fi].Name.Start, End: fieldLineEnd(ix, fi)}
		}
		n++
	}
	if n == 2 && cuts[0].End == cuts[1].Start {
		cuts = [2]sipindex.Span{{Start: cuts[0].Start, End: cuts[1].End}}
	}
	return cuts, true
}

// ixURI is a sip or sips URI read by plainURI: slices of the message.
type ixURI struct {
	sips   bool
	user   []byte
	host   []byte // as sipgo's Uri.Host: an IPv6 reference with its brackets
	port   int    // 0 when absent
	params []byte // ";a=b;c" (plain, see plainParam), possibly empty
}

// plainURI reads u (without angle brackets) as sipgo's ParseUri does, for
// the forms it reads exactly: "sip:" or "sips:" (any case), an optional
// user part without password ('@' found anywhere, as sipgo looks for it),
// a host of letters, digits, '-', '.', '_' or a bracketed IPv6 address, an
// optional port, plain parameters, no headers and no escapes.
func plainURI(u []byte) (ixURI, bool) {
	var x ixURI
	c := bytes.IndexByte(u, ':')
	if c < 3 || c > 4 {
		return x, false
	}
	switch {
	case equalFoldStr(u[:c], "sip"):
	case equalFoldStr(u[:c], "sips"):
		x.sips = true
	default:
		return x, false
	}
	s := u[c+1:]
	if bytes.IndexByte(s, '?') >= 0 || bytes.IndexByte(s, '%') >= 0 || bytes.HasPrefix(s, []byte("//")) {
		return x, false
	}
	at := -1
	for i, ch := range s {
		if ch == '[' {
			break
		}
		if ch == '@' {
			at = i
			break
		}
	}
	if at >= 0 {
		x.user = s[:at]
		for _, ch := range x.user {
			// RFC 3261 §25.1 user: unreserved and user-unreserved
			// characters (no escapes, no password).
			if !tokenByte(ch) && bytes.IndexByte([]byte("()&=$,/"), ch) < 0 || ch == '%' {
				return x, false
			}
		}
		s = s[at+1:]
	}
	i := 0
	if len(s) > 0 && s[0] == '[' {
		rb := bytes.IndexByte(s, ']')
		if rb < 0 || !plainIPv6(s[1:rb]) {
			return x, false
		}
		i = rb + 1
	} else {
		for i < len(s) && (s[i] == '-' || s[i] == '.' || s[i] == '_' || '0' <= s[i] && s[i] <= '9' || 'a' <= s[i]|0x20 && s[i]|0x20 <= 'z') {
			i++
		}
	}
	if i == 0 {
		return x, false
	}
	x.host = s[:i]
	if i < len(s) && s[i] == ':' {
		i++
		ps := i
		for i < len(s) && '0' <= s[i] && s[i] <= '9' {
			i++
		}
		if i == ps || i-ps > 5 {
			return x, false
		}
		x.port = atoiDigits(s[ps:i])
	}
	if i < len(s) && s[i] != ';' {
		return x, false
	}
	x.params = s[i:]
	if _, _, _, _, ok := plainParam(x.params, ""); !ok {
		return x, false
	}
	return x, true
}

// plainRoute reads a Route value "<uri>" (header parameters after it
// allowed when plain; sipgo's Route keeps none) with plainURI.
func plainRoute(v []byte) (ixURI, bool) {
	if len(v) < 2 || v[0] != '<' {
		return ixURI{}, false
	}
	gt := bytes.IndexByte(v, '>')
	if gt < 0 {
		return ixURI{}, false
	}
	if _, _, _, _, ok := plainParam(v[gt+1:], ""); !ok {
		return ixURI{}, false
	}
	return plainURI(v[1:gt])
}

// uriParam reads parameter name of u as UriParams.Get does.
func (u *ixURI) param(name string) (val []byte, found, ok bool) {
	_, vs, ve, found, ok := plainParam(u.params, name)
	return u.params[vs:ve], found, ok
}

// isLocalBytes is isLocal (server.go) over bytes, allocating only for an
// IPv6 host.
func (s *Server) isLocalBytes(host []byte, port int) bool {
	if port == 0 {
		port = 5060
	}
	bare := host
	if len(bare) > 1 && bare[0] == '[' && bare[len(bare)-1] == ']' {
		bare = bare[1 : len(bare)-1]
	}
	var addr netip.Addr
	parsed := false
	for _, tp := range s.tps {
		h, p := tp.Advertised()
		if p == port && (h == string(host) || stripBrackets(h) == string(bare)) {
			return true
		}
		if la := tp.LocalAddr(); int(la.Port()) == port {
			if !parsed {
				parsed = true
				if len(bare) > 0 && bytes.IndexByte(bare, ':') >= 0 {
					addr, _ = netip.ParseAddr(string(bare))
				} else {
					addr, _ = parseIPv4(bare)
				}
			}
			if addr.IsValid() && addr == la.Addr() {
				return true
			}
		}
	}
	return false
}

// appendRouteMACBytes is appendRouteMAC (recordroute.go) over bytes.
func (s *Server) appendRouteMACBytes(b []byte, callID, fromTag, user []byte) []byte {
	return appendRouteMACOf(s, b, callID, fromTag, user)
}

// routeSignedBytes is routeSigned (recordroute.go) over bytes: sig is the
// sig parameter (found: present), user the URI's user part.
func (s *Server) routeSignedBytes(sig []byte, found bool, user, callID, tagA, tagB []byte) bool {
	if !found || len(sig) != 16 || len(callID) == 0 {
		return false
	}
	for _, tag := range [...][]byte{tagA, tagB} {
		var want [16]byte
		if len(tag) > 0 && hmac.Equal(sig, s.appendRouteMACBytes(want[:0], callID, tag, user)) {
			return true
		}
	}
	return false
}

// parseFlowBytes is parseFlow (recordroute.go) for a URI read by
// plainURI; ok is false for a token too long to decode here.
func (s *Server) parseFlowBytes(u *ixURI) (addr netip.AddrPort, proto string, ok bool) {
	if !bytes.HasPrefix(u.user, []byte(flowPrefix)) {
		return netip.AddrPort{}, "", true
	}
	rest := u.user[len(flowPrefix):]
	dash := bytes.IndexByte(rest, '-')
	if dash < 0 {
		return netip.AddrPort{}, "", true
	}
	addrHex, macHex := rest[:dash], rest[dash+1:]
	var ab, mb [64]byte
	if len(addrHex) > 2*len(ab) || len(macHex) > 2*len(mb) {
		return netip.AddrPort{}, "", false
	}
	na, err1 := hex.Decode(ab[:], addrHex)
	nm, err2 := hex.Decode(mb[:], macHex)
	if err1 != nil || err2 != nil {
		return netip.AddrPort{}, "", true
	}
	var a netip.AddrPort
	if !hmac.Equal(mb[:nm], s.flowMAC(ab[:na])) || a.UnmarshalBinary(ab[:na]) != nil {
		return netip.AddrPort{}, "", true
	}
	proto, ok = uriTransportBytes(u)
	return a, proto, ok
}

// uriTransportBytes is uriTransport (transport.go) for a URI read by
// plainURI.
func uriTransportBytes(u *ixURI) (string, bool) {
	t, _, ok := u.param("transport")
	if !ok {
		return "", false
	}
	up := func(s string) bool { return equalFoldStr(t, s) }
	if u.sips {
		if up("WS") || up("WSS") {
			return "WSS", true
		}
		return "TLS", true
	}
	for _, p := range [...]string{"UDP", "TCP", "TLS", "WS", "WSS", "SCTP"} {
		if up(p) {
			return p, true
		}
	}
	return "", true
}

// ixLoose is what looseRoute decides for a request, read by ixLooseRoute.
type ixLoose struct {
	// Removed is looseRoute's result: Route values naming us were
	// removed; N says how many (0, 1 or 2), Cuts the bytes that remove
	// them (for ixSplice.Cuts).
	Removed bool
	N       int
	Cuts    [2]sipindex.Span
	// Signed, Flow, FlowProto and ForeignRoute are what looseRoute sets
	// in c.signed, c.flow, c.flowProto and c.foreignRoute.
	Signed       bool
	Flow         netip.AddrPort
	FlowProto    string
	ForeignRoute bool
	// First is the first Route value left (the zero Span when none is):
	// what firstRoute(req) returns after looseRoute. FirstPlain says
	// whether plainRoute reads it; FirstLR, then, whether it carries lr
	// (strictRoute rewrites the request when not).
	First      sipindex.Span
	FirstPlain bool
	FirstLR    bool
}

// ixLooseRoute is looseRoute (recordroute.go) read from a clean index of
// a request: it fills lr with what looseRoute decides and does to the
// request, and reports false — lr then means nothing, and the caller
// materialises the request and calls looseRoute — for the strict-router
// case (the Request-URI names us without a user part, with Routes) and
// for anything it does not read exactly as sipgo would: a To or From
// tag, the Request-URI or a Route value naming us not plain (plainURI,
// plainRoute), Route fields it does not split (routeValues). Nothing is
// allocated for Routes naming us by name or IPv4 address without a flow
// token.
func (s *Server) ixLooseRoute(ix *sipindex.Index, lr *ixLoose) bool {
	*lr = ixLoose{}
	if !ix.Request {
		return false
	}
	inDialog, ok := ixHasToTag(ix)
	if !ok {
		return false
	}
	if ix.Routes == 0 {
		return true
	}
	if strict, ok := s.ixStrictRouted(ix); !ok || strict {
		return false
	}
	var callID, fromTag, toTag []byte
	if inDialog {
		callID = ixCallID(ix)
		var ok1, ok2 bool
		fromTag, ok1 = ixFromTag(ix)
		toTag, ok2 = ixToTag(ix)
		if !ok1 || !ok2 {
			return false
		}
	}
	it := routeValues{ix: ix, field: -1}
	var left sipindex.Span
	for lr.N < 2 {
		v, _, more, bad := it.next()
		if bad {
			return false
		}
		if !more {
			break
		}
		u, ok := plainRoute(ix.Bytes(v))
		if !ok {
			return false
		}
		if !s.isLocalBytes(u.host, u.port) {
			left = v
			break
		}
		if inDialog {
			sig, found, ok := u.param(sigParam)
			if !ok {
				return false
			}
			if !s.routeSignedBytes(sig, found, u.user, callID, fromTag, toTag) {
				lr.Signed = false
				left = v
				break
			}
			lr.Signed = true
		}
		if lr.Flow, lr.FlowProto, ok = s.parseFlowBytes(&u); !ok {
			return false
		}
		lr.N++
		lr.Removed = true
	}
	if left == (sipindex.Span{}) && lr.N == 2 {
		v, _, more, bad := it.next()
		if bad {
			return false
		}
		if more {
			left = v
		}
	}
	if left != (sipindex.Span{}) {
		lr.First = left
		if u, ok := plainRoute(ix.Bytes(left)); ok {
			_, lrFound, ok := u.param("lr")
			lr.FirstPlain, lr.FirstLR = ok, ok && lrFound
		}
	}
	lr.ForeignRoute = !lr.Signed && left != (sipindex.Span{})
	if lr.Cuts, ok = ixRouteCuts(ix, lr.N); !ok {
		return false
	}
	return true
}

// ixStrictRouted reports whether the Request-URI names this proxy without
// a user part (looseRoute then undoes a strict router's rewrite); ok is
// false when plainURI does not read a sip or sips Request-URI. Another
// scheme names no host for sipgo, so never us.
func (s *Server) ixStrictRouted(ix *sipindex.Index) (strict, ok bool) {
	ru := ix.Bytes(ix.RequestURI)
	if c := bytes.IndexByte(ru, ':'); c > 0 && !equalFoldStr(ru[:c], "sip") && !equalFoldStr(ru[:c], "sips") {
		return false, true
	}
	u, ok := plainURI(ru)
	if !ok {
		return false, false
	}
	return len(u.user) == 0 && s.isLocalBytes(u.host, u.port), true
}
