package async

import (
	"errors"
	"github.com/asyncsip/asyncsip/internal/testenv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/asyncsip/asyncsip/reactor"
)

func TestAwaitSyncCompletionResumesInline(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		op      Op[int]
		want    int
		wantErr error
	}{
		{"done value", Done(7, nil), 7, nil},
		{"done error", Done(0, errTest), 0, errTest},
		{"opfunc calls done in Start", OpFunc[int](func(_ *reactor.Loop, done func(int, error)) func() {
			done(3, nil)
			return func() { t.Error("cancel of a completed op called") }
		}), 3, nil},
		{"map of done", Map(Done(2, nil), func(v int) (int, error) { return v * 10, nil }), 20, nil},
		{"nil op", nil, 0, ErrNilOp},
		{"nil opfunc", OpFunc[int](nil), 0, ErrNilOp},
		{"panicking op", OpFunc[int](func(*reactor.Loop, func(int, error)) func() { panic("boom") }), 0, ErrPanic},
		{"blocking nil fn", Blocking[int](nil), 0, ErrNilOp},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, _ := newManual()
			c := newFakeCtx(t, l)
			var r recorder[int]
			Await(c, tc.op, r.fn)
			require.Equal(t, 1, r.calls, "resume runs inline, before Await returns")
			require.Equal(t, tc.want, r.v)
			if tc.wantErr == nil {
				require.NoError(t, r.err)
			} else {
				require.ErrorIs(t, r.err, tc.wantErr)
			}
			require.Zero(t, c.suspended, "a synchronous op never suspends")
			require.Zero(t, l.Timers(), "no timeout timer for a synchronous op")
			l.Advance(time.Hour)
			require.Equal(t, 1, r.calls)
		})
	}
}

func TestAwaitAsyncCompletionResumesOnceOnLoop(t *testing.T) {
	t.Parallel()
	l, _ := newManual()
	c := newFakeCtx(t, l)
	op := &manualOp[string]{}
	var r recorder[string]
	Await(c, op, r.fn, Timeout(time.Second))
	require.Equal(t, 1, op.starts)
	require.Equal(t, 1, c.suspended)
	require.Zero(t, r.calls, "resume waits for the op")
	require.Equal(t, 1, l.Timers(), "the await is bounded by a timer")

	// The op completes from another goroutine: PostDone queues it on the loop.
	done := make(chan struct{})
	go func() { defer close(done); _ = PostDone(l, op.done, "ok", nil) }()
	testenv.Wait(t, 5*time.Second, done, "PostDone")
	require.Zero(t, r.calls, "nothing runs until the loop runs its tasks")
	l.RunPending()
	require.Equal(t, 1, r.calls)
	require.Equal(t, "ok", r.v)
	require.NoError(t, r.err)
	require.Equal(t, 1, c.resumed)
	require.Zero(t, l.Timers(), "completion stops the timer")
	require.Zero(t, op.cancels, "a completed op is not cancelled")

	op.done("again", errTest) // a duplicate completion is dropped
	l.Advance(time.Hour)
	require.Equal(t, 1, r.calls)
	require.Zero(t, c.stale, "nothing tried to resume twice")
}

func TestAwaitTimeout(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		opts    []Option
		after   time.Duration
		wantMsg string
	}{
		{"explicit with name", []Option{Timeout(2 * time.Second), Name("db.query")}, 2 * time.Second, "db.query after 2s: async: timeout"},
		{"default", nil, DefaultTimeout, "after 10s: async: timeout"},
		{"non-positive means default", []Option{Timeout(-1)}, DefaultTimeout, "after 10s"},
		{"last option wins", []Option{Timeout(time.Hour), Timeout(time.Millisecond)}, time.Millisecond, "after 1ms"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, _ := newManual()
			c := newFakeCtx(t, l)
			op := &manualOp[int]{}
			var r recorder[int]
			Await(c, op, r.fn, tc.opts...)
			l.Advance(tc.after - time.Nanosecond)
			require.Zero(t, r.calls, "not yet")
			l.Advance(time.Nanosecond)
			require.Equal(t, 1, r.calls, "the timeout resumes exactly once")
			require.ErrorIs(t, r.err, ErrTimeout)
			require.Contains(t, r.err.Error(), tc.wantMsg)
			require.Equal(t, 1, op.cancels, "the timed-out op is cancelled")
			require.Equal(t, 1, c.resumed)

			op.done(99, nil) // late completion: discarded
			l.Advance(time.Hour)
			require.Equal(t, 1, r.calls)
			require.Zero(t, r.v)
			require.Equal(t, 1, op.cancels)
			require.Zero(t, l.Timers())
		})
	}
}

