package tm

import (
	"fmt"
	"net/netip"
	"runtime"
	"strconv"
	"strings"

	"github.com/emiago/sipgo/sip"
)

// handleRequest is the §16 entry for a request, on its owner loop.
func (s *Server) handleRequest(ls *loopState, req *sip.Request, src netip.AddrPort, tp Transport) {
	markReceived(req, src)
	switch req.Method {
	case sip.ACK:
		if t := ls.stx[string(ls.lookupKey(req, sip.ACK))]; t != nil && t.invite && t.state != stAccepted {
			t.ack() // ACK for a non-2xx final: hop by hop, absorbed
			return
		}
		if s.ownTag(req) {
			// For a final response this proxy sent without a transaction
			// (503 over the cap, a stateless rejection) or as the UAS:
			// it ends here.
			s.stats.retransAbsorbed.Add(1)
			return
		}
		if s.screened(req, src) {
			return
		}
		s.runStateless(ls, req, src, tp) // ACK for 2xx: end to end
		return
	case sip.CANCEL:
		s.handleCancel(ls, req, src, tp)
		return
	}
	if t := ls.stx[string(ls.lookupKey(req, req.Method))]; t != nil {
		t.retransmit()
		return
	}
	key := string(ls.kbuf)
	if s.absorbTomb(ls, key) {
		return
	}
	if s.screened(req, src) {
		return
	}
	if s.overCap(ls) {
		// Over a cap: answered without a transaction, so that a flood
		// cannot grow the table (a refused transaction would otherwise stay
		// for Timer J); a retransmission gets another 503.
		s.stats.overload.Add(1)
		resp := s.makeResponse(req, 503, "Service Unavailable", s.toTag(ls), retryAfter(2))
		_ = s.sendMsg(ls, tp, resp, responseAddr(req, src))
		return
	}
	t := s.newServerTx(ls, key, req, src, tp)
	if s.draining.Load() && !hasToTag(req) {
		// Draining refuses new dialogs and out-of-dialog requests; in-dialog
		// requests (BYE, re-INVITE) still pass so calls can end cleanly.
		t.respond(s.makeResponse(req, 503, "Service Unavailable", t.tag(), retryAfter(5)))
		return
	}
	if mf := req.MaxForwards(); mf != nil && *mf == 0 {
		// RFC 3261 §16.3 step 3.
		t.respond(s.makeResponse(req, 483, "Too Many Hops", t.tag()))
		return
	}
	if tags := proxyRequire(req); tags != "" {
		// RFC 3261 §16.3 step 5: this proxy supports no extension that
		// needs Proxy-Require (RFC 4475 §3.3.5 bext01).
		t.respond(s.makeResponse(req, 420, "Bad Extension", t.tag(), sip.NewHeader("Unsupported", tags)))
		return
	}
	// No 100 Trying yet: it goes out when the route relays or suspends
	// (trying.go), so a dropped request stays silent and an immediate
	// final response needs none.
	c := s.newContext(ls, t, req, src, tp)
	c.looseRt = s.looseRoute(c, req)
	if s.refuseUnsigned(c) {
		code, reason := 403, "Forbidden (dialog route not signed)"
		if firstRoute(req) == nil && s.isLocal(req.Recipient.Host, req.Recipient.Port) {
			// Sent to our own address instead of along the Record-Route
			// (SIPp's built-in uac does that): no dialog of ours to follow.
			code, reason = 481, "Call/Transaction Does Not Exist (request addressed to this proxy, no Route)"
		}
		t.respond(s.makeResponse(req, code, reason, t.tag()))
		return
	}
	s.runRoute(c, RouteRequest, c.routes.Request, (*Context).afterRequest)
}

// screened reports whether Routes.Screen drops req, and counts the drop.
// It runs before anything is sent for a request that no transaction or
// tombstone absorbed; nothing is allocated when there is no screen or it
// lets the request pass. A screen that panics drops the request (counted
// as a panic and as screened): it was there to keep something out.
func (s *Server) screened(req *sip.Request, src netip.AddrPort) (drop bool) {
	f := s.routes.Load().Screen
	if f == nil {
		return false
	}
	defer func() {
		if r := recover(); r != nil {
			s.stats.panics.Add(1)
			buf := make([]byte, 4096)
			buf = buf[:runtime.Stack(buf, false)]
			s.log.Error("tm: panic in screen", "panic", fmt.Sprint(r), "source", src, "stack", string(buf))
			drop = true
		}
		if drop {
			s.stats.drops[dropScreened].Add(1)
		}
	}()
	return f(req, src)
}

// refuseUnsigned reports whether c is an in-dialog request that does not
// follow our signed Record-Route and must be refused (recordroute.go).
func (s *Server) refuseUnsigned(c *Context) bool {
	if c.signed || !c.toTagged() || s.cfg.Security.AllowUnsignedInDialog {
		return false
	}
	s.stats.countDrop("unsigned")
	return true
}

