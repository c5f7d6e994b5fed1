package dns

import (
	"errors"
	"fmt"

	"github.com/asyncsip/asyncsip/tm"
)

// Targets iterates over resolved targets for failover; Failover stores one
// in the tm.Context under TargetsKey. It is used on the context's loop only.
type Targets struct {
	list []Target
	next int
}

// NewTargets returns an iterator over ts (not copied).
func NewTargets(ts []Target) *Targets { return &Targets{list: ts} }

// Next returns the next target, or false when none is left.
func (t *Targets) Next() (Target, bool) {
	if t == nil || t.next >= len(t.list) {
		return Target{}, false
	}
	t.next++
	return t.list[t.next-1], true
}

// Remaining returns how many targets Next has not returned yet.
func (t *Targets) Remaining() int {
	if t == nil {
		return 0
	}
	return len(t.list) - t.next
}

// TargetsKey is the tm.Context value key under which Failover stores the
// *Targets of a transaction.
const TargetsKey = "dns.targets"

// ErrNoMoreTargets is returned by Failover and FailoverNext when every
// target has been tried.
var ErrNoMoreTargets = errors.New("dns: no more targets")

// Failover relays c (in a request or failure route) to the first of ts that
// takes the request and keeps the rest under TargetsKey for FailoverNext.
// With no target it returns ErrNoMoreTargets and leaves answering to the
// route. The Request-URI is left as it is; only the next hop changes.
func Failover(c *tm.Context, ts []Target) error {
	it := NewTargets(ts)
	c.Set(TargetsKey, it)
	return relayNext(c, it)
}

// FailoverNext is for the failure route: when the best response is a 503
// or a 408 (a timeout, RFC 3263 §4.3) and a target is left, it relays to
// the next target and returns true. Otherwise it does nothing (the failure
// route goes on and the response reaches the caller) and returns false.
func FailoverNext(c *tm.Context) bool {
	if c.Resp == nil || (c.Resp.StatusCode != 503 && c.Resp.StatusCode != 408) {
		return false
	}
	it, ok := tm.Value[*Targets](c, TargetsKey)
	if !ok {
		return false
	}
	return relayNext(c, it) == nil
}

// relayNext relays to the next target that accepts the branch. A Relay
// that fails sends nothing, so it tries the following target; when none is
// left the route decides (tm answers the last failure if it does nothing).
func relayNext(c *tm.Context, it *Targets) error {
	var last error = ErrNoMoreTargets
	for {
		t, ok := it.Next()
		if !ok {
			return last
		}
		if err := c.SetDestination(t.URI()); err != nil {
			last = fmt.Errorf("dns: target %s: %w", t, err)
			continue
		}
		err := c.Relay()
		if err == nil {
			return nil
		}
		last = fmt.Errorf("dns: relay to %s: %w", t, err)
		if errors.Is(err, tm.ErrCancelled) || errors.Is(err, tm.ErrFinalSent) {
			return last // no other target can change that
		}
	}
}