func TestAwaitAbortCancelsOpAndNeverResumes(t *testing.T) {
	t.Parallel()
	l, _ := newManual()
	c := newFakeCtx(t, l)
	op := &manualOp[int]{}
	var r recorder[int]
	obs := &fakeObserver{}
	Await(c, op, r.fn, Name("slow"), Observe(obs))
	c.end() // the transaction ended while suspended
	require.Equal(t, 1, op.cancels)
	require.Zero(t, l.Timers(), "the timeout timer is stopped")
	op.done(1, nil)
	l.Advance(2 * DefaultTimeout)
	require.Zero(t, r.calls, "resume never runs after an abort")
	require.Zero(t, c.stale, "the late completion did not even try to resume")
	require.Len(t, obs.finished, 1)
	require.ErrorIs(t, obs.finished[0].err, ErrCancelled)
}

func TestAwaitAbortAfterTimeoutIsHarmless(t *testing.T) {
	t.Parallel()
	l, _ := newManual()
	c := newFakeCtx(t, l)
	c.refuse = true // the host ended the context but has not aborted yet
	op := &manualOp[int]{}
	var r recorder[int]
	Await(c, op, r.fn, Timeout(time.Second))
	l.Advance(time.Second)
	require.Zero(t, r.calls, "a refused Resume drops the continuation")
	require.Equal(t, 1, c.stale)
	require.Equal(t, 1, op.cancels)
	c.end() // abort hooks now run: nothing left to do
	require.Zero(t, r.calls)
	require.Equal(t, 1, op.cancels)
}

func TestAwaitRefusedResumeOnCompletion(t *testing.T) {
	t.Parallel()
	l, _ := newManual()
	c := newFakeCtx(t, l)
	c.refuse = true
	op := &manualOp[int]{}
	var r recorder[int]
	Await(c, op, r.fn)
	op.done(1, nil)
	require.Zero(t, r.calls)
	require.Zero(t, l.Timers())
	require.Zero(t, op.cancels, "a completed op is not cancelled")
}

func TestAwaitChained(t *testing.T) {
	t.Parallel()
	l, _ := newManual()
	c := newFakeCtx(t, l)
	var trail []string
	dest := "sip:a@x" // per-transaction state survives the jumps
	Await(c, Sleep(time.Second), func(struct{}, error) {
		trail = append(trail, "first:"+dest)
		dest = "sip:b@x"
		Await(c, Done("cached", nil), func(v string, err error) { // sync, inline
			trail = append(trail, "second:"+v)
			Await(c, Sleep(2*time.Second), func(_ struct{}, err error) {
				trail = append(trail, "third:"+dest)
			})
		})
	})
	l.Advance(time.Second)
	require.Equal(t, []string{"first:sip:a@x", "second:cached"}, trail)
	l.Advance(2 * time.Second)
	require.Equal(t, []string{"first:sip:a@x", "second:cached", "third:sip:b@x"}, trail)
	require.Equal(t, 2, c.suspended, "the synchronous await in the middle did not suspend")
	require.Equal(t, 2, c.resumed)
	require.Zero(t, l.Timers())
}

func TestAwaitChainedTimeoutThenAwait(t *testing.T) {
	t.Parallel()
	l, _ := newManual()
	c := newFakeCtx(t, l)
	first := &manualOp[int]{}
	var second recorder[int]
	Await(c, first, func(_ int, err error) {
		require.ErrorIs(t, err, ErrTimeout)
		Await(c, Map(Sleep(time.Second), func(struct{}) (int, error) { return 2, nil }), second.fn)
	}, Timeout(time.Second))
	l.Advance(time.Second)
	first.done(1, nil) // late, must not disturb the second await
	require.Zero(t, second.calls)
	l.Advance(time.Second)
	require.Equal(t, 1, second.calls)
	require.Equal(t, 2, second.v)
}

