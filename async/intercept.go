package async

import (
	"errors"
	"fmt"
	"reflect"
	"time"

	"github.com/asyncsip/asyncsip/reactor"
)

// This file is the test seam of Await: a host may hand every awaited op to
// an Interceptor (siptest does, through tm.Config.Intercept) that records
// it and scripts its result. Nothing here runs unless a Suspender returns a
// non-nil Interceptor.

// Describer is implemented by ops that can say in one line what they do, so
// that tests (siptest's fakes) and logs can tell them apart. The format is
// "<module>.<verb>: <detail>" or "<module>: <detail>", for example
// "db.query: SELECT gw FROM lcr WHERE prefix = ?", "exec: /usr/bin/lcr 1555"
// or "rest: GET http://10.0.0.5/route". Describe is only called when
// someone asks (an Interceptor), never on the hot path.
type Describer interface {
	Describe() string
}

// Interceptor takes over the ops awaited on a context, for tests. Await
// calls it on the loop in place of op.Start. When it reports false the op
// starts as usual (the interception only observes it). When it reports
// true the op is never started: the await waits as if it were running —
// the context is suspended and the timeout armed — until a.Complete is
// called, the timeout fires (the resume gets ErrTimeout) or the context
// ends. Calling a.Complete from inside the Interceptor completes the await
// synchronously.
type Interceptor func(a *Intercepted) (handled bool)

// InterceptedSuspender is a Suspender whose awaits may be intercepted
// (tm.Context implements it). Interceptor returns nil when they are not,
// which is the case outside tests.
type InterceptedSuspender interface {
	Suspender
	Interceptor() Interceptor
}

// Errors of intercepted awaits.
var (
	// ErrResultType is the error the resume receives, and Complete
	// returns, when an intercepted await is completed with a value that is
	// not of the type the resume takes.
	ErrResultType = errors.New("async: intercepted result has the wrong type")
	// ErrNotPending is returned by Complete when the await is not waiting
	// for it: it was not handled by the Interceptor, or it is over
	// (completed, timed out, or its context ended).
	ErrNotPending = errors.New("async: intercepted await is not pending")
)

// Intercepted is one await offered to an Interceptor. Its fields describe
// the op; its methods must be called on its loop.
type Intercepted struct {
	// Context is the Suspender the await was made on (a *tm.Context).
	Context Suspender
	// Name is the Name option of the await ("" if none).
	Name string
	// Desc is the op's Describe() when it is a Describer, else "".
	Desc string
	// Op is the op that was awaited.
	Op any
	// Type is the type of the value the resume takes (the T of Op[T]).
	Type reflect.Type
	// Timeout bounds the await.
	Timeout time.Duration

	loop     *reactor.Loop
	deliver  func(v any, err error) error // set while pending
	onFinish func(err error)
	pending  bool
	finished bool
	err      error
}

// Loop returns the loop the await runs on.
func (a *Intercepted) Loop() *reactor.Loop { return a.loop }

// Pending reports whether the await was handled by the Interceptor and
// still waits for Complete.
func (a *Intercepted) Pending() bool { return a.pending }

// Finished reports whether the outcome of the await is known; Err is then
// what the resume received.
func (a *Intercepted) Finished() bool { return a.finished }

// Err returns the error the resume received (nil on success), or an error
// wrapping ErrCancelled when the context ended and the resume never ran.
// It is nil while the await is not finished.
func (a *Intercepted) Err() error { return a.err }

// Complete ends a pending await with (v, err): the resume runs before
// Complete returns. A nil v is the zero value of Type. A v of another type
// completes the await with an error wrapping ErrResultType (the resume gets
// it, never a panic), which Complete also returns. Complete returns
// ErrNotPending, and does nothing, when the await is not pending.
func (a *Intercepted) Complete(v any, err error) error {
	if !a.pending {
		return fmt.Errorf("%s: %w", a.label(), ErrNotPending)
	}
	a.pending = false
	return a.deliver(v, err)
}

// OnFinish sets fn to run once, on the loop, when the outcome of the await
// is known — completed, failed, timed out, or aborted (fn then gets an error
// wrapping ErrCancelled) — before the resume runs. It works for awaits the
// Interceptor did not handle too. A later call replaces fn.
func (a *Intercepted) OnFinish(fn func(err error)) { a.onFinish = fn }

// label names the await in errors.
func (a *Intercepted) label() string {
	switch {
	case a.Desc != "":
		return a.Desc
	case a.Name != "":
		return a.Name
	}
	return fmt.Sprintf("await of %v", a.Type)
}

// intercept returns the op Await starts instead of op when the context has
// an Interceptor; it also routes the call's observer events through a, to
// learn the outcome.
func intercept[T any](s Suspender, f Interceptor, c *call[T], op Op[T]) Op[T] {
	a := &Intercepted{Context: s, Name: c.name, Op: op, Type: reflect.TypeFor[T](), Timeout: c.timeout, loop: c.loop}
	if d, ok := op.(Describer); ok {
		a.Desc = d.Describe()
	}
	c.obs = &interceptObserver{a: a, next: c.obs}
	return &interceptOp[T]{a: a, f: f, op: op}
}

type interceptOp[T any] struct {
	a  *Intercepted
	f  Interceptor
	op Op[T]
}

func (w *interceptOp[T]) Start(l *reactor.Loop, done func(T, error)) func() {
	a := w.a
	a.deliver = func(v any, err error) error {
		var t T
		if v != nil {
			var ok bool
			if t, ok = v.(T); !ok {
				err = fmt.Errorf("%s: %w: got %T, the resume takes %v", a.label(), ErrResultType, v, a.Type)
				done(t, err)
				return err
			}
		}
		done(t, err)
		return nil
	}
	a.pending = true
	if !w.f(a) && a.pending { // not handled, and not completed inside f
		a.pending, a.deliver = false, nil
		return w.op.Start(l, done)
	}
	return a.cancel
}

// cancel is the cancel func of a handled op: a later Complete is refused.
func (a *Intercepted) cancel() { a.pending = false }

// interceptObserver forwards observer events and records the outcome.
type interceptObserver struct {
	a    *Intercepted
	next Observer
}

func (o *interceptObserver) OpStarted(name string) {
	if o.next != nil {
		o.next.OpStarted(name)
	}
}

func (o *interceptObserver) OpFinished(name string, latency time.Duration, err error) {
	if o.next != nil {
		o.next.OpFinished(name, latency, err)
	}
	a := o.a
	a.pending, a.finished, a.err = false, true, err
	if fn := a.onFinish; fn != nil {
		a.onFinish = nil
		fn(err)
	}
}

// Descriptions of this package's own ops, for Interceptors: siptest lets
// "async.sleep" and "async.done" run as they are (they only use the loop)
// and holds the others for the test to complete.

// Describe returns "async.sleep: <d>".
func (d sleepOp) Describe() string { return "async.sleep: " + time.Duration(d).String() }

// Describe returns "async.done".
func (doneOp[T]) Describe() string { return "async.done" }

// Describe returns "async.blocking", followed by ": <name>" when the op has
// a Name.
func (b *blockingOp[T]) Describe() string {
	if b.name == "" {
		return "async.blocking"
	}
	return "async.blocking: " + b.name
}
