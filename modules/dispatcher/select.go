package dispatcher

import (
	"errors"
	"fmt"

	"github.com/asyncsip/asyncsip/tm"
)

// choice is what Select remembers on the Context for Next.
type choice struct {
	set   string
	n     uint64 // the call's number in its set (RoundRobin, Weighted, Priority)
	key   uint64 // the call's hash key (Hash*)
	tried []string
	cur   Target
}

// Select chooses a live target of set for the request of c, sets it as the
// next hop of the branches c relays (Context.SetDestination: the
// Request-URI stays) and remembers the choice for Next. It returns
// ErrUnknownSet, or ErrNoTarget when no target of the set is up. Call it
// in the request route, on the Context's loop:
//
//	if _, err := d.Select(c, "gw"); err != nil {
//		_ = c.Reply(503, "Service Unavailable")
//		return
//	}
//	_ = c.Relay()
func (d *Dispatcher) Select(c *tm.Context, set string) (Target, error) {
	s, err := d.set(set)
	if err != nil {
		return Target{}, err
	}
	ch := &choice{set: set, n: s.n.Add(1) - 1, key: d.hashKey(c, s.alg)}
	c.Set(d.key, ch)
	return d.choose(c, s, ch)
}

// Next chooses the next live target of the set Select chose from, one not
// tried yet for this transaction, for serial failover in the failure
// route; it sets it as the next hop like Select. It returns ErrNoSelection
// when Select did not run on c, ErrNoTarget when no untried target is up.
// The set is read as it is now: a target removed since Select is not
// chosen, one added may be.
func (d *Dispatcher) Next(c *tm.Context) (Target, error) {
	ch, ok := tm.Value[*choice](c, d.key)
	if !ok {
		return Target{}, ErrNoSelection
	}
	s, err := d.set(ch.set)
	if err != nil {
		return Target{}, err
	}
	return d.choose(c, s, ch)
}

// Relay selects a target of set (Select) and relays the request there. When
// no target is up it answers 503 and returns ErrNoTarget; when the relay
// to a target fails at once for the target's sake (its host does not
// resolve, no transport, it is this proxy), the next target is tried. Any
// other Relay error (the call was cancelled, its sender chose a Route) is
// returned as it is, for tm to answer.
func (d *Dispatcher) Relay(c *tm.Context, set string) error {
	if _, err := d.Select(c, set); err != nil {
		return d.unavailable(c, err)
	}
	return d.relay(c)
}

// RelayNext is Relay for the failure route: the next untried live target
// (Next), 503 when there is none.
func (d *Dispatcher) RelayNext(c *tm.Context) error {
	if _, err := d.Next(c); err != nil {
		return d.unavailable(c, err)
	}
	return d.relay(c)
}

// Selected returns the target chosen last for c (by Select or Next) and
// how many targets were chosen so far.
func (d *Dispatcher) Selected(c *tm.Context) (Target, int) {
	ch, ok := tm.Value[*choice](c, d.key)
	if !ok {
		return Target{}, 0
	}
	return ch.cur, len(ch.tried)
}

func (d *Dispatcher) relay(c *tm.Context) error {
	for {
		err := c.Relay()
		if err == nil || !targetFault(err) {
			return err // sent, or refused for the call's sake: tm answers it
		}
		cur, _ := d.Selected(c)
		c.Logger().Info("dispatcher: relay to target failed", "target", cur.URI, "err", err)
		if _, nerr := d.Next(c); nerr != nil {
			return d.unavailable(c, fmt.Errorf("%w (last relay: %w)", nerr, err))
		}
	}
}

// targetFault reports whether a Relay error is the target's (another
// target may do), not the call's (cancelled, a final response sent, a
// Route the sender chose).
func targetFault(err error) bool {
	return errors.Is(err, tm.ErrNoRoute) || errors.Is(err, tm.ErrNoTransport) || errors.Is(err, tm.ErrUnresolvable) ||
		errors.Is(err, tm.ErrLoop) || errors.Is(err, tm.ErrBadTarget)
}

func (d *Dispatcher) unavailable(c *tm.Context, err error) error {
	_ = c.Reply(503, "Service Unavailable")
	return err
}

func (d *Dispatcher) set(id string) (*set, error) {
	s := d.snap.Load().sets[id]
	if s == nil {
		return nil, fmt.Errorf("%w: %q", ErrUnknownSet, id)
	}
	return s, nil
}

// choose picks the next untried live entry of s for ch and applies it to c.
func (d *Dispatcher) choose(c *tm.Context, s *set, ch *choice) (Target, error) {
	i := s.pick(ch.n, ch.key, func(e *entry) bool {
		if !e.h.up.Load() {
			return false
		}
		for _, u := range ch.tried {
			if u == e.t.URI {
				return false
			}
		}
		return true
	})
	if i < 0 {
		d.count.noTarget.Add(1)
		return Target{}, fmt.Errorf("%w in set %q (%d tried)", ErrNoTarget, s.id, len(ch.tried))
	}
	e := &s.entries[i]
	if err := c.SetDestination(e.t.URI); err != nil {
		return Target{}, err // cannot happen: URIs are parsed when loaded
	}
	ch.tried = append(ch.tried, e.t.URI)
	ch.cur = e.t
	e.h.selected.Add(1)
	d.count.selected.Add(1)
	return e.t, nil
}

// hashKey returns the hash of what the set's algorithm keeps calls on.
func (d *Dispatcher) hashKey(c *tm.Context, alg Algorithm) uint64 {
	req := c.Req()
	var k string
	switch alg {
	case HashFromUser:
		if f := req.From(); f != nil {
			k = f.Address.User
		}
	case HashRURIUser:
		k = req.Recipient.User
	case HashCallID:
	default:
		return 0
	}
	if k == "" {
		if id := req.CallID(); id != nil {
			k = string(*id)
		}
	}
	return hashString(k)
}

// Failed counts a failure of the target chosen last for c — in the failure
// route, a branch that timed out (408) or answered what the route takes
// for a dead gateway — as a failed probe would count: ProbeConfig.FailAfter
// failures in a row, with no answered probe between, take the target down
// until probing brings it back. This is passive health checking
// (Kamailio's ds_mark_dst): a gateway failing calls is taken out before
// its next probes. It does nothing when Select did not run on c or the
// target is no longer in any set.
//
//	Failure: func(c *tm.Context) {
//		if code := c.Resp.StatusCode; code == 408 || code >= 500 {
//			d.Failed(c)
//			_ = d.RelayNext(c)
//		}
//	},
func (d *Dispatcher) Failed(c *tm.Context) {
	ch, ok := tm.Value[*choice](c, d.key)
	if !ok || ch.cur.URI == "" {
		return
	}
	h := d.health(ch.cur.URI)
	if h == nil {
		return
	}
	code := 0
	if c.Resp != nil {
		code = c.Resp.StatusCode
	}
	failAfter := d.cfg.Probe.FailAfter
	if failAfter <= 0 {
		failAfter = DefaultFailAfter
	}
	h.mu.Lock()
	h.oks, h.fails = 0, h.fails+1
	var change *Change
	if h.up.Load() && h.fails >= failAfter {
		change = d.setState(h, c.Loop().Now(), false, fmt.Sprintf("%d failures in a row, last: a call answered %d", h.fails, code))
	}
	h.mu.Unlock()
	d.count.callFailures.Add(1)
	if change != nil {
		d.changed(*change)
	}
}
