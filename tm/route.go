package tm

import (
	"fmt"
	"runtime"

	"github.com/asyncsip/asyncsip/async"
)

// runRoute runs fn as a route of kind k, then cont — unless fn suspended the
// context, in which case cont runs after the last resume. A panic in fn is
// recovered, counted, logged and answered 500.
func (s *Server) runRoute(c *Context, k RouteKind, fn func(*Context), cont func()) {
	c.kind = k
	c.acted, c.dropped = false, false
	c.cont = cont
	if fn != nil {
		c.call(func() { fn(c) })
	}
	c.settle()
}

// call runs fn with panic recovery.
func (c *Context) call(fn func()) {
	defer func() {
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
	}()
	fn()
}

// settle runs the pending continuation once the route is no longer
// suspended, then processes responses that queued meanwhile.
func (c *Context) settle() {
	if c.suspended {
		return
	}
	if cont := c.cont; cont != nil {
		c.cont = nil
		cont()
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

// Suspend implements async.Suspender: it marks the context suspended and
// arms the suspension bound. tm calls the continuation of the interrupted
// route after the last resume.
func (c *Context) Suspend() (async.Resumer, error) {
	switch {
	case c.stx == nil:
		return nil, fmt.Errorf("%w: a request without transaction (ACK) cannot be suspended", ErrNoTransaction)
	case c.suspended:
		return nil, ErrSuspended
	case c.kind == RouteBranch:
		return nil, fmt.Errorf("%w: cannot suspend in a branch route", ErrWrongRoute)
	case c.ended:
		return nil, ErrFinalSent
	case c.kind == RouteRequest && c.final:
		return nil, ErrFinalSent
	}
	if c.s.stats.suspended.Load() >= int64(c.s.cfg.MaxSuspended) {
		c.s.stats.overload.Add(1)
		return nil, fmt.Errorf("%w: %d transactions suspended", async.ErrOverloaded, c.s.cfg.MaxSuspended)
	}
	c.suspended = true
	c.gen++
	c.s.stats.suspended.Add(1)
	c.bound = c.ls.loop.AfterFunc(c.s.timers.SuspendBound, c.suspendExpired)
	if c.kind == RouteRequest {
		c.stx.sendTrying()
	}
	return resumer{c: c, gen: c.gen}, nil
}

type resumer struct {
	c   *Context
	gen uint32
}

func (r resumer) live() bool { return r.c.suspended && r.c.gen == r.gen }

// Resume runs fn as the continuation of the suspended route.
func (r resumer) Resume(fn func()) bool {
	c := r.c
	if !r.live() {
		return false
	}
	c.suspended = false
	c.aborts = c.aborts[:0]
	c.s.stats.suspended.Add(-1)
	c.bound.Stop()
	c.call(fn)
	c.settle()
	return true
}

// OnAbort registers fn to run if the suspension is aborted.
func (r resumer) OnAbort(fn func()) {
	if r.live() {
		r.c.aborts = append(r.c.aborts, fn)
	}
}

// abortSuspension ends a live suspension without resuming it.
func (c *Context) abortSuspension() {
	if !c.suspended {
		return
	}
	c.suspended = false
	c.gen++
	c.s.stats.suspended.Add(-1)
	c.bound.Stop()
	aborts := c.aborts
	c.aborts = nil
	for _, fn := range aborts {
		c.call(fn)
	}
}

// suspendExpired: the suspension outlived Timers.SuspendBound. The caller
// gets a final response; a reply route's held response is relayed as if the
// route had done nothing (fail open).
func (c *Context) suspendExpired() {
	if !c.suspended {
		return
	}
	c.s.stats.suspendTimeouts.Add(1)
	c.Logger().Warn("tm: suspension bound expired", "route", c.kind.String(), "bound", c.s.timers.SuspendBound)
	kind := c.kind
	c.abortSuspension()
	if kind != RouteReply {
		c.cont = nil
		if !c.final {
			c.kind = RouteRequest
			_ = c.Reply(c.s.cfg.SuspendTimeoutCode, "")
		}
	}
	c.settle()
}

// abortForCancel ends a suspension because the INVITE was cancelled: the
// op is cancelled (its abort hooks run: a context cancelled, a process
// killed, a request abandoned) and its resume will never run. A request or
// failure route is answered 487 now; a reply route's held response is
// relayed as if the route had done nothing, and the caller then runs the
// rest of the CANCEL (branches cancelled, 487 once they end).
func (c *Context) abortForCancel() {
	kind := c.kind
	c.abortSuspension()
	if kind != RouteReply {
		c.cont = nil
		c.kind = RouteRequest
		_ = c.Reply(487, "Request Terminated")
	}
	c.settle()
}

// abort ends a suspended context at once (shutdown): the op is abandoned
// and the caller gets code. It must run on the owner loop.
func (c *Context) abort(code int) {
	if !c.suspended {
		return
	}
	c.abortSuspension()
	c.cont = nil
	if !c.final && c.stx != nil {
		c.kind = RouteRequest
		_ = c.Reply(code, "")
	}
	c.settle()
}