func TestAwaitSuspendFailure(t *testing.T) {
	t.Parallel()
	hostErr := errors.New("tm: final response already sent")
	for _, tc := range []struct {
		name    string
		setup   func(c *fakeCtx)
		wantErr []error
	}{
		{"host error", func(c *fakeCtx) { c.suspendErr = hostErr }, []error{ErrNotSuspendable, hostErr}},
		{"nil resumer", func(c *fakeCtx) { c.nilResumer = true }, []error{ErrNotSuspendable}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, _ := newManual()
			c := newFakeCtx(t, l)
			tc.setup(c)
			op := &manualOp[int]{}
			var r recorder[int]
			Await(c, op, r.fn, Name("q"))
			require.Equal(t, 1, r.calls, "resume runs inline with the error")
			for _, e := range tc.wantErr {
				require.ErrorIs(t, r.err, e)
			}
			require.True(t, strings.HasPrefix(r.err.Error(), "q: "), r.err.Error())
			require.Equal(t, 1, op.cancels, "the started op is cancelled")
			require.Zero(t, l.Timers())
			op.done(1, nil)
			require.Equal(t, 1, r.calls)
		})
	}
}

func TestAwaitCancelCompletingSynchronouslyIsDropped(t *testing.T) {
	t.Parallel()
	l, _ := newManual()
	c := newFakeCtx(t, l)
	c.suspendErr = errTest
	// An op whose cancel reports a completion at once must not resume twice.
	op := OpFunc[int](func(_ *reactor.Loop, done func(int, error)) func() {
		return func() { done(0, ErrCancelled) }
	})
	var r recorder[int]
	Await(c, op, r.fn)
	require.Equal(t, 1, r.calls)
	require.ErrorIs(t, r.err, ErrNotSuspendable)

	c2 := newFakeCtx(t, l)
	var r2 recorder[int]
	Await(c2, op, r2.fn, Timeout(time.Second))
	l.Advance(time.Second)
	require.Equal(t, 1, r2.calls)
	require.ErrorIs(t, r2.err, ErrTimeout)
}

func TestAwaitBadInput(t *testing.T) {
	t.Parallel()
	var r recorder[int]
	Await(nil, Done(1, nil), r.fn)
	require.Equal(t, 1, r.calls)
	require.ErrorIs(t, r.err, ErrNotSuspendable)

	var r2 recorder[int]
	Await(newFakeCtx(t, nil), Done(1, nil), r2.fn) // no loop
	require.ErrorIs(t, r2.err, ErrNotSuspendable)

	// A nil resume discards the outcome, synchronous or not.
	l, _ := newManual()
	c := newFakeCtx(t, l)
	Await(c, Done(1, nil), nil)
	Await(c, Sleep(time.Second), nil)
	l.Advance(time.Second)
	require.Equal(t, 1, c.resumed)
}

func TestAwaitObserver(t *testing.T) {
	t.Parallel()
	l, _ := newManual()
	obs := &fakeObserver{}
	c := newFakeCtx(t, l)
	c.obs = obs
	oc := observedCtx{c}

	Await(oc, Sleep(3*time.Second), nil, Name("sleep"))
	Await(oc, Done(1, errTest), nil, Name("sync"))
	l.Advance(3 * time.Second)
	Await(oc, &manualOp[int]{}, nil, Name("slow"), Timeout(time.Second))
	l.Advance(time.Second)
	Await(oc, Done(1, nil), nil, Observe(nil)) // per-call override: unobserved

	require.Equal(t, []string{"sleep", "sync", "slow"}, obs.started)
	require.Len(t, obs.finished, 3)
	require.Equal(t, finishedOp{"sync", 0, errTest}, obs.finished[0])
	require.Equal(t, finishedOp{"sleep", 3 * time.Second, nil}, obs.finished[1])
	require.Equal(t, "slow", obs.finished[2].name)
	require.Equal(t, time.Second, obs.finished[2].latency)
	require.ErrorIs(t, obs.finished[2].err, ErrTimeout)
}
