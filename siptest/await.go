package siptest

import (
	"errors"
	"fmt"
	"reflect"
	"time"

	"github.com/asyncsip/asyncsip/async"
	"github.com/asyncsip/asyncsip/reactor"
)

// AwaitState is where an await stands.
type AwaitState uint8

// Await states.
const (
	// AwaitPending: the op was held by the harness; it waits for Complete,
	// a fake's delayed answer, or its timeout on the clock.
	AwaitPending AwaitState = iota + 1
	// AwaitRunning: the real op runs (WithPassThrough, WithRealOps).
	AwaitRunning
	// AwaitCompleted: the resume got a value and no error.
	AwaitCompleted
	// AwaitFailed: the resume got an error other than a timeout.
	AwaitFailed
	// AwaitTimedOut: the await's timeout fired; the resume got an error
	// wrapping async.ErrTimeout.
	AwaitTimedOut
	// AwaitAborted: the transaction ended first (suspension bound, CANCEL,
	// Close);
	// the resume never ran.
	AwaitAborted
)

// String returns the state in words ("pending", "timed out"…).
func (s AwaitState) String() string {
	switch s {
	case AwaitPending:
		return "pending"
	case AwaitRunning:
		return "running"
	case AwaitCompleted:
		return "completed"
	case AwaitFailed:
		return "failed"
	case AwaitTimedOut:
		return "timed out"
	case AwaitAborted:
		return "aborted"
	}
	return "unknown"
}

// Await is one async.Await made by a route under the harness: the op that
// was awaited and what became of it. The harness holds every op (it is not
// started) unless it passes through (WithPassThrough, WithRealOps) or a
// fake answers it; the test completes a held op with Complete or Fail, or
// lets it time out with Clock.Advance.
type Await struct {
	// Name is the await's async.Name ("" if none).
	Name string
	// Desc is the op's description (async.Describer), e.g.
	// "db.query: SELECT …" ("" if the op has none).
	Desc string
	// Type is the type of the value the resume takes.
	Type reflect.Type
	// Timeout is the await's timeout.
	Timeout time.Duration
	// Index is the position of the await among all of the harness's.
	Index int

	a     *async.Intercepted
	h     *Harness
	res   *Result
	state AwaitState
	err   error
	by    string
	real  bool
	timer *reactor.Timer
}

// Op returns the op that was awaited (a module's op value, to inspect).
func (w *Await) Op() any { return w.a.Op }

// Result returns the Result of the transaction whose route awaited.
func (w *Await) Result() *Result { return w.res }

// State returns where the await stands.
func (w *Await) State() AwaitState { return w.state }

// Pending reports whether the await waits for the test (or a fake, or the
// clock) to complete it.
func (w *Await) Pending() bool { return w.state == AwaitPending }

// Err returns the error the resume received: nil after a success, an error
// wrapping async.ErrTimeout after a timeout, async.ErrCancelled when the
// transaction ended first. It is nil while the await is not over.
func (w *Await) Err() error { return w.err }

// Complete completes a held await with (v, err) and runs the loop until
// idle: the route's resume runs, and the Result records what it did. v must
// be of the resume's type (a module's result: a db.Row, a rest.Result…);
// nil is the zero value. Otherwise the resume gets an error wrapping
// async.ErrResultType, which Complete returns too. Complete returns an error wrapping async.ErrNotPending when
// the await is not held or is over.
func (w *Await) Complete(v any, err error) error {
	w.h.t.Helper()
	w.by = "test"
	e := w.complete(v, err)
	w.h.settle()
	return e
}

// Fail completes a held await with err, like Complete(nil, err).
func (w *Await) Fail(err error) error {
	w.h.t.Helper()
	return w.Complete(nil, err)
}

// complete completes the intercepted await.
func (w *Await) complete(v any, err error) error {
	if !w.a.Pending() {
		return fmt.Errorf("siptest: %s is %s: %w", w.label(), w.state, async.ErrNotPending)
	}
	return w.a.Complete(v, err)
}

// finish records the outcome (async's OnFinish hook).
func (w *Await) finish(err error) {
	if w.real {
		w.h.inFlight--
	}
	w.timer.Stop()
	w.err = err
	switch {
	case err == nil:
		w.state = AwaitCompleted
	case errors.Is(err, async.ErrCancelled):
		w.state = AwaitAborted
	case errors.Is(err, async.ErrTimeout):
		w.state = AwaitTimedOut
	default:
		w.state = AwaitFailed
	}
	if w.res != nil {
		w.res.add(event{dir: dirAwait, note: w.String()})
	}
}

func (w *Await) label() string {
	switch {
	case w.Desc != "" && w.Name != "":
		return fmt.Sprintf("%q (%s)", w.Desc, w.Name)
	case w.Desc != "":
		return fmt.Sprintf("%q", w.Desc)
	case w.Name != "":
		return w.Name
	}
	return "an op without name or description"
}

// String describes the await: op, resume type, timeout, state, and who
// completed it.
func (w *Await) String() string {
	s := fmt.Sprintf("#%d %s -> %v, timeout %v: %s", w.Index, w.label(), w.Type, w.Timeout, w.state)
	if w.by != "" {
		s += " (" + w.by + ")"
	}
	if w.err != nil {
		s += ": " + w.err.Error()
	}
	return s
}
