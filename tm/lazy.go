package tm

import (
	"bytes"
	"fmt"
	"net/netip"
	"unsafe"

	"github.com/emiago/sipgo/sip"

	"github.com/asyncsip/asyncsip/tm/internal/sipindex"
)

// Lazy requests (issue 19, the request half of the message core). A
// request whose index is clean and written the usual way (lazyEligible)
// gets a Context without a sipgo request: tm does what it does before the
// route from the index (transaction key, Max-Forwards, Proxy-Require, the
// To tag, 100 Trying and local replies from appendIndexedResponse), and
// Relay sends the request by splicing its bytes (splice.go). The Context
// owns a copy of the bytes (c.raw): the datagram's buffer is the reactor's.
//
// Context.Req() materialises the request: parseIndexed over c.raw, then the
// edits tm already made (markReceived, and looseRoute run again on the
// parsed request: it decides as ixLooseRoute did). From then on the sipgo
// request is authoritative and relaying clones and serializes it, as for a
// request that never had a clean index. Anything unusual — a Screen route,
// a Route left after ours, a strict router, a 483/420/503/403 to answer —
// takes the parsed path unchanged before the route runs.

// lazyEligible reports whether the request indexed in ls.ix may take the
// lazy path: the checks of validate the index does not make hold (a
// Request-URI sip: or sips: with a host and no headers, a Content-Length),
// nothing but Route needs the SWS repair, the top Via, From and To read as
// sipgo reads them.
func lazyEligible(ix *sipindex.Index) bool {
	if !ix.Request || ix.ContentLength < 0 || ix.CallID.Len() == 0 {
		return false
	}
	if !plainRURI(ix.Bytes(ix.RequestURI)) || !crlfOnly(ix.Data()[:ix.Body.Start]) {
		return false
	}
	for _, f := range ix.Fields {
		// needsSWSRepairIndexed but for Route: ixLooseRoute reads Route
		// values itself (SIPp writes a route set as "<a>, <b>"), and what
		// the splice keeps of them goes on as the sender wrote it.
		switch f.Kind {
		case sipindex.KindVia, sipindex.KindFrom, sipindex.KindTo, sipindex.KindContact, sipindex.KindRecordRoute:
			if hasLooseSWS(ix.Bytes(f.Value)) {
				return false
			}
		}
	}
	if _, _, ok := plainVia(ix.Bytes(ix.TopVia)); !ok {
		return false
	}
	if _, ok := ixFromTag(ix); !ok {
		return false
	}
	if _, ok := ixHasToTag(ix); !ok {
		return false
	}
	for _, f := range ix.Fields {
		switch f.Kind {
		case sipindex.KindFrom, sipindex.KindTo, sipindex.KindContact:
			if !plainAddr(ix.Bytes(f.Value), f.Kind == sipindex.KindContact) || !addrURIParses(ix.Bytes(f.Value)) {
				return false
			}
		}
	}
	return true
}

// plainAddr accepts an address value sipgo relays meaning the same when
// written as received: a name-addr with one "<…>" (outside a quoted
// display name), or an addr-spec without brackets, quotes, whitespace,
// URI headers ('?') or a list (','), and in a Contact without parameters
// (sipgo writes those in brackets, RFC 4475 cparam01, regbadct).
func plainAddr(v []byte, contact bool) bool {
	lt, gt := -1, -1
	quoted := false
	for i := 0; i < len(v); i++ {
		switch c := v[i]; {
		case quoted:
			if c == '\\' {
				i++
			} else if c == '"' {
				quoted = false
			}
		case c == '"':
			quoted = true
		case c == '<':
			if lt >= 0 {
				return false
			}
			lt = i
		case c == '>':
			if gt >= 0 || lt < 0 {
				return false
			}
			gt = i
		}
	}
	if quoted {
		return false
	}
	if lt >= 0 {
		return gt > lt && bytes.IndexByte(v[gt+1:], ',') < 0
	}
	if gt >= 0 || bytes.IndexAny(v, "\"?, \t") >= 0 {
		return false
	}
	return !contact || bytes.IndexByte(v, ';') < 0
}

// crlfOnly reports whether every line of the header section h ends with
// CRLF and no CR or LF stands alone: sipgo refuses "CSeq: 1 OPTIONS\r\r\n"
// ("line has no CRLF"), which the index reads (found by
// FuzzLazyDifferential).
func crlfOnly(h []byte) bool {
	for i := bytes.IndexAny(h, "\r\n"); i >= 0; {
		if h[i] != '\r' || i+1 >= len(h) || h[i+1] != '\n' {
			return false
		}
		i += 2
		j := bytes.IndexAny(h[i:], "\r\n")
		if j < 0 {
			break
		}
		i += j
	}
	return true
}

