package exec

import (
	"errors"
	"sync/atomic"
	"time"

	"github.com/asyncsip/asyncsip/async"
)

// Kind classifies the outcome of a command, for metrics labels and for
// routes that prefer a switch to a chain of errors.Is.
type Kind uint8

// The outcomes of a command.
const (
	KindOK         Kind = iota // exited with status 0
	KindExit                   // exited with a non-zero status (ErrExitStatus)
	KindSignal                 // killed by a signal exec did not send (ErrSignaled)
	KindTimeout                // killed after Cmd.Timeout, or the await timed out
	KindStart                  // could not be started (ErrStart)
	KindOverloaded             // refused: too many commands running
	KindCancelled              // killed because nobody waited any more
	KindClosed                 // killed because its loop closed (ErrLoopClosed)
	KindOther
	kindCount
)

var kindNames = [kindCount]string{
	"ok", "exit", "signal", "timeout", "start", "overloaded", "cancelled", "closed", "other",
}

// String returns the kind as a metric label value ("ok", "exit", ...).
func (k Kind) String() string {
	if k < kindCount {
		return kindNames[k]
	}
	return "unknown"
}

// KindOf classifies an error delivered by a command (nil is KindOK). It
// also accepts the errors of a route's Await: async.ErrTimeout is
// KindTimeout.
func KindOf(err error) Kind {
	switch {
	case err == nil:
		return KindOK
	case errors.Is(err, ErrExitStatus):
		return KindExit
	case errors.Is(err, ErrSignaled):
		return KindSignal
	case errors.Is(err, async.ErrTimeout):
		return KindTimeout
	case errors.Is(err, ErrStart):
		return KindStart
	case errors.Is(err, async.ErrOverloaded):
		return KindOverloaded
	case errors.Is(err, async.ErrCancelled):
		return KindCancelled
	case errors.Is(err, ErrLoopClosed):
		return KindClosed
	}
	return KindOther
}

// KillReason says why exec signalled a command's process group.
type KillReason uint8

// The reasons exec kills a command.
const (
	// KillTimeout: Cmd.Timeout expired.
	KillTimeout KillReason = iota + 1
	// KillCancelled: the op was cancelled (the await timed out, the
	// transaction ended).
	KillCancelled
	// KillOrphans: the command exited but processes it started still held
	// its output when Drain expired.
	KillOrphans
	// KillLoopClosed: the owner loop closed.
	KillLoopClosed
	killReasonCount
)

var killNames = [killReasonCount]string{"", "timeout", "cancelled", "orphans", "loop_closed"}

// String returns the reason as a metric label value.
func (k KillReason) String() string {
	if k > 0 && k < killReasonCount {
		return killNames[k]
	}
	return "unknown"
}

// Observer receives the life of every command of a Runner, for metrics
// (commands started, outcomes, latency histograms, kills, overloads). Its
// methods run on the loop that started the command — several loops call
// them concurrently — or, for a command on a manual loop, on the goroutine
// that watches it, so they must be cheap, non-blocking and safe for
// concurrent use. This package imports no metrics library: the
// observability layer implements Observer.
type Observer interface {
	// CommandStarted is called when a process was spawned.
	CommandStarted()
	// CommandFinished is called exactly once per CommandStarted, when the
	// process has been reaped: kind classifies the outcome (KindCancelled
	// when nobody waited for it any more), d runs from the spawn.
	CommandFinished(kind Kind, d time.Duration)
	// CommandKilled is called when exec signals a command's process group.
	CommandKilled(reason KillReason)
	// CommandOverloaded is called when a command is refused because the
	// runner's MaxCommands are in flight.
	CommandOverloaded()
}

// Stats is a snapshot of a runner's counters.
type Stats struct {
	Started     uint64 // processes spawned
	Finished    uint64 // processes reaped, whatever the outcome
	StartFailed uint64 // commands that could not be started (ErrStart)
	Overloaded  uint64 // commands refused at MaxCommands
	InFlight    int64  // spawned and not yet reaped
	// ByKind counts finished commands by outcome, indexed by Kind.
	ByKind [kindCount]uint64
	// Killed counts kills by reason, indexed by KillReason.
	Killed [killReasonCount]uint64
}

// Outcomes returns the number of finished commands whose kind is k.
func (s Stats) Outcomes(k Kind) uint64 {
	if k < kindCount {
		return s.ByKind[k]
	}
	return 0
}

// Kills returns the number of commands killed for reason k.
func (s Stats) Kills(k KillReason) uint64 {
	if k < killReasonCount {
		return s.Killed[k]
	}
	return 0
}

// counters are a runner's metrics, updated from every loop.
type counters struct {
	started, finished, startFailed, overloaded atomic.Uint64
	inFlight                                   atomic.Int64
	byKind                                     [kindCount]atomic.Uint64
	killed                                     [killReasonCount]atomic.Uint64
}

func (c *counters) snapshot() Stats {
	s := Stats{
		Started: c.started.Load(), Finished: c.finished.Load(), StartFailed: c.startFailed.Load(),
		Overloaded: c.overloaded.Load(), InFlight: c.inFlight.Load(),
	}
	for i := range s.ByKind {
		s.ByKind[i] = c.byKind[i].Load()
	}
	for i := range s.Killed {
		s.Killed[i] = c.killed[i].Load()
	}
	return s
}

func (r *Runner) started() {
	r.stats.started.Add(1)
	r.stats.inFlight.Add(1)
	if o := r.cfg.Observer; o != nil {
		o.CommandStarted()
	}
}

func (r *Runner) finished(k Kind, d time.Duration) {
	r.stats.byKind[k].Add(1)
	r.stats.inFlight.Add(-1)
	r.stats.finished.Add(1)
	if o := r.cfg.Observer; o != nil {
		o.CommandFinished(k, d)
	}
}

func (r *Runner) killed(k KillReason) {
	r.stats.killed[k].Add(1)
	if o := r.cfg.Observer; o != nil {
		o.CommandKilled(k)
	}
}
