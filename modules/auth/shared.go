package auth

import (
	"errors"
	"fmt"
	"time"

	"github.com/asyncsip/asyncsip/async"
	"github.com/asyncsip/asyncsip/reactor"
)

// Nonce-counts shared by several instances (Challenger.Nonces).
//
// Every instance issues nonces with the same secret, so each can check the
// integrity and age of a nonce another issued. What the local nonce table
// cannot know is which nonce-counts were used at the other instances:
// VerifyShared asks Nonces, in one atomic step, to record the count only
// if it is above every count used before with that nonce. When Nonces
// fails (timeout, Redis down) the local table decides, as without sharing:
// a nonce issued here is checked here, one issued elsewhere is stale (the
// client is challenged again and gets a nonce of this instance). A replay
// is thus refused in every case; an outage costs at most one extra
// challenge per client.

// DefaultNoncesTimeout is the default of Challenger.NoncesTimeout.
const DefaultNoncesTimeout = 300 * time.Millisecond

func (c *Challenger) noncesTimeout() time.Duration {
	if c.NoncesTimeout > 0 {
		return c.NoncesTimeout
	}
	return DefaultNoncesTimeout
}

// VerifyShared is Verify with the nonce-count checked in c.Nonces, for
// every instance at once; without Nonces it is Verify, answered at once.
// The op's value and error are Verify's. It completes within
// NoncesTimeout (then on the local table, see above), so an await of it
// needs a longer timeout than that.
func (c *Challenger) VerifyShared(a Attempt, ha1 string) async.Op[Result] {
	if c.Nonces == nil {
		r, err := c.Verify(a, ha1)
		return async.Done(r, err)
	}
	return async.OpFunc[Result](func(l *reactor.Loop, done func(Result, error)) func() {
		n, err := c.check(a)
		if err == nil {
			err = c.compare(a, ha1)
		}
		if err != nil {
			done(c.result(a, err))
			return nil
		}
		u := &sharedUse{c: c, a: a, n: n, done: done}
		u.timer = l.AfterFunc(c.noncesTimeout(), func() { u.finish(false, errNoncesTimeout) })
		cancel := c.Nonces.Use(a.Nonce, ncOf(a.Credentials), c.ttl()).Start(l, u.finish)
		if !u.over {
			u.cancel = cancel
		}
		return u.stop
	})
}

var errNoncesTimeout = fmt.Errorf("auth: shared nonce-counts: %w", async.ErrTimeout)

// sharedUse is one VerifyShared waiting for Nonces; its fields are
// touched on the loop only.
type sharedUse struct {
	c      *Challenger
	a      Attempt
	n      nonce
	done   func(Result, error)
	timer  *reactor.Timer
	cancel func()
	over   bool
}

func (u *sharedUse) finish(ok bool, err error) {
	if u.over {
		return
	}
	u.over = true
	if u.timer != nil {
		u.timer.Stop()
	}
	if err != nil && u.cancel != nil {
		u.cancel() // the timeout: the op is no longer wanted
	}
	c, n, nc := u.c, u.n, ncOf(u.a.Credentials)
	local := c.table().use(n.slot, n.rand, n.issued, nc) // keeps the local table in step for an outage
	switch {
	case err != nil:
		c.logger().Warn("auth: shared nonce-counts failed; the local nonce table decides", "err", err)
		err = local
	case !ok:
		err = fmt.Errorf("%w: nc %08x not above the last used at any instance", ErrReplay, nc)
	case errors.Is(local, ErrReplay):
		err = local // used here while the shared store was away
	}
	u.done(c.result(u.a, err))
}

func (u *sharedUse) stop() {
	if u.over {
		return
	}
	u.over = true
	if u.timer != nil {
		u.timer.Stop()
	}
	if u.cancel != nil {
		u.cancel()
	}
}
