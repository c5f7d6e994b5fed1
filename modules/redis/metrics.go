package redis

import (
	"errors"
	"sync/atomic"
	"time"

	"github.com/asyncsip/asyncsip/async"
)

// Observer receives the metrics events of a Client: commands sent, their
// latency and outcome, and ops refused without being sent. The
// observability layer implements it (this package imports no metrics
// library); gauges (in flight, availability) are read with Client.Stats.
// Methods are called from the client's dispatcher goroutines and from
// loops, concurrently: they must be safe for concurrent use, cheap and
// non-blocking.
type Observer interface {
	// CommandDone is called once per command sent to Redis, when its reply
	// (or its failure) is known: cmd is the upper-case command name
	// ("GET", "EVALSHA"), latency runs from the op's start (time queued
	// included), err is nil, ErrNil (an empty result, not a failure), a
	// *ReplyError, or an error wrapping async.ErrTimeout or
	// ErrUnavailable. A command whose op was cancelled or timed out before
	// it was sent is not reported.
	CommandDone(cmd string, latency time.Duration, err error)
	// Rejected is called when an op failed at once without being sent:
	// err is async.ErrOverloaded (MaxInFlight reached) or ErrUnavailable
	// (Redis is down, the client fails fast).
	Rejected(cmd string, err error)
}

// ObserverFuncs is an Observer made of optional funcs; a nil func ignores
// its event.
type ObserverFuncs struct {
	OnCommandDone func(cmd string, latency time.Duration, err error)
	OnRejected    func(cmd string, err error)
}

// CommandDone calls OnCommandDone if set.
func (o ObserverFuncs) CommandDone(cmd string, latency time.Duration, err error) {
	if o.OnCommandDone != nil {
		o.OnCommandDone(cmd, latency, err)
	}
}

// Rejected calls OnRejected if set.
func (o ObserverFuncs) Rejected(cmd string, err error) {
	if o.OnRejected != nil {
		o.OnRejected(cmd, err)
	}
}

// Stats is a snapshot of a Client's counters and gauges.
type Stats struct {
	Commands    uint64 // commands sent whose outcome is known
	Errors      uint64 // of which failed (ErrNil is not a failure)
	Nil         uint64 // of which replied nil
	Timeouts    uint64 // of which failed on the client's Timeout
	Expired     uint64 // ops completed by their Timeout timer on the loop
	Overloaded  uint64 // ops refused with async.ErrOverloaded
	Unavailable uint64 // ops refused at once with ErrUnavailable
	Downs       uint64 // times the client switched to fail-fast
	ScriptLoads uint64 // EVALSHA calls answered NOSCRIPT and sent again as EVAL

	// Latency is the total time of the commands counted in Commands;
	// divide by Commands for the mean.
	Latency time.Duration
	// InFlight counts ops started and not yet completed by a dispatcher,
	// against Config.MaxInFlight.
	InFlight int64
	// Available is false while the client fails fast (see ErrUnavailable).
	Available bool
}

type counters struct {
	commands, errors, nils, timeouts, expired atomic.Uint64
	overloaded, unavailable, downs            atomic.Uint64
	scriptLoads                               atomic.Uint64
	latency, inFlight                         atomic.Int64
}

// Stats returns the client's counters and gauges.
func (c *Client) Stats() Stats {
	return Stats{
		Commands:    c.m.commands.Load(),
		Errors:      c.m.errors.Load(),
		Nil:         c.m.nils.Load(),
		Timeouts:    c.m.timeouts.Load(),
		Expired:     c.m.expired.Load(),
		Overloaded:  c.m.overloaded.Load(),
		Unavailable: c.m.unavailable.Load(),
		Downs:       c.m.downs.Load(),
		ScriptLoads: c.m.scriptLoads.Load(),
		Latency:     time.Duration(c.m.latency.Load()),
		InFlight:    c.m.inFlight.Load(),
		Available:   !c.down.Load(),
	}
}

func (c *Client) observe(cmd string, d time.Duration, err error) {
	c.m.commands.Add(1)
	c.m.latency.Add(int64(d))
	switch {
	case err == nil:
	case err == ErrNil:
		c.m.nils.Add(1)
	default:
		c.m.errors.Add(1)
		if errors.Is(err, async.ErrTimeout) {
			c.m.timeouts.Add(1)
		}
	}
	if c.cfg.Observer != nil {
		c.cfg.Observer.CommandDone(cmd, d, err)
	}
}

func (c *Client) rejected(cmd string, err error) {
	if err == async.ErrOverloaded {
		c.m.overloaded.Add(1)
	} else {
		c.m.unavailable.Add(1)
	}
	if c.cfg.Observer != nil {
		c.cfg.Observer.Rejected(cmd, err)
	}
}