// addrURIParses reports whether sipgo's address parser reads the URI of
// the address value v (ParseAddressValue): sipgo refuses "From: A:" (a URI
// under 3 bytes), a URI without scheme, an unclosed quote or bracket, and
// the lazy path must not relay what the parsed path answers 400 (a spliced
// branch that does not parse has no request for its 408, Context.Req
// panics). Plain sip and sips URIs are read here (plainURI); others, in
// brackets only, by sip.ParseUri.
func addrURIParses(v []byte) bool {
	u := v
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c == '"' {
			// A quoted display name, then "<": as sipgo reads it.
			j := i + 1
			for ; j < len(v) && v[j] != '"'; j++ {
				if v[j] == '\\' {
					if j+1 < len(v) && (v[j+1] == '\r' || v[j+1] == '\n') {
						return false
					}
					j++
				}
			}
			if j >= len(v) {
				return false
			}
			lt := bytes.IndexByte(v[j+1:], '<')
			if lt < 0 || bytes.IndexByte(v[j+1:j+1+lt], ';') >= 0 {
				return false
			}
			i = j + lt // the loop's i++ lands on '<'
			continue
		}
		if c == '<' {
			gt := bytes.IndexByte(v[i+1:], '>')
			if gt < 0 {
				return false
			}
			u = v[i+1 : i+1+gt]
			break
		}
		if c == ';' {
			u = v[:i]
			break
		}
	}
	if _, ok := plainURI(u); ok || string(u) == "*" {
		return true
	}
	if len(u) == len(v) || len(u) > 0 && &u[0] == &v[0] {
		// No brackets: sipgo writes the URI back in brackets, what it
		// reads of "A:>" (scheme a, ">") then no longer parses.
		return false
	}
	var x sip.Uri
	return sip.ParseUri(unsafeString(u), &x) == nil
}

// plainRURI accepts "sip:" or "sips:" URIs with a host and without
// headers ('?'), whitespace or control bytes.
func plainRURI(u []byte) bool {
	n := 0
	switch {
	case len(u) > 4 && string(u[:4]) == "sip:":
		n = 4
	case len(u) > 5 && string(u[:5]) == "sips:":
		n = 5
	default:
		return false
	}
	host := n
	for i := n; i < len(u); i++ {
		c := u[i]
		if c <= ' ' || c >= 0x7f || c == '?' || c == '<' || c == '>' || c == '"' {
			return false
		}
		if c == '@' {
			host = i + 1
		}
	}
	if host >= len(u) || u[host] == ';' || u[host] == ':' {
		return false
	}
	return true
}

// handleIndexed is handleRequest for a request indexed in ls.ix (clean,
// owned by ls, not absorbed) that lazyEligible accepts. It reports false,
// having changed nothing, when the request must take the parsed path.
func (s *Server) handleIndexed(ls *loopState, data []byte, src netip.AddrPort, tp Transport) bool {
	ix := &ls.ix
	m := ix.Bytes(ix.Method)
	ack := string(m) == "ACK"
	if string(m) == "CANCEL" || !lazyEligible(ix) || s.routes.Load().Screen != nil {
		return false
	}
	// looseRoute from the index; a Route left after ours (the rest of a
	// dialog's route set, or a sender's) takes the parsed path.
	var lr ixLoose
	if !s.ixLooseRoute(ix, &lr) || lr.First != (sipindex.Span{}) {
		return false
	}
	hasTo, _ := ixHasToTag(ix)
	if hasTo && !lr.Signed && !s.cfg.Security.AllowUnsignedInDialog {
		return false // refused (403, 481, or silently for an ACK) by the parsed path
	}
	if ack {
		// An ACK for a non-2xx final was absorbed by absorbIndexed when
		// the key reads; one for a final of ours without transaction ends
		// here on the parsed path. What is left goes end to end, stateless.
		key, ok := appendIndexedServerKey(ls.kbuf[:0], ix, []byte("INVITE"))
		ls.kbuf = key
		if !ok || ls.stx[string(key)] != nil {
			return false
		}
		if tag, _ := ixToTag(ix); s.ownTagBytes(tag) {
			return false
		}
		c := s.newLazyContext(ls, nil, data, src, tp, hasTo, &lr)
		s.runRoute(c, RouteRequest, c.routes.Request, noContinuation)
		return true
	}
	if s.overCap(ls) || s.draining.Load() {
		return false
	}
	if mf, ok := ixMaxForwards(ix); ok && mf == 0 {
		return false
	}
	if ixProxyRequire(ix) {
		return false
	}
	key, ok := appendIndexedServerKey(ls.kbuf[:0], ix, m)
	ls.kbuf = key
	if !ok || ls.stx[string(key)] != nil {
		return false
	}
	if s.absorbTomb(ls, unsafeString(key)) { // a lookup: the key is not kept
		return true
	}
	k := string(key)
	t := &serverTx{
		s: s, ls: ls, key: k, src: src, tp: tp,
		dst:    indexedResponseAddr(ix, src),
		invite: string(m) == "INVITE",
		state:  stTrying,
	}
	if t.invite {
		t.state = stProceeding
	}
	ls.stx[k] = t
	s.txBytes.Add(liveTxBytes)
	s.stats.stxCreated.Add(1)
	s.stats.inProgress.Add(1)
	c := s.newLazyContext(ls, t, data, src, tp, hasTo, &lr)
	t.ctx = c
	s.runRoute(c, RouteRequest, c.routes.Request, (*Context).afterRequest) // a method expression: no allocation
	return true
}

