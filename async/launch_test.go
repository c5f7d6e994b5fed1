package async

import (
	"context"
	"github.com/asyncsip/asyncsip/internal/testenv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/asyncsip/asyncsip/reactor"
)

func TestLaunchReportsExactlyOnce(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		op   func() (Op[int], func()) // the op and what completes it (nil: never)
		opts []Option
		// when the report is expected, measured from Launch
		at      time.Duration
		want    int
		wantErr error
	}{
		{name: "sync completion still reports", op: func() (Op[int], func()) { return Done(5, nil), nil }, want: 5},
		{name: "sync error", op: func() (Op[int], func()) { return Done(0, errTest), nil }, wantErr: errTest},
		{name: "nil op", op: func() (Op[int], func()) { return nil, nil }, wantErr: ErrNilOp},
		{name: "async completion", at: 3 * time.Second, want: 1, op: func() (Op[int], func()) {
			return Map(Sleep(3*time.Second), func(struct{}) (int, error) { return 1, nil }), nil
		}},
		{name: "explicit timeout", at: time.Second, wantErr: ErrTimeout, opts: []Option{Timeout(time.Second)},
			op: func() (Op[int], func()) { o := &manualOp[int]{}; return o, func() { o.done(9, nil) } }},
		{name: "default timeout", at: DefaultTimeout, wantErr: ErrTimeout,
			op: func() (Op[int], func()) { o := &manualOp[int]{}; return o, func() { o.done(9, nil) } }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, _ := newManual()
			op, late := tc.op()
			var r recorder[int]
			Launch(l, op, r.fn, tc.opts...)
			if tc.at > 0 {
				require.Zero(t, r.calls)
				l.Advance(tc.at - time.Nanosecond)
				require.Zero(t, r.calls)
				l.Advance(time.Nanosecond)
			}
			require.Equal(t, 1, r.calls)
			require.Equal(t, tc.want, r.v)
			if tc.wantErr != nil {
				require.ErrorIs(t, r.err, tc.wantErr)
			} else {
				require.NoError(t, r.err)
			}
			if late != nil {
				late() // a completion after the timeout is dropped
			}
			l.Advance(time.Hour)
			require.Equal(t, 1, r.calls)
			require.Zero(t, l.Timers())
			if m, ok := op.(*manualOp[int]); ok {
				require.Equal(t, 1, m.cancels, "a timed-out launch cancels its op")
			}
		})
	}
}

func TestLaunchBadInput(t *testing.T) {
	t.Parallel()
	var r recorder[int]
	Launch(nil, Done(1, nil), r.fn)
	require.Equal(t, 1, r.calls)
	require.ErrorIs(t, r.err, ErrNotSuspendable)

	l, _ := newManual()
	Launch(l, Sleep(time.Second), nil) // nil report: fine
	Launch[int](l, nil, nil)
	l.Advance(time.Second)
	require.Zero(t, l.Timers())
}

func TestLaunchObserver(t *testing.T) {
	t.Parallel()
	l, _ := newManual()
	obs := &fakeObserver{}
	Launch(l, Sleep(2*time.Second), nil, Observe(obs), Name("job"))
	l.Advance(2 * time.Second)
	require.Equal(t, []string{"job"}, obs.started)
	require.Equal(t, []finishedOp{{"job", 2 * time.Second, nil}}, obs.finished)
}

func TestLaunchGroup(t *testing.T) {
	t.Parallel()
	g, err := reactor.NewGroup(2, reactor.Config{})
	require.NoError(t, err)
	g.Start()
	type outcome struct {
		v    int
		err  error
		loop int
	}
	got := make(chan outcome, 2)
	for i := range 2 {
		var loopID int
		op := OpFunc[int](func(l *reactor.Loop, done func(int, error)) func() {
			loopID = l.ID()
			if i == 0 {
				done(10, nil) // synchronous
				return nil
			}
			go func() { _ = PostDone(l, done, 20, nil) }() // from another goroutine
			return nil
		})
		err := LaunchGroup(g, op, func(v int, err error) { got <- outcome{v, err, loopID} })
		require.NoError(t, err)
	}
	sum := 0
	for range 2 {
		o := testenv.Wait(t, 5*time.Second, got, "launch report")
		require.NoError(t, o.err)
		sum += o.v
	}
	require.Equal(t, 30, sum)

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	require.NoError(t, g.Stop(ctx))
	require.ErrorIs(t, LaunchGroup(g, Done(1, nil), nil), reactor.ErrClosed)
	require.ErrorIs(t, LaunchGroup[int](nil, Done(1, nil), nil), ErrNoLoop)
}
