package tm

import (
	"net/netip"

	"github.com/emiago/sipgo/sip"
)

// handleResponse matches a response to its client transaction (§17.1.3) or
// forwards it statelessly (§16.7 / §16.11).
func (s *Server) handleResponse(ls *loopState, resp *sip.Response, src netip.AddrPort, tp Transport) {
	br, _ := resp.Via().Params.Get("branch")
	ls.kbuf = append(append(append(ls.kbuf[:0], br...), '|'), resp.CSeq().MethodName...)
	if t := ls.ctx[string(ls.kbuf)]; t != nil {
		if !s.cfg.Security.AnyResponseSource && !t.sentTo(src, tp) {
			// Only the hop the branch went to answers it: a response from
			// anywhere else (an off-path forgery) is dropped.
			s.stats.countDrop("source")
			return
		}
		t.receive(resp)
		return
	}
	s.forwardResponseStateless(ls, resp)
}

// onBranchResponse gets a response from a branch's client transaction. While
// a route of this transaction is suspended, responses wait their turn.
func (c *Context) onBranchResponse(b *Branch, resp *sip.Response) {
	if resp.StatusCode == 100 {
		return // hop by hop: absorbed (§16.7 step 5)
	}
	if c.suspended {
		if resp.StatusCode < 200 && len(c.queue) >= c.s.cfg.MaxQueuedReplies {
			c.s.stats.countDrop("queue")
			return
		}
		c.queue = append(c.queue, queued{b, resp})
		return
	}
	c.processResponse(b, resp)
}

// processResponse is §16.7 for one response.
func (c *Context) processResponse(b *Branch, resp *sip.Response) {
	c.processReply(b, resp.StatusCode, resp, nil)
}

// processReply is processResponse for a response with status code given
// either parsed (resp) or, relayed from the index without a reply route
// (indexed.go), as the wire bytes to send upstream (our Via removed).
func (c *Context) processReply(b *Branch, code int, resp *sip.Response, wire []byte) {
	if code < 200 {
		b.provisonal = true
		if b.timerC != nil && !b.done {
			b.timerC.Reset(c.s.timers.TimerC)
		}
		if b.cancelWant && !b.cancelSent {
			c.sendCancel(b)
		}
	} else {
		c.branchDone(b, code, resp, wire)
	}
	c.Resp = resp
	c.cur = b
	if wire != nil && c.routes.Reply == nil {
		// No route runs and nothing is suspended (relayIndexed checked):
		// what runRoute would do, without its continuation closure.
		c.kind = RouteReply
		c.acted, c.dropped = false, false
		c.afterReply(b, code, nil, wire)
		return
	}
	c.s.runRoute(c, RouteReply, c.routes.Reply, func(*Context) { c.afterReply(b, code, resp, wire) })
}

// afterReply relays the response upstream as §16.7 says, unless a
// provisional was dropped by the reply route.
func (c *Context) afterReply(b *Branch, code int, resp *sip.Response, wire []byte) {
	c.cur = nil
	switch {
	case code < 200:
		if !c.dropped && !c.final {
			c.forwardUpstream(code, resp, wire)
		}
	case code < 300:
		c.forwardUpstream(code, resp, wire) // every 2xx goes upstream at once
	default:
		if code >= 600 {
			c.cancelBranches() // §16.7 step 9
		}
		c.checkFailure()
	}
	c.Resp = nil
}

// forwardUpstream strips our Via and sends resp on the server transaction
// (wire, when set, is resp already without our Via).
func (c *Context) forwardUpstream(code int, resp *sip.Response, wire []byte) {
	if c.stx == nil {
		return
	}
	if wire != nil {
		c.sendUpstreamWire(code, wire)
		return
	}
	resp.RemoveHeader("Via")
	if resp.Via() == nil {
		return
	}
	c.sendUpstream(resp)
}

func (c *Context) branchDone(b *Branch, code int, resp *sip.Response, wire []byte) {
	if b.done {
		return
	}
	b.done = true
	b.resp = resp
	if wire != nil {
		b.wire = append([]byte(nil), wire...) // parsed if asked for (Branch.Response)
	}
	b.code = code
	b.timerC.Stop()
	b.guard.Stop()
}

// branchFailed ends a branch with a locally generated final response
// (Timer B/F, Timer C, transport error).
func (c *Context) branchFailed(b *Branch, code int, reason string) {
	if b.done {
		return
	}
	b.tx.terminate()
	resp := c.s.makeResponse(b.Req(), code, reason, c.stx.tag())
	c.onBranchResponse(b, resp)
}

// timerC fires when an INVITE branch has been pending too long (§16.8).
func (c *Context) timerC(b *Branch) {
	if b.done {
		return
	}
	if !b.provisonal {
		c.branchFailed(b, 408, "Request Timeout")
		return
	}
	c.sendCancel(b)
}

// allDone reports whether every branch has a final response.
func (c *Context) allDone() bool {
	for _, b := range c.branches {
		if !b.done {
			return false
		}
	}
	return true
}

// checkFailure: once all branches are done without a final response sent,
// run the failure route (which may relay again), else send the best.
func (c *Context) checkFailure() {
	if c.final || !c.allDone() || c.failing {
		return
	}
	best := c.best()
	if best == nil {
		return
	}
	c.Resp = best
	if c.routes.Failure != nil {
		c.failing = true
		nb := len(c.branches)
		c.s.runRoute(c, RouteFailure, c.routes.Failure, func(*Context) {
			c.failing = false
			if !c.final && len(c.branches) == nb {
				c.sendBest(best)
			}
		})
		return
	}
	c.sendBest(best)
}

