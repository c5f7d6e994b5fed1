package async

import (
	"context"
	"errors"
	"github.com/asyncsip/asyncsip/internal/testenv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/asyncsip/asyncsip/reactor"
)

// runPosted waits until the manual loop l has n queued tasks (posted by pool
// workers), then runs them.
func runPosted(t *testing.T, l *reactor.Loop, n int) {
	t.Helper()
	testenv.Eventually(t, 5*time.Second, "completions posted to the loop", func() bool { return l.Pending() >= n })
	l.RunPending()
}

// gated returns a blocking function that waits for release (or its ctx) and
// reports the ctx error it saw on seen.
func gated(release <-chan struct{}, seen chan<- error, v int) func(context.Context) (int, error) {
	return gatedStarted(release, seen, nil, v)
}

// gatedStarted is gated that also closes started once it runs.
func gatedStarted(release <-chan struct{}, seen chan<- error, started chan struct{}, v int) func(context.Context) (int, error) {
	return func(ctx context.Context) (int, error) {
		if started != nil {
			close(started)
		}
		select {
		case <-release:
			seen <- nil
			return v, nil
		case <-ctx.Done():
			seen <- ctx.Err()
			return 0, ctx.Err()
		}
	}
}

func TestBlockingRoundTrip(t *testing.T) {
	t.Parallel()
	p := NewPool(PoolConfig{Workers: 2})
	closePool(t, p)
	l, _ := newManual()
	c := newFakeCtx(t, l)
	var r recorder[int]
	Await(c, Blocking(func(context.Context) (int, error) { return 7, nil }, OnPool(p)), r.fn)
	require.Equal(t, 1, c.suspended)
	runPosted(t, l, 1)
	require.Equal(t, 1, r.calls)
	require.Equal(t, 7, r.v)
	require.NoError(t, r.err)
	testenv.Eventually(t, 5*time.Second, "worker idle", func() bool { return p.Stats().Busy == 0 })
	s := p.Stats()
	require.Equal(t, uint64(1), s.Completed)
	require.Zero(t, s.Rejected)
}

func TestBlockingCancelledContext(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		end  func(l *reactor.Loop, c *fakeCtx)
		// whether the resume runs (with ErrTimeout) or never (abort)
		resumes bool
	}{
		{"timeout", func(l *reactor.Loop, _ *fakeCtx) { l.Advance(time.Second) }, true},
		{"context ended", func(_ *reactor.Loop, c *fakeCtx) { c.end() }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := NewPool(PoolConfig{Workers: 1})
			closePool(t, p)
			l, _ := newManual()
			c := newFakeCtx(t, l)
			seen := make(chan error, 1)
			started := make(chan struct{})
			var r recorder[int]
			Await(c, Blocking(gatedStarted(nil, seen, started, 1), OnPool(p)), r.fn, Timeout(time.Second))
			testenv.Wait(t, 5*time.Second, started, "fn running")
			tc.end(l, c)
			require.ErrorIs(t, testenv.Wait(t, 5*time.Second, seen, "fn return"), context.Canceled, "fn's ctx is cancelled")
			// The worker posts the late result before it frees its slot; the
			// result may even have run inside Advance already. Either way it
			// is dropped.
			testenv.Eventually(t, 5*time.Second, "pool slot freed", func() bool { return p.Stats().Busy == 0 })
			l.RunPending()
			if tc.resumes {
				require.Equal(t, 1, r.calls)
				require.ErrorIs(t, r.err, ErrTimeout)
			} else {
				require.Zero(t, r.calls)
			}
			require.Zero(t, l.Timers())
		})
	}
}

