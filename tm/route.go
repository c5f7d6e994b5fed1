package tm

import (
	"fmt"
	"runtime"
)

// runRoute runs fn as a route of kind k, then cont — unless fn suspended the
// context, in which case cont runs after the last resume. A panic in fn is
// recovered, counted, logged and answered 500.
func (s *Server) runRoute(c *Context, k RouteKind, fn func(*Context), cont func(*Context)) {
	c.kind = k
	c.acted, c.dropped = false, false
	c.cont = cont
	if fn != nil {
		c.callRoute(fn)
	}
	c.settle()
}

// callRoute is call(func() { fn(c) }) without the closure.
func (c *Context) callRoute(fn func(*Context)) {
	defer c.recoverRoute()
	fn(c)
}

// call runs fn with panic recovery.
func (c *Context) call(fn func()) {
	defer c.recoverRoute()
	fn()
}

// recoverRoute, deferred, recovers a route's panic: counted, logged, and
// answered 500 where an answer is due.
func (c *Context) recoverRoute() {
	if r := recover(); r != nil {
		c.s.stats.panics.Add(1)
		buf := make([]byte, 4096)
		buf = buf[:runtime.Stack(buf, false)]
		c.Logger().Error("tm: panic in route", "route", c.kind.String(), "panic", fmt.Sprint(r), "stack", string(buf))
		if c.stx != nil && !c.final && c.kind != RouteReply {
			k := c.kind
			c.kind = RouteRequest
			_ = c.Reply(500, "Server Internal Error")
			c.kind = k
		}
	}
}

// settle runs the pending continuation once the route is no longer
// suspended, then processes responses that queued meanwhile.
func (c *Context) settle() {
	if c.suspended {
		return
	}
	if cont := c.cont; cont != nil {
		c.cont = nil
		cont(c)
	}
	for !c.suspended && len(c.queue) > 0 {
		q := c.queue[0]
		c.queue = c.queue[1:]
		c.processResponse(q.br, q.resp)
	}
	c.maybeEnd()
}

// afterRequest is the end-of-request-route rule: no transaction is left
// dangling. Whatever the route did, once it is over either a final response
// went out, a branch is in flight, or the request was dropped; otherwise the
// abandon code is sent, and if even that cannot be built the request is
// absorbed so that Timer J ends the transaction.
func (c *Context) afterRequest() {
	if c.stx == nil || c.final || c.pendingBranches() > 0 {
		return
	}
	if c.dropped {
		c.stx.absorb()
		return
	}
	code, reason := c.s.cfg.AbandonCode, ""
	switch {
	case c.relayErr != nil:
		code, reason = c.relayAnswer(c.relayErr) // a failed Relay, left at that
	case !c.acted:
		c.s.stats.abandoned.Add(1)
	}
	if err := c.Reply(code, reason); err != nil {
		c.s.stats.countDrop("unanswerable")
		c.stx.absorb()
	}
}
