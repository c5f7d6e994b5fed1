package async

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/asyncsip/asyncsip/reactor"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeCtx is a Suspender standing in for tm.Context. It enforces the host
// side of the contract: Suspend only while not suspended, Resume only once
// and only while live, abort hooks run when the context ends.
type fakeCtx struct {
	t          testing.TB
	loop       *reactor.Loop
	suspendErr error    // Suspend fails with it when set
	nilResumer bool     // Suspend returns (nil, nil)
	refuse     bool     // Resume reports false without aborting
	obs        Observer // returned by Observer when set
	live       bool     // suspended now
	gen        int
	aborts     []func()

	suspended, resumed, aborted, stale int
}

func newFakeCtx(t testing.TB, l *reactor.Loop) *fakeCtx { return &fakeCtx{t: t, loop: l} }

func (c *fakeCtx) Loop() *reactor.Loop { return c.loop }

func (c *fakeCtx) Suspend() (Resumer, error) {
	if c.suspendErr != nil {
		return nil, c.suspendErr
	}
	if c.nilResumer {
		return nil, nil
	}
	if c.live {
		c.t.Errorf("fakeCtx: Suspend while already suspended")
	}
	c.live = true
	c.gen++
	c.aborts = c.aborts[:0]
	c.suspended++
	return &fakeResumer{c: c, gen: c.gen}, nil
}

// end ends the context (transaction bound, shutdown): the suspension, if
// any, is aborted.
func (c *fakeCtx) end() {
	if !c.live {
		return
	}
	c.live = false
	c.aborted++
	fns := append([]func(){}, c.aborts...)
	c.aborts = c.aborts[:0]
	for _, fn := range fns {
		fn()
	}
}

type fakeResumer struct {
	c   *fakeCtx
	gen int
}

func (r *fakeResumer) Resume(fn func()) bool {
	c := r.c
	if !c.live || r.gen != c.gen || c.refuse {
		c.stale++
		return false
	}
	c.live = false
	c.aborts = c.aborts[:0]
	c.resumed++
	fn()
	return true
}

func (r *fakeResumer) OnAbort(fn func()) {
	if r.gen == r.c.gen && r.c.live {
		r.c.aborts = append(r.c.aborts, fn)
	}
}

// observedCtx is a fakeCtx that is also an ObservedSuspender.
type observedCtx struct{ *fakeCtx }

func (c observedCtx) Observer() Observer { return c.obs }

// recorder collects the outcomes of a resume or report func.
type recorder[T any] struct {
	calls int
	v     T
	err   error
}

func (r *recorder[T]) fn(v T, err error) { r.calls++; r.v, r.err = v, err }

// manualOp is an op completed by the test: it keeps its done func.
type manualOp[T any] struct {
	starts, cancels int
	done            func(T, error)
	loop            *reactor.Loop
}

func (o *manualOp[T]) Start(l *reactor.Loop, done func(T, error)) func() {
	o.starts++
	o.loop, o.done = l, done
	return func() { o.cancels++ }
}

// fakeObserver records observer calls.
type fakeObserver struct {
	started  []string
	finished []finishedOp
}

type finishedOp struct {
	name    string
	latency time.Duration
	err     error
}

func (o *fakeObserver) OpStarted(name string) { o.started = append(o.started, name) }
func (o *fakeObserver) OpFinished(name string, d time.Duration, err error) {
	o.finished = append(o.finished, finishedOp{name, d, err})
}

// newManual returns a manual loop on a fake clock.
func newManual() (*reactor.Loop, *reactor.FakeClock) {
	clk := reactor.NewFakeClock(time.Unix(1_700_000_000, 0))
	return reactor.NewManual(clk), clk
}

// closePool closes p at the end of the test and checks that its goroutines
// are gone.
func closePool(t testing.TB, p *Pool) {
	t.Helper()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := p.Close(ctx); err != nil {
			t.Errorf("pool close: %v", err)
		}
		if s := p.Stats(); s.Workers != 0 || s.Busy != 0 || s.Queued != 0 {
			t.Errorf("pool not empty after Close: %+v", s)
		}
	})
}

var errTest = errors.New("test error")
