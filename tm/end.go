package tm

import "time"

// This file holds the per-transaction end hook (Routes.End) and the
// per-branch timeout (SetBranchTimeout): small additions an operator needs
// to log each call once and to fail over quickly from a silent gateway.

// runEnd runs Routes.End once, when the server transaction gets its final
// response or is absorbed (code 0). It is called from inside the action that
// ended the transaction, so the hook only reads the Context.
func (c *Context) runEnd(code int) {
	if c.endDone {
		return
	}
	c.endDone = true
	c.endCode = code
	if c.routes == nil || c.routes.End == nil {
		return
	}
	end := c.routes.End
	c.call(func() { end(c) })
}

// FinalCode returns the status of the final response sent upstream, or 0
// while there is none (and for a dropped request). In Routes.End it is the
// transaction's outcome.
func (c *Context) FinalCode() int { return c.endCode }

// Elapsed returns the time since the request arrived, on the loop's clock
// (the fake clock under siptest).
func (c *Context) Elapsed() time.Duration { return c.ls.loop.Now().Sub(c.start) }

// SetBranchTimeout bounds each INVITE branch relayed after the call until
// its first provisional response other than 100: when d passes without one
// the branch ends with a local 408, as Timer B would after 32 s, and the
// failure route runs (to try the next gateway, say). After a provisional
// response the branch is bounded by Timer C as usual. Zero (the default)
// leaves Timer B and Timer C alone; d above Timer C has no effect.
func (c *Context) SetBranchTimeout(d time.Duration) { c.branchTimeout = max(d, 0) }

// firstTimerC is the initial Timer C of a new INVITE branch.
func (c *Context) firstTimerC() time.Duration {
	if c.branchTimeout > 0 && c.branchTimeout < c.s.timers.TimerC {
		return c.branchTimeout
	}
	return c.s.timers.TimerC
}
