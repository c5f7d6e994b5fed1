package async

import (
	"errors"
	"time"

	"github.com/asyncsip/asyncsip/reactor"
)

// Await runs op for the context s and continues with resume(result, err) on
// the context's loop. Call it on s.Loop(), typically as the last thing a
// route does: the route returns, the loop serves other traffic, and resume
// runs later as the continuation of the route, with the context intact.
//
//   - If op completes synchronously, resume runs inline, before Await
//     returns, and the context is never suspended.
//   - Otherwise the context is suspended and a timer bounds the wait
//     (DefaultTimeout unless Timeout says otherwise). resume runs exactly
//     once: with the op's result, or with an error wrapping ErrTimeout after
//     the op was cancelled. A completion after the timeout is discarded.
//   - If the context ends while suspended (its Resumer aborts), the op is
//     cancelled, the timer stopped, and resume never runs.
//   - If the context cannot be suspended, the op is cancelled and resume
//     runs inline with an error wrapping ErrNotSuspendable.
//   - If the context is an InterceptedSuspender with an Interceptor (in
//     tests), op is offered to it first; see Interceptor.
//
// Await returns nothing: every failure, including bad input (a nil op, a nil
// context), reaches resume as err. A resume may Await again (chained
// awaits). A nil resume discards the result.
func Await[T any](s Suspender, op Op[T], resume func(T, error), opts ...Option) {
	if resume == nil {
		resume = func(T, error) {}
	}
	o := parseOptions(opts)
	var l *reactor.Loop
	if s != nil {
		l = s.Loop()
	}
	if l == nil {
		var zero T
		resume(zero, wrap(o.name, ErrNotSuspendable))
		return
	}
	if !o.hasObserver {
		if h, ok := s.(ObservedSuspender); ok {
			o.observer = h.Observer()
		}
	}
	c := &call[T]{loop: l, fn: resume, name: o.name, timeout: o.timeout, obs: o.observer}
	if is, ok := s.(InterceptedSuspender); ok && op != nil {
		if f := is.Interceptor(); f != nil {
			op = intercept(s, f, c, op) // tests only: see intercept.go
		}
	}
	if c.start(op) {
		c.resumeInline()
		return
	}
	r, err := s.Suspend()
	if err != nil || r == nil {
		c.state = stDone // a done from inside cancel is dropped
		c.cancelOp()
		var zero T
		c.v, c.err = zero, suspendError(o.name, err)
		c.resumeInline()
		return
	}
	c.r = r
	c.arm() // before OnAbort: wake tells them apart by the timer
	r.OnAbort(c.kick)
}

// Launch starts op on loop l, not tied to any context (fire and forget).
// report, if not nil, runs on l exactly once with the outcome — inline when
// op completes synchronously (OpenSIPS skips the report route then; we do
// not), with an error wrapping ErrTimeout when op did not complete within
// the timeout (DefaultTimeout unless Timeout says otherwise; the op is
// cancelled). Call it on l. With a nil l, report runs at once with an error
// wrapping ErrNotSuspendable.
func Launch[T any](l *reactor.Loop, op Op[T], report func(T, error), opts ...Option) {
	if report == nil {
		report = func(T, error) {}
	}
	o := parseOptions(opts)
	if l == nil {
		var zero T
		report(zero, wrap(o.name, ErrNotSuspendable))
		return
	}
	c := &call[T]{loop: l, fn: report, name: o.name, timeout: o.timeout, obs: o.observer}
	if c.start(op) {
		c.resumeInline()
		return
	}
	c.arm()
}

// ErrNoLoop is returned by LaunchGroup when the group has no loop.
var ErrNoLoop = errors.New("async: no loop to launch on")

// LaunchGroup launches op on the least busy loop of g: it posts the start
// there, so it may be called from any goroutine. When it returns nil, report
// runs exactly once on that loop, as with Launch; when it returns an error
// (no loop, or the loop has stopped), the op was not started and report
// never runs.
func LaunchGroup[T any](g *reactor.Group, op Op[T], report func(T, error), opts ...Option) error {
	if g == nil || g.Len() == 0 {
		return ErrNoLoop
	}
	l := g.Least()
	return l.Post(func() { Launch(l, op, report, opts...) })
}

// Life cycle of a call.
const (
	stStarting uint8 = iota // inside op.Start
	stSyncDone              // done ran inside op.Start
	stWaiting               // suspended (Await) or running (Launch)
	stResuming              // outcome known, resume handed to the Resumer
	stDone                  // finished; anything that arrives now is ignored
)

// call is the state of one Await or Launch: the only allocation of a
// synchronous await besides the done func, and with the kick func the only
// allocations of a suspended one (the timeout timer is a field, armed in
// place). An awaited Sleep is not started at all: the call's own timer is
// the sleep (see start), so it costs the call and its kick func.
type call[T any] struct {
	loop    *reactor.Loop
	fn      func(T, error) // resume or report
	r       Resumer        // nil for Launch
	cancel  func()         // the op's cancel
	kick    func()         // c.wake, allocated once per suspension
	name    string
	timeout time.Duration
	obs     Observer
	v       T
	err     error
	timer   reactor.Timer // the timeout, or the sleep of an awaited Sleep
	wait    time.Duration // what the timer was armed for; 0 until armed
	sleep   time.Duration // > 0: the op is Sleep(sleep), run on timer
	state   uint8
}

