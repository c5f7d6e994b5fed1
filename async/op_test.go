package async

import (
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/asyncsip/asyncsip/reactor"
)

func TestSleepOnManualLoop(t *testing.T) {
	t.Parallel()
	l, clk := newManual()
	start := clk.Now()
	var woke time.Time
	Launch(l, Sleep(1500*time.Millisecond), func(struct{}, error) { woke = l.Now() })
	require.Equal(t, 1, l.Timers(), "a Sleep within the timeout is the launch's own timer")
	l.Advance(1499 * time.Millisecond)
	require.True(t, woke.IsZero())
	l.Advance(time.Millisecond)
	require.Equal(t, 1500*time.Millisecond, woke.Sub(start))
	require.Zero(t, l.Timers(), "the sleep and the launch timeout are both gone")
}

func TestSleepCancelStopsTimer(t *testing.T) {
	t.Parallel()
	l, _ := newManual()
	c := newFakeCtx(t, l)
	var r recorder[struct{}]
	Await(c, Sleep(time.Hour), r.fn, Timeout(time.Second))
	require.Equal(t, 2, l.Timers(), "the sleep and the await timeout")
	l.Advance(time.Second)
	require.ErrorIs(t, r.err, ErrTimeout)
	require.Zero(t, l.Timers(), "the cancelled sleep left no timer behind")
}

// An awaited Sleep runs on the await's own timer (one timer, armed for the
// sleep): it resumes with success at the sleep's end, also when the sleep
// equals the timeout, and reports the sleep as its latency.
func TestAwaitSleepUsesTheAwaitTimer(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name         string
		sleep, bound time.Duration
	}{{"shorter", 20 * time.Millisecond, time.Second}, {"equal", time.Second, time.Second}} {
		t.Run(tc.name, func(t *testing.T) {
			l, clk := newManual()
			start := clk.Now()
			c := newFakeCtx(t, l)
			obs := &fakeObserver{}
			var r recorder[struct{}]
			var woke time.Time
			Await(c, Sleep(tc.sleep), func(v struct{}, err error) { woke = l.Now(); r.fn(v, err) },
				Timeout(tc.bound), Observe(obs), Name("nap"))
			require.Equal(t, 1, l.Timers(), "one timer: the sleep is the await's timer")
			require.Equal(t, 1, c.suspended)
			l.Advance(tc.sleep - time.Millisecond)
			require.Zero(t, r.calls)
			l.Advance(time.Millisecond)
			require.Equal(t, 1, r.calls)
			require.NoError(t, r.err)
			require.Equal(t, tc.sleep, woke.Sub(start))
			require.Equal(t, 1, c.resumed)
			require.Zero(t, l.Timers())
			require.Equal(t, []finishedOp{{"nap", tc.sleep, nil}}, obs.finished)
		})
	}
}

// A Sleep longer than the timeout is started as an op and times out.
func TestAwaitSleepLongerThanTimeout(t *testing.T) {
	t.Parallel()
	l, _ := newManual()
	c := newFakeCtx(t, l)
	var r recorder[struct{}]
	Await(c, Sleep(2*time.Second), r.fn, Timeout(time.Second))
	require.Equal(t, 2, l.Timers(), "the sleep's own timer and the await timeout")
	l.Advance(time.Second)
	require.Equal(t, 1, r.calls)
	require.ErrorIs(t, r.err, ErrTimeout)
	require.Zero(t, l.Timers())
}

// A context that ends during an awaited Sleep stops its timer: no resume.
func TestAwaitSleepAbortStopsTimer(t *testing.T) {
	t.Parallel()
	l, _ := newManual()
	c := newFakeCtx(t, l)
	var r recorder[struct{}]
	Await(c, Sleep(time.Second), r.fn)
	require.Equal(t, 1, l.Timers())
	c.end()
	require.Zero(t, l.Timers(), "the abort stopped the sleep")
	l.Advance(2 * time.Second)
	require.Zero(t, r.calls)
	require.Equal(t, 0, c.stale)
}

func TestSleepZeroIsSynchronous(t *testing.T) {
	t.Parallel()
	l, _ := newManual()
	c := newFakeCtx(t, l)
	for _, d := range []time.Duration{0, -time.Second} {
		var r recorder[struct{}]
		Await(c, Sleep(d), r.fn)
		require.Equal(t, 1, r.calls)
	}
	require.Zero(t, c.suspended)
}

func TestMap(t *testing.T) {
	t.Parallel()
	itoa := func(v int) (string, error) { return strconv.Itoa(v), nil }
	l, _ := newManual()
	for _, tc := range []struct {
		name    string
		op      Op[string]
		want    string
		wantErr error
	}{
		{"value", Map(Done(42, nil), itoa), "42", nil},
		{"error passes through without f", Map(Done(1, errTest), func(int) (string, error) {
			t.Error("f called on error")
			return "", nil
		}), "", errTest},
		{"f fails", Map(Done(1, nil), func(int) (string, error) { return "", errTest }), "", errTest},
		{"nil op", Map[int](nil, itoa), "", ErrNilOp},
		{"nil f", Map[int, string](Done(1, nil), nil), "", ErrNilOp},
	} {
		var r recorder[string]
		Launch(l, tc.op, r.fn)
		require.Equal(t, 1, r.calls, tc.name)
		require.Equal(t, tc.want, r.v, tc.name)
		if tc.wantErr != nil {
			require.ErrorIs(t, r.err, tc.wantErr, tc.name)
		}
	}
}

