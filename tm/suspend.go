package tm

import (
	"fmt"

	"github.com/asyncsip/asyncsip/async"
	"github.com/asyncsip/asyncsip/reactor"
)

// Suspension: a route waits for an op without blocking its loop.
//
// async.Await calls Context.Suspend: the context is marked suspended, a
// generation counter advances (so a late resume of an earlier suspension
// is ignored), Timers.SuspendBound is armed, and an INVITE gets its 100
// Trying. The route returns; responses for the transaction queue behind
// the suspension (route.go, settle). The op's completion calls the
// resumer's Resume on the owner loop, which runs the rest of the route and
// then what was queued. A suspension ends otherwise in three ways, each
// running the op's abort hooks and never its resume: the bound expires
// (suspendExpired: Config.SuspendTimeoutCode), the INVITE is cancelled
// (abortForCancel: 487), or the server closes (abort: 503); a reply route
// cut short that way relays the response it held (fail open).

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
	r := &resumer{c: c, gen: c.gen}
	c.bound = &r.bound
	c.ls.loop.Arm(&r.bound, c.s.timers.SuspendBound, c.suspendExpired)
	if c.kind == RouteRequest {
		c.stx.sendTrying()
	}
	return r, nil
}

// resumer is one suspension: the handle Await resumes it with, and the
// timer of its bound, in one allocation (a value resumer boxed into the
// interface and a timer from AfterFunc were two).
type resumer struct {
	c     *Context
	gen   uint32
	bound reactor.Timer
}

func (r *resumer) live() bool { return r.c.suspended && r.c.gen == r.gen }

// Resume runs fn as the continuation of the suspended route.
func (r *resumer) Resume(fn func()) bool {
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
func (r *resumer) OnAbort(fn func()) {
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