// noContinuation is the request route's continuation without transaction.
func noContinuation(*Context) {}

// newLazyContext makes the Context of the request indexed in ls.ix from
// data: it copies data (the reactor's buffer) and rebases the index onto
// the copy, and notes what looseRoute decided (lr).
func (s *Server) newLazyContext(ls *loopState, t *serverTx, data []byte, src netip.AddrPort, tp Transport,
	hasTo bool, lr *ixLoose) *Context {
	ix := &ls.ix
	raw := data
	if !ls.owned {
		raw = append([]byte(nil), data...)
		ix.Rebase(raw)
	}
	ls.owned = false // kept: not to be kept twice
	c := &Context{s: s, ls: ls, stx: t, src: src, tp: tp, routes: s.routes.Load(), start: ls.loop.Now()}
	c.branches = c.branch0[:0]
	c.raw = raw
	c.method = ixMethod(ix)
	c.callID = unsafe.String(&raw[ix.CallID.Start], ix.CallID.Len())
	c.hasToTag = hasTo
	c.looseRt, c.signed, c.foreignRoute = lr.Removed, lr.Signed, lr.ForeignRoute
	c.flow, c.flowProto = lr.Flow, lr.FlowProto
	c.cuts = lr.Cuts
	return c
}

// ownTagBytes is ownTag for a To tag read from the index.
func (s *Server) ownTagBytes(tag []byte) bool {
	return len(tag) == len(s.tag)+idHex && string(tag[:len(s.tag)]) == s.tag
}

// indexedResponseAddr is responseAddr read from the index (the caller
// checked the top Via with plainVia).
func indexedResponseAddr(ix *sipindex.Index, src netip.AddrPort) netip.AddrPort {
	v := ix.Bytes(ix.TopVia)
	_, pi, _ := plainVia(v)
	if _, _, _, has, _ := plainParam(v[pi:], "rport"); has {
		return src
	}
	port := viaPort(v[:pi])
	if port <= 0 {
		port = 5060
	}
	return netip.AddrPortFrom(src.Addr(), uint16(port))
}

// viaPort reads the port of a plain Via's sent-by (v without its
// parameters); 0 when there is none.
func viaPort(v []byte) int {
	i := len(v) - 1
	for i >= 0 && v[i] >= '0' && v[i] <= '9' {
		i--
	}
	if i < 0 || v[i] != ':' || i == len(v)-1 || v[len(v)-1] == ']' {
		return 0
	}
	return atoiDigits(v[i+1:])
}

// index returns the index of c's request bytes, made again when the loop's
// index holds another message by now (after a suspension, or any other
// message received since).
func (c *Context) index() *sipindex.Index {
	ix := &c.ls.ix
	if d := ix.Data(); len(d) != len(c.raw) || unsafe.SliceData(d) != unsafe.SliceData(c.raw) {
		if err := ix.Parse(c.raw, c.s.ixLim); err != nil {
			panic(fmt.Sprintf("tm: request indexed once no longer indexes: %v", err))
		}
	}
	return ix
}

// materialise builds c.req from c.raw as the parsed path would have: parsed,
// then marked received. The lazy path accepts only what the index and
// sipgo's parser both accept (lazyEligible, sipindex_diff_test.go).
func (c *Context) materialise() {
	ix := c.index()
	msg, err := parseIndexed(c.ls.parser, c.raw, ix)
	if err != nil {
		panic(fmt.Sprintf("tm: indexed request does not parse: %v", err))
	}
	req := msg.(*sip.Request)
	markReceived(req, c.src)
	if ix.Routes > 0 {
		// The same decisions as ixLooseRoute's, now made on the request.
		c.looseRt = c.s.looseRoute(c, req)
	}
	c.req = req
	if c.stx != nil && c.stx.req == nil && c.stx.ctx == c {
		c.stx.req = req
	}
}

// lazy reports whether c's request is not materialised.
func (c *Context) lazy() bool { return c.req == nil }

// reply is Reply's sending half: from the index while the request is not
// materialised and no extra header is given, else from makeResponse.
func (c *Context) reply(code int, reason string, hdrs []sip.Header) error {
	if c.lazy() && len(hdrs) == 0 {
		if hasCRLF(reason) {
			return fmt.Errorf("%w: reason phrase", ErrInjection)
		}
		if wire, ok := appendIndexedResponse(c.ls.out[:0], c.index(), c.src, code, reason, c.stx.tag()); ok {
			c.ls.out = wire
			c.sendUpstreamWire(code, wire)
			return nil
		}
	}
	resp := c.s.makeResponse(c.Req(), code, reason, c.stx.tag(), hdrs...)
	if err := checkInjection(resp); err != nil {
		return err
	}
	c.sendUpstream(resp)
	return nil
}

// firstRoute is firstRoute of the request; nil for a lazy one (the lazy
// path takes only requests without a Route left after ours).
func (c *Context) firstRoute() *sip.RouteHeader {
	if c.req == nil {
		return nil
	}
	return firstRoute(c.req)
}