func TestThen(t *testing.T) {
	t.Parallel()
	double := func(v int) Op[int] { return Done(v*2, nil) }
	after := func(d time.Duration) func(int) Op[int] {
		return func(v int) Op[int] {
			return Map(Sleep(d), func(struct{}) (int, error) { return v + 1, nil })
		}
	}
	for _, tc := range []struct {
		name    string
		op      func(first *manualOp[int]) Op[int]
		steps   func(l *reactor.Loop, first *manualOp[int])
		want    int
		wantErr error
	}{
		{"both sync", func(*manualOp[int]) Op[int] { return Then(Done(3, nil), double) }, nil, 6, nil},
		{"async then sync", func(f *manualOp[int]) Op[int] { return Then(f, double) },
			func(l *reactor.Loop, f *manualOp[int]) { f.done(4, nil) }, 8, nil},
		{"sync then async", func(*manualOp[int]) Op[int] { return Then(Done(1, nil), after(time.Second)) },
			func(l *reactor.Loop, _ *manualOp[int]) { l.Advance(time.Second) }, 2, nil},
		{"first fails", func(f *manualOp[int]) Op[int] {
			return Then(f, func(int) Op[int] { t.Error("next called after an error"); return nil })
		}, func(l *reactor.Loop, f *manualOp[int]) { f.done(0, errTest) }, 0, errTest},
		{"next returns nil", func(*manualOp[int]) Op[int] { return Then(Done(1, nil), func(int) Op[int] { return nil }) },
			nil, 0, ErrNilOp},
		{"nil next", func(*manualOp[int]) Op[int] { return Then[int, int](Done(1, nil), nil) }, nil, 0, ErrNilOp},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, _ := newManual()
			first := &manualOp[int]{}
			var r recorder[int]
			Launch(l, tc.op(first), r.fn)
			if tc.steps != nil {
				tc.steps(l, first)
			}
			require.Equal(t, 1, r.calls)
			require.Equal(t, tc.want, r.v)
			if tc.wantErr != nil {
				require.ErrorIs(t, r.err, tc.wantErr)
			} else {
				require.NoError(t, r.err)
			}
			require.Zero(t, l.Timers())
		})
	}
}

func TestThenCancelReachesTheRunningStage(t *testing.T) {
	t.Parallel()
	l, _ := newManual()
	first, second := &manualOp[int]{}, &manualOp[int]{}
	c := newFakeCtx(t, l)

	// Cancelled during the first stage.
	var r recorder[int]
	Await(c, Then(first, func(int) Op[int] { return second }), r.fn, Timeout(time.Second))
	l.Advance(time.Second)
	require.ErrorIs(t, r.err, ErrTimeout)
	require.Equal(t, 1, first.cancels)
	first.done(1, nil) // late: must not start the second stage
	require.Zero(t, second.starts)

	// Cancelled during the second stage.
	first2 := &manualOp[int]{}
	var r2 recorder[int]
	Await(c, Then(first2, func(int) Op[int] { return second }), r2.fn, Timeout(time.Second))
	first2.done(1, nil)
	require.Equal(t, 1, second.starts)
	l.Advance(time.Second)
	require.ErrorIs(t, r2.err, ErrTimeout)
	require.Zero(t, first2.cancels, "the finished first stage is not cancelled")
	require.Equal(t, 1, second.cancels)
	second.done(2, nil)
	require.Equal(t, 1, r2.calls)
}

func TestPostDoneOnClosedLoop(t *testing.T) {
	t.Parallel()
	l, _ := newManual()
	require.NoError(t, l.Stop(t.Context()))
	err := PostDone(l, func(int, error) { t.Error("ran on a closed loop") }, 1, nil)
	require.ErrorIs(t, err, reactor.ErrClosed)
}

func TestErrorsWrapping(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		err  error
		is   []error
		text string
	}{
		{wrap("", ErrOverloaded), []error{ErrOverloaded}, "async: overloaded"},
		{wrap("db", ErrOverloaded), []error{ErrOverloaded}, "db: async: overloaded"},
		{timeoutError("", time.Second), []error{ErrTimeout}, "after 1s: async: timeout"},
		{suspendError("", errTest), []error{ErrNotSuspendable, errTest}, "async: cannot suspend: test error"},
		{suspendError("x", nil), []error{ErrNotSuspendable}, "x: async: cannot suspend"},
		{panicError("x", "boom"), []error{ErrPanic}, "x: async: op panicked: boom"},
	} {
		for _, target := range tc.is {
			require.True(t, errors.Is(tc.err, target), "%v is %v", tc.err, target)
		}
		require.Equal(t, tc.text, tc.err.Error())
	}
}