// start starts op and reports whether it completed synchronously. When it
// did not, the call is waiting and its kick func is ready.
//
// A Sleep(d) with 0 < d <= the timeout is not started: the call's timer,
// armed for d instead of the timeout, is the sleep, and its firing
// completes the call with success (a timer armed first fires first, so
// d == timeout was a success before too). That saves the op's own timer,
// its two funcs and the done func: an awaited Sleep allocates two objects
// instead of seven (BenchmarkSleep).
func (c *call[T]) start(op Op[T]) (sync bool) {
	if c.obs != nil {
		c.obs.OpStarted(c.name)
	}
	if op == nil {
		c.v, c.err = *new(T), wrap(c.name, ErrNilOp)
		return true
	}
	if d, ok := any(op).(sleepOp); ok && d > 0 && time.Duration(d) <= c.timeout {
		c.sleep = time.Duration(d)
		c.state = stWaiting
		c.kick = c.wake
		return false
	}
	c.state = stStarting
	c.cancel = c.startOp(op)
	if c.state == stSyncDone {
		c.cancel = nil // nothing to cancel: the op is over
		return true
	}
	c.state = stWaiting
	c.kick = c.wake
	return false
}

// startOp runs op.Start, turning a panic into an error result.
func (c *call[T]) startOp(op Op[T]) (cancel func()) {
	defer func() {
		if r := recover(); r != nil && c.state == stStarting {
			c.v, c.err, c.state = *new(T), panicError(c.name, r), stSyncDone
		}
	}()
	return op.Start(c.loop, c.done)
}

// arm arms the call's timer: for the sleep of an awaited Sleep, else for
// the timeout.
func (c *call[T]) arm() {
	c.wait = c.timeout
	if c.sleep > 0 {
		c.wait = c.sleep
	}
	c.loop.Arm(&c.timer, c.wait, c.kick)
}

// done is the completion func handed to the op.
func (c *call[T]) done(v T, err error) {
	switch c.state {
	case stStarting:
		c.v, c.err, c.state = v, err, stSyncDone
	case stWaiting:
		c.timer.Stop()
		c.finish(v, err)
	}
	// Any other state: a late or duplicate completion, dropped.
}

// wake is the one func() of a suspended call, shared by its timer, its
// Resumer's abort hook and its Resume, which saves two allocations per
// await. The state tells them apart: while waiting, a pending timer means
// the call is being aborted and a fired one that it timed out; once
// resuming, the Resumer is running the continuation.
func (c *call[T]) wake() {
	switch c.state {
	case stWaiting:
		switch {
		case c.timer.Pending():
			c.abort()
		case c.sleep > 0:
			c.finish(*new(T), nil) // the sleep is over
		default:
			c.expire()
		}
	case stResuming:
		c.state = stDone
		v, err := c.v, c.err
		c.v, c.err = *new(T), nil
		c.fn(v, err)
	}
}

// expire handles the timeout: cancel the op, resume with ErrTimeout.
func (c *call[T]) expire() {
	c.state = stResuming // a done from inside cancel is dropped
	c.cancelOp()
	c.finish(*new(T), timeoutError(c.name, c.timeout))
}

// abort handles the end of the context: cancel everything, no resume.
func (c *call[T]) abort() {
	c.state = stDone
	c.timer.Stop()
	c.cancelOp()
	c.observe(wrap(c.name, ErrCancelled))
}

// finish records the outcome and hands the continuation over.
func (c *call[T]) finish(v T, err error) {
	c.state = stResuming
	c.observe(err)
	if c.r == nil { // Launch
		c.state = stDone
		c.fn(v, err)
		return
	}
	c.v, c.err = v, err
	if !c.r.Resume(c.kick) && c.state == stResuming {
		// The context ended meanwhile: the continuation is dropped.
		c.state = stDone
		c.v, c.err = *new(T), nil
	}
}

// resumeInline runs the continuation of a call that never suspended.
func (c *call[T]) resumeInline() {
	c.state = stDone
	c.observe(c.err)
	v, err := c.v, c.err
	c.v, c.err = *new(T), nil
	c.fn(v, err)
}

func (c *call[T]) cancelOp() {
	if f := c.cancel; f != nil {
		c.cancel = nil
		f()
	}
}

// observe reports the outcome. The latency needs no start time of its own:
// an op that did not complete synchronously armed its timer when it started,
// so it began at the timer's deadline minus what the timer was armed for;
// one that did took no loop time at all (the loop's clock is per iteration).
func (c *call[T]) observe(err error) {
	if c.obs == nil {
		return
	}
	var latency time.Duration
	if c.wait > 0 {
		latency = c.loop.Now().Sub(c.timer.When()) + c.wait
	}
	c.obs.OpFinished(c.name, latency, err)
}