// best chooses the response to send upstream (§16.7 step 6): a 6xx if any,
// else the lowest class; 401/407 challenges are merged.
func (c *Context) best() *sip.Response {
	var best *sip.Response
	rank := func(code int) int {
		if code >= 600 {
			return 0
		}
		return code
	}
	for _, b := range c.branches {
		if b.resp == nil || b.code < 300 {
			continue
		}
		if best == nil || rank(b.code)/100 < rank(best.StatusCode)/100 ||
			(rank(b.code)/100 == rank(best.StatusCode)/100 && preferWithinClass(b.code, best.StatusCode)) {
			best = b.resp
		}
	}
	if best == nil {
		return nil
	}
	if best.StatusCode == 401 || best.StatusCode == 407 {
		best = best.Clone()
		for _, b := range c.branches {
			if b.resp == nil || b.resp == best || (b.code != 401 && b.code != 407) {
				continue
			}
			for _, name := range []string{"WWW-Authenticate", "Proxy-Authenticate"} {
				for _, h := range b.resp.GetHeaders(name) {
					if !hasHeaderValue(best, name, h.Value()) {
						best.AppendHeader(sip.HeaderClone(h))
					}
				}
			}
		}
	}
	return best
}

// preferWithinClass prefers challenges, then anything over a local 408/503.
func preferWithinClass(code, cur int) bool {
	isAuth := func(c int) bool { return c == 401 || c == 407 }
	if isAuth(code) != isAuth(cur) {
		return isAuth(code)
	}
	if cur == 408 || cur == 503 {
		return code != 408 && code != 503
	}
	return false
}

func hasHeaderValue(m sip.Message, name, v string) bool {
	for _, h := range m.GetHeaders(name) {
		if h.Value() == v {
			return true
		}
	}
	return false
}

// sendBest sends the chosen final response upstream; a 503 becomes 500
// (§16.7 step 6), a locally made response is answered as our own.
func (c *Context) sendBest(best *sip.Response) {
	if c.final || c.stx == nil {
		return
	}
	code, reason := best.StatusCode, best.Reason
	if code == 503 {
		code, reason = 500, "Server Internal Error"
	}
	v := best.Via()
	if v != nil {
		if br, _ := v.Params.Get("branch"); c.s.ours(br) {
			resp := best.Clone()
			resp.StatusCode, resp.Reason = code, reason
			c.forwardUpstream(code, resp, nil)
			return
		}
	}
	resp := c.s.makeResponse(c.Req(), code, reason, c.stx.tag())
	c.sendUpstream(resp)
}

// cancel handles a CANCEL for this INVITE (§16.10). A suspended route is
// aborted at once (see abortForCancel): the caller never waits on an op
// whose result nobody wants any more.
func (c *Context) cancel() {
	c.cancelled = true
	if c.final {
		return
	}
	if c.suspended {
		c.abortForCancel()
		if c.final {
			return
		}
	}
	if len(c.branches) == 0 {
		_ = c.Reply(487, "Request Terminated")
		return
	}
	c.cancelBranches()
}

// cancelBranches CANCELs every pending INVITE branch: at once when it has a
// provisional response, else when one arrives (RFC 3261 §9.1).
func (c *Context) cancelBranches() {
	for _, b := range c.branches {
		if b.done || b.method() != sip.INVITE || b.cancelSent {
			continue
		}
		if b.provisonal {
			c.sendCancel(b)
		} else {
			b.cancelWant = true
		}
	}
}

// sendCancel sends a CANCEL on b's branch and bounds the wait for the
// INVITE's final response.
func (c *Context) sendCancel(b *Branch) {
	b.cancelSent = true
	inv := b.tx.request()
	if inv == nil {
		return
	}
	can := sip.NewRequest(sip.CANCEL, *inv.Recipient.Clone())
	can.AppendHeader(inv.Via().Clone())
	for _, h := range inv.GetHeaders("Route") {
		can.AppendHeader(h)
	}
	mf := sip.MaxForwardsHeader(70)
	can.AppendHeader(&mf)
	can.AppendHeader(inv.From())
	can.AppendHeader(inv.To())
	can.AppendHeader(inv.CallID())
	can.AppendHeader(&sip.CSeqHeader{SeqNo: inv.CSeq().SeqNo, MethodName: sip.CANCEL})
	can.SetBody(nil)
	c.s.startClientTx(c.ls, can, b.tx.branch, b.tx.dst, b.tx.tp, noUser{})
	// If the UAS never answers the INVITE after our CANCEL, behave as if
	// it had answered 408 (§16.8) so the transaction always ends.
	b.guard = c.ls.loop.AfterFunc(64*c.s.timers.T1, func() { c.branchFailed(b, 408, "Request Timeout") })
}

// serverTxEnded runs when the server transaction terminates.
func (c *Context) serverTxEnded() {
	if c.suspended {
		c.abortSuspension()
	}
	c.maybeEnd()
}

// maybeEnd releases the context once nothing can touch it any more.
func (c *Context) maybeEnd() {
	if c.ended || c.suspended || c.stx == nil || c.stx.state != stTerminated || !c.allDone() {
		return
	}
	c.ended = true
	c.queue = nil
	for _, b := range c.branches {
		b.timerC.Stop()
		b.guard.Stop()
	}
}

// forward2xxRetrans relays a 2xx retransmission upstream: on the server
// transaction while it is in Accepted, statelessly by Via after that.
func (c *Context) forward2xxRetrans(resp *sip.Response) {
	if c.stx != nil && c.stx.state == stAccepted {
		resp.RemoveHeader("Via")
		if resp.Via() != nil {
			c.stx.respond(resp)
		}
		return
	}
	c.s.forwardResponseStateless(c.ls, resp)
}