func TestBlockingOverloadFailsAtOnce(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name      string
		cfg       PoolConfig
		accepted  int // calls that get a worker or a queue slot
		submitted int
	}{
		{"no queue", PoolConfig{Workers: 1, Queue: -1}, 1, 3},
		{"queue of one", PoolConfig{Workers: 1, Queue: 1}, 2, 4},
		{"two workers, queue of two", PoolConfig{Workers: 2, Queue: 2}, 4, 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := NewPool(tc.cfg)
			closePool(t, p)
			l, _ := newManual()
			release := make(chan struct{})
			seen := make(chan error, tc.submitted)
			results := make([]recorder[int], tc.submitted)
			var ctxs []*fakeCtx
			for i := range tc.submitted {
				c := newFakeCtx(t, l)
				ctxs = append(ctxs, c)
				Await(c, Blocking(gated(release, seen, i), OnPool(p), Name("db")), results[i].fn)
				if i < tc.accepted {
					require.Equal(t, 1, c.suspended, "call %d accepted", i)
					continue
				}
				// Rejected: synchronously, without suspending or blocking.
				require.Zero(t, c.suspended, "call %d", i)
				require.Equal(t, 1, results[i].calls)
				require.ErrorIs(t, results[i].err, ErrOverloaded)
				require.True(t, strings.HasPrefix(results[i].err.Error(), "db: "))
			}
			s := p.Stats()
			require.Equal(t, uint64(tc.submitted-tc.accepted), s.Rejected)
			require.Equal(t, tc.cfg.Workers, s.Busy)
			close(release)
			runPosted(t, l, tc.accepted)
			for i := range tc.accepted {
				require.Equal(t, 1, results[i].calls)
				require.Equal(t, i, results[i].v)
			}
			testenv.Eventually(t, 5*time.Second, "completions counted", func() bool { return p.Stats().Completed == uint64(tc.accepted) })
		})
	}
}

func TestBlockingQueuedAndCancelledNeverRuns(t *testing.T) {
	t.Parallel()
	p := NewPool(PoolConfig{Workers: 1, Queue: 1})
	closePool(t, p)
	l, _ := newManual()
	release := make(chan struct{})
	seen := make(chan error, 1)
	Await(newFakeCtx(t, l), Blocking(gated(release, seen, 1), OnPool(p)), nil, Timeout(time.Hour))
	var ran atomic.Bool
	var r recorder[int]
	Await(newFakeCtx(t, l), Blocking(func(context.Context) (int, error) { ran.Store(true); return 2, nil }, OnPool(p)),
		r.fn, Timeout(time.Second))
	require.Equal(t, 1, p.Stats().Queued)
	l.Advance(time.Second)
	require.ErrorIs(t, r.err, ErrTimeout)
	close(release)
	runPosted(t, l, 1)
	testenv.Eventually(t, 5*time.Second, "queue drained", func() bool { s := p.Stats(); return s.Busy == 0 && s.Queued == 0 })
	require.False(t, ran.Load(), "a call cancelled while queued never runs")
	s := p.Stats()
	require.Equal(t, uint64(1), s.Completed)
	require.Equal(t, uint64(1), s.Dropped)
}

func TestBlockingPanicBecomesError(t *testing.T) {
	t.Parallel()
	p := NewPool(PoolConfig{Workers: 1})
	closePool(t, p)
	l, _ := newManual()
	var r recorder[int]
	Launch(l, Blocking(func(context.Context) (int, error) { panic("driver bug") }, OnPool(p), Name("db")), r.fn)
	runPosted(t, l, 1)
	require.ErrorIs(t, r.err, ErrPanic)
	require.Contains(t, r.err.Error(), "driver bug")
	// The worker survived and the pool still works.
	var r2 recorder[int]
	Launch(l, Blocking(func(context.Context) (int, error) { return 3, nil }, OnPool(p)), r2.fn)
	runPosted(t, l, 1)
	require.Equal(t, 3, r2.v)
}