// proxyRequire lists the option tags of the Proxy-Require headers.
func proxyRequire(req *sip.Request) string {
	var tags []string
	for _, h := range req.Headers() {
		if n := h.Name(); len(n) != len("Proxy-Require") || !strings.EqualFold(n, "Proxy-Require") {
			continue
		}
		for _, t := range strings.Split(h.Value(), ",") {
			if t = strings.TrimSpace(t); t != "" {
				tags = append(tags, t)
			}
		}
	}
	return strings.Join(tags, ", ")
}

// retryAfter returns a Retry-After header.
func retryAfter(sec int) sip.Header { return sip.NewHeader("Retry-After", strconv.Itoa(sec)) }

// markReceived adds received and fills rport on the top Via (§18.2.1, RFC 3581).
func markReceived(req *sip.Request, src netip.AddrPort) {
	via := req.Via()
	if via == nil || !src.IsValid() {
		return
	}
	ip := src.Addr().Unmap().String()
	if stripBrackets(via.Host) != ip {
		via.Params.Add("received", ip)
	}
	if v, ok := via.Params.Get("rport"); ok && v == "" {
		via.Params.Add("rport", strconv.Itoa(int(src.Port())))
		if !via.Params.Has("received") {
			via.Params.Add("received", ip)
		}
	}
}

// handleCancel applies §16.10: 200 to the CANCEL, then cancel the INVITE.
func (s *Server) handleCancel(ls *loopState, req *sip.Request, src netip.AddrPort, tp Transport) {
	if t := ls.stx[string(ls.lookupKey(req, sip.CANCEL))]; t != nil {
		t.retransmit()
		return
	}
	ckey := string(ls.kbuf)
	if s.absorbTomb(ls, ckey) {
		return
	}
	if s.screened(req, src) {
		return
	}
	inv := ls.stx[string(ls.lookupKey(req, sip.INVITE))]
	if inv != nil && inv.ctx == nil && inv.fin {
		// The INVITE already has its final response (its Context was
		// released): the CANCEL has no effect but is answered 200 (§9.2).
		t := s.newServerTx(ls, ckey, req, src, tp)
		t.toTag = s.toTag(ls)
		t.respond(s.makeResponse(req, 200, "OK", inv.tag()))
		return
	}
	if inv == nil || inv.ctx == nil {
		// Nothing to cancel: answered without a transaction, so that a
		// flood of stray CANCELs leaves nothing behind.
		resp := s.makeResponse(req, 481, "Call/Transaction Does Not Exist", s.toTag(ls))
		_ = s.sendMsg(ls, tp, resp, responseAddr(req, src))
		return
	}
	t := s.newServerTx(ls, ckey, req, src, tp)
	t.toTag = s.toTag(ls)
	t.respond(s.makeResponse(req, 200, "OK", inv.tag()))
	inv.ctx.cancel()
}

// runStateless runs the request route for a request without a transaction
// (ACK for 2xx). Relay forwards it statelessly; a route that does nothing
// drops it.
func (s *Server) runStateless(ls *loopState, req *sip.Request, src netip.AddrPort, tp Transport) {
	c := s.newContext(ls, nil, req, src, tp)
	c.looseRt = s.looseRoute(c, req)
	if s.refuseUnsigned(c) {
		return // an ACK is never answered
	}
	s.runRoute(c, RouteRequest, c.routes.Request, noContinuation)
}

func (s *Server) newContext(ls *loopState, t *serverTx, req *sip.Request, src netip.AddrPort, tp Transport) *Context {
	c := &Context{req: req, s: s, ls: ls, stx: t, src: src, tp: tp, routes: s.routes.Load(), start: ls.loop.Now()}
	if t != nil {
		t.ctx = c
	}
	return c
}

// makeResponse builds a response to req (RFC 3261 §8.2.6): Vias, From,
// To (with tag for non-100), Call-ID and CSeq copied, extra headers after.
func (s *Server) makeResponse(req *sip.Request, code int, reason, toTag string, hdrs ...sip.Header) *sip.Response {
	resp := sip.NewResponse(code, reason)
	for _, v := range req.GetHeaders("Via") {
		resp.AppendHeader(v)
	}
	resp.AppendHeader(req.From())
	to := req.To()
	if code > 100 && toTag != "" && !to.Params.Has("tag") {
		to = sip.HeaderClone(to).(*sip.ToHeader)
		to.Params.Add("tag", toTag)
	}
	resp.AppendHeader(to)
	resp.AppendHeader(req.CallID())
	resp.AppendHeader(req.CSeq())
	if code == 100 {
		if ts := req.GetHeader("Timestamp"); ts != nil {
			resp.AppendHeader(ts)
		}
	}
	for _, h := range hdrs {
		if h != nil {
			resp.AppendHeader(h)
		}
	}
	resp.SetBody(nil) // adds Content-Length: 0
	return resp
}
