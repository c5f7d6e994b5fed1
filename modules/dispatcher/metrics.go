package dispatcher

import (
	"fmt"
	"slices"
	"sync/atomic"
	"time"
)

// Observer is told of probes and state changes, for metrics and alerts.
// Its methods are called on the loops, outside the dispatcher's locks, and
// must not block.
type Observer interface {
	// Probed: a probe of uri ended; ok is false for a failure (timeout,
	// unreachable, a FailureCodes response).
	Probed(uri string, ok bool)
	// StateChanged: a target went down or came back.
	StateChanged(c Change)
}

// Change is a target's change of state.
type Change struct {
	URI    string
	Up     bool
	Reason string
}

// Stats are the dispatcher's counters.
type Stats struct {
	// Selected counts targets chosen (Select and Next); NoTarget the
	// choices that found no live target.
	Selected, NoTarget uint64
	// ProbesSent counts probes sent; ProbesFailed those that failed;
	// ProbesSkipped the turns skipped (a probe of the target still out,
	// MaxInFlight reached, or our own side overloaded or closing).
	ProbesSent, ProbesFailed, ProbesSkipped uint64
	// CallFailures counts the failures reported with Failed.
	CallFailures uint64
	// Downs and Ups count state changes.
	Downs, Ups uint64
	// Targets, TargetsDown are the distinct targets now, and those down.
	Targets, TargetsDown int
	// BoardApplied counts the state changes taken from Config.Board (seen
	// by another instance), BoardFailed its ops that failed or timed out.
	BoardApplied, BoardFailed uint64
}

type counters struct {
	selected, noTarget, sent, failed, skipped, downs, ups, callFailures atomic.Uint64
	boardApplied, boardFailed                                           atomic.Uint64
}

// Stats returns the counters.
func (d *Dispatcher) Stats() Stats {
	st := Stats{
		Selected: d.count.selected.Load(), NoTarget: d.count.noTarget.Load(),
		ProbesSent: d.count.sent.Load(), ProbesFailed: d.count.failed.Load(), ProbesSkipped: d.count.skipped.Load(),
		Downs: d.count.downs.Load(), Ups: d.count.ups.Load(), CallFailures: d.count.callFailures.Load(),
		BoardApplied: d.count.boardApplied.Load(), BoardFailed: d.count.boardFailed.Load(),
	}
	for _, h := range d.snap.Load().health {
		st.Targets++
		if !h.up.Load() {
			st.TargetsDown++
		}
	}
	return st
}

// TargetStatus is the state of one target of one set.
type TargetStatus struct {
	Set string
	Target
	// Up is false when probing took the target down (or MarkDown did).
	Up bool
	// Since is when the state last changed (zero: never).
	Since time.Time
	// Selected counts the calls sent to it (shared by the sets that have
	// its URI, like the fields below).
	Selected uint64
	// Probes and ProbesFailed count its probes; LastCode and LastError
	// are the last probe's response code or error.
	Probes, ProbesFailed uint64
	LastCode             int
	LastError            string
}

// Targets returns the status of every target, by set id then in the set's
// order.
func (d *Dispatcher) Targets() []TargetStatus {
	snap := d.snap.Load()
	ids := make([]string, 0, len(snap.sets))
	for id := range snap.sets {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	var out []TargetStatus
	for _, id := range ids {
		for _, e := range snap.sets[id].entries {
			h := e.h
			h.mu.Lock()
			out = append(out, TargetStatus{
				Set: id, Target: e.t, Up: h.up.Load(), Since: h.since, Selected: h.selected.Load(),
				Probes: h.probes, ProbesFailed: h.failed, LastCode: h.lastCode, LastError: h.lastErr,
			})
			h.mu.Unlock()
		}
	}
	return out
}

// Up reports whether the target with that URI is up; false for a URI in
// no set.
func (d *Dispatcher) Up(uri string) bool {
	h := d.health(uri)
	return h != nil && h.up.Load()
}

// MarkDown takes a target out by hand (maintenance); probing brings it back
// after RecoverAfter answered probes, and MarkUp at once.
func (d *Dispatcher) MarkDown(uri string) error { return d.mark(uri, false) }

// MarkUp brings a target back by hand.
func (d *Dispatcher) MarkUp(uri string) error { return d.mark(uri, true) }

func (d *Dispatcher) mark(uri string, up bool) error {
	h := d.health(uri)
	if h == nil {
		return fmt.Errorf("%w: %q is in no set", ErrBadTarget, uri)
	}
	h.mu.Lock()
	var change *Change
	if h.up.Load() != up {
		change = d.setState(h, time.Now(), up, "marked by hand")
	}
	h.fails, h.oks = 0, 0
	h.mu.Unlock()
	if change != nil {
		d.changed(*change)
	}
	return nil
}

func (d *Dispatcher) health(uri string) *health {
	u, err := normalizeURI(uri)
	if err != nil {
		return nil
	}
	for _, h := range d.snap.Load().health {
		if h.uri == u {
			return h
		}
	}
	return nil
}

// changed logs a state change and tells the Observer.
func (d *Dispatcher) changed(c Change) {
	if c.Up {
		d.log.Info("dispatcher: target up", "target", c.URI, "reason", c.Reason)
	} else {
		d.log.Warn("dispatcher: target down", "target", c.URI, "reason", c.Reason)
	}
	if o := d.cfg.Observer; o != nil {
		o.StateChanged(c)
	}
}