func TestPoolCloseWaitsForCalls(t *testing.T) {
	t.Parallel()
	p := NewPool(PoolConfig{Workers: 1, Queue: 4})
	l, _ := newManual()
	release := make(chan struct{})
	seen := make(chan error, 2)
	var r1, r2 recorder[int]
	Launch(l, Blocking(gated(release, seen, 1), OnPool(p)), r1.fn)
	Launch(l, Blocking(gated(release, seen, 2), OnPool(p)), r2.fn) // queued
	closed := make(chan error)
	go func() { closed <- p.Close(context.Background()) }()
	testenv.Eventually(t, 5*time.Second, "pool closed", func() bool { p.mu.Lock(); defer p.mu.Unlock(); return p.closed })
	var r3 recorder[int]
	Launch(l, Blocking(func(context.Context) (int, error) { return 0, nil }, OnPool(p)), r3.fn)
	require.ErrorIs(t, r3.err, ErrClosed, "new calls fail at once after Close")
	close(release)
	require.NoError(t, testenv.Wait(t, 5*time.Second, closed, "Close"))
	runPosted(t, l, 2)
	require.Equal(t, 1, r1.v)
	require.Equal(t, 2, r2.v, "a queued call still runs on a graceful Close")
	require.Equal(t, PoolStats{Completed: 2}, p.Stats())
	require.NoError(t, p.Close(context.Background()), "Close is idempotent")
}

func TestPoolCloseDeadline(t *testing.T) {
	t.Parallel()
	p := NewPool(PoolConfig{Workers: 1, Queue: 4})
	l, _ := newManual()
	seen := make(chan error, 2)
	started := make(chan struct{})
	var r1, r2 recorder[int]
	Launch(l, Blocking(gatedStarted(nil, seen, started, 1), OnPool(p)), r1.fn)
	Launch(l, Blocking(gated(nil, seen, 2), OnPool(p)), r2.fn) // queued
	testenv.Wait(t, 5*time.Second, started, "fn running")
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // the deadline is already over
	require.ErrorIs(t, p.Close(ctx), context.Canceled)
	require.ErrorIs(t, testenv.Wait(t, 5*time.Second, seen, "running fn"), context.Canceled, "the running call is interrupted")
	runPosted(t, l, 2)
	require.ErrorIs(t, r1.err, context.Canceled)
	require.ErrorIs(t, r2.err, ErrClosed, "the queued call is completed without running")
	require.NoError(t, p.Close(context.Background()), "the worker exits once its call returned")
	s := p.Stats()
	require.Zero(t, s.Workers)
	require.Equal(t, uint64(1), s.Dropped)
}

func TestPoolIdleWorkersExit(t *testing.T) {
	t.Parallel()
	p := NewPool(PoolConfig{Workers: 4, IdleTimeout: 5 * time.Millisecond})
	closePool(t, p)
	l, _ := newManual()
	for round := range 2 { // a pool that emptied itself starts workers again
		release := make(chan struct{})
		seen := make(chan error, 3)
		for i := range 3 {
			Launch(l, Blocking(gated(release, seen, i), OnPool(p)), nil)
		}
		require.Equal(t, 3, p.Stats().Workers, "round %d: workers start on demand", round)
		close(release)
		runPosted(t, l, 3)
		testenv.Eventually(t, 5*time.Second, "idle workers exit", func() bool { return p.Stats().Workers == 0 })
	}
	require.Equal(t, uint64(6), p.Stats().Completed)
}

func TestPoolConcurrentLoops(t *testing.T) {
	t.Parallel()
	const loops, perLoop = 3, 200
	p := NewPool(PoolConfig{Workers: 4, Queue: 32})
	closePool(t, p)
	var ok, overloaded atomic.Int64
	var wg sync.WaitGroup
	wg.Add(loops * perLoop)
	for range loops {
		l := testenv.StartLoop(t)
		for i := range perLoop {
			require.NoError(t, l.Post(func() {
				c := newFakeCtx(t, l)
				Await(c, Blocking(func(context.Context) (int, error) { return i, nil }, OnPool(p)),
					func(v int, err error) {
						defer wg.Done()
						switch {
						case err == nil && v == i:
							ok.Add(1)
						case errors.Is(err, ErrOverloaded):
							overloaded.Add(1)
						default:
							t.Errorf("unexpected outcome %d, %v", v, err)
						}
					})
			}))
		}
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	testenv.Wait(t, 5*time.Second, done, "every await resumed")
	testenv.Eventually(t, 5*time.Second, "completions counted", func() bool { return p.Stats().Completed == uint64(ok.Load()) })
	require.Equal(t, uint64(overloaded.Load()), p.Stats().Rejected)
	require.Equal(t, int64(loops*perLoop), ok.Load()+overloaded.Load())
}

func TestDefaultPool(t *testing.T) {
	t.Parallel()
	require.Same(t, DefaultPool(), DefaultPool())
	l, _ := newManual()
	var r recorder[string]
	Launch(l, Blocking(func(context.Context) (string, error) { return "default", nil }), r.fn)
	runPosted(t, l, 1)
	require.Equal(t, "default", r.v)
}

func TestNewPoolDefaults(t *testing.T) {
	t.Parallel()
	p := NewPool(PoolConfig{})
	require.Greater(t, p.workers, 0)
	require.Equal(t, 4096, p.queue)
	require.Equal(t, DefaultIdleTimeout, p.idle)
	require.Zero(t, NewPool(PoolConfig{Queue: -1}).queue)
	require.Equal(t, PoolStats{}, p.Stats(), "a new pool runs no goroutine")
	require.NoError(t, p.Close(context.Background()))
}

// No goroutine, pool slot or timer outlives a Blocking op, whatever its end.
func TestBlockingLeavesNothingBehind(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		fn      func(ctx context.Context) (int, error)
		end     func(l *reactor.Loop, c *fakeCtx) // after the op started
		busy    bool                              // hold the only worker first: overload
		wantErr error                             // nil: success; errNone: no resume
	}{
		{name: "success", fn: func(context.Context) (int, error) { return 1, nil }},
		{name: "error", fn: func(context.Context) (int, error) { return 0, errTest }, wantErr: errTest},
		{name: "timeout", fn: waitCtx, end: func(l *reactor.Loop, _ *fakeCtx) { l.Advance(time.Second) }, wantErr: ErrTimeout},
		{name: "context ended", fn: waitCtx, end: func(_ *reactor.Loop, c *fakeCtx) { c.end() }, wantErr: errNone},
		{name: "overload", fn: waitCtx, busy: true, wantErr: ErrOverloaded},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := NewPool(PoolConfig{Workers: 1, Queue: -1, IdleTimeout: time.Millisecond})
			closePool(t, p)
			l, _ := newManual()
			release := make(chan struct{})
			if tc.busy {
				Launch(l, Blocking(gated(release, make(chan error, 1), 0), OnPool(p)), nil)
			}
			c := newFakeCtx(t, l)
			var r recorder[int]
			Await(c, Blocking(tc.fn, OnPool(p)), r.fn, Timeout(time.Second))
			if tc.end != nil {
				tc.end(l, c)
			}
			close(release)
			testenv.Eventually(t, 5*time.Second, "no worker left", func() bool {
				s := p.Stats()
				return s.Workers == 0 && s.Busy == 0 && s.Queued == 0
			})
			l.RunPending() // late results, if any, are dropped
			l.Advance(time.Hour)
			require.Zero(t, l.Timers())
			require.Zero(t, l.Pending())
			switch tc.wantErr {
			case nil:
				require.Equal(t, 1, r.calls)
				require.NoError(t, r.err)
			case errNone:
				require.Zero(t, r.calls)
			default:
				require.Equal(t, 1, r.calls)
				require.ErrorIs(t, r.err, tc.wantErr)
			}
		})
	}
}

// errNone marks a case where the resume must not run.
var errNone = errors.New("no resume")

func waitCtx(ctx context.Context) (int, error) { <-ctx.Done(); return 0, ctx.Err() }
