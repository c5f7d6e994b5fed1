package async

import (
	"context"
	"reflect"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/asyncsip/asyncsip/reactor"
)

// interceptedCtx is a fakeCtx with an Interceptor.
type interceptedCtx struct {
	*fakeCtx
	f Interceptor
}

func (c *interceptedCtx) Interceptor() Interceptor { return c.f }

// describedOp is a manualOp that describes itself, as module ops do.
type describedOp struct {
	manualOp[string]
	desc string
}

func (o *describedOp) Describe() string { return o.desc }

// grab returns an Interceptor that handles every await and keeps it.
func grab(got *[]*Intercepted) Interceptor {
	return func(a *Intercepted) bool { *got = append(*got, a); return true }
}

func TestInterceptHandledSuspendsAndCompletes(t *testing.T) {
	t.Parallel()
	l, _ := newManual()
	var got []*Intercepted
	c := &interceptedCtx{newFakeCtx(t, l), grab(&got)}
	op := &describedOp{desc: "db.query: SELECT gw FROM lcr"}
	var r recorder[string]
	Await(c, op, r.fn, Name("lcr"), Timeout(2*time.Second))

	require.Len(t, got, 1)
	a := got[0]
	require.Zero(t, op.starts, "a handled op is never started")
	require.Equal(t, 1, c.suspended, "the context suspends as for a real op")
	require.Zero(t, r.calls)
	require.Equal(t, "lcr", a.Name)
	require.Equal(t, "db.query: SELECT gw FROM lcr", a.Desc)
	require.Equal(t, reflect.TypeFor[string](), a.Type)
	require.Equal(t, 2*time.Second, a.Timeout)
	require.Same(t, op, a.Op)
	require.Same(t, c, a.Context)
	require.Same(t, l, a.Loop())
	require.True(t, a.Pending())
	require.False(t, a.Finished())

	var finished []error
	a.OnFinish(func(err error) { finished = append(finished, err) })
	require.NoError(t, a.Complete("sip:gw1@10.0.0.1", nil))
	require.Equal(t, 1, r.calls, "the resume runs inside Complete")
	require.Equal(t, "sip:gw1@10.0.0.1", r.v)
	require.NoError(t, r.err)
	require.Equal(t, []error{nil}, finished)
	require.True(t, a.Finished())
	require.False(t, a.Pending())
	require.Zero(t, l.Timers(), "the timeout timer is stopped")

	require.ErrorIs(t, a.Complete("again", nil), ErrNotPending)
	require.Equal(t, 1, r.calls)
}

func TestInterceptCompletion(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		v        any
		err      error
		wantV    int
		wantErr  error // what the resume gets
		complErr error // what Complete returns
	}{
		{"value", 42, nil, 42, nil, nil},
		{"error", nil, errTest, 0, errTest, nil},
		{"nil value is the zero value", nil, nil, 0, nil, nil},
		{"wrong type", "42", nil, 0, ErrResultType, ErrResultType},
		{"wrong type with an error", int64(1), errTest, 0, ErrResultType, ErrResultType},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, _ := newManual()
			var got []*Intercepted
			c := &interceptedCtx{newFakeCtx(t, l), grab(&got)}
			var r recorder[int]
			Await(c, &manualOp[int]{}, r.fn)
			err := got[0].Complete(tc.v, tc.err)
			if tc.complErr == nil {
				require.NoError(t, err)
			} else {
				require.ErrorIs(t, err, tc.complErr)
				require.Contains(t, err.Error(), "the resume takes int")
			}
			require.Equal(t, 1, r.calls)
			require.Equal(t, tc.wantV, r.v)
			if tc.wantErr == nil {
				require.NoError(t, r.err)
			} else {
				require.ErrorIs(t, r.err, tc.wantErr)
			}
			require.Equal(t, r.err, got[0].Err())
		})
	}
}

func TestInterceptInterfaceResult(t *testing.T) {
	t.Parallel()
	l, _ := newManual()
	var got []*Intercepted
	c := &interceptedCtx{newFakeCtx(t, l), grab(&got)}
	var r recorder[error]
	Await(c, &manualOp[error]{}, r.fn)
	require.NoError(t, got[0].Complete(errTest, nil), "a value implementing the interface type is accepted")
	require.Equal(t, errTest, r.v)
}

func TestInterceptTimeoutAndAbort(t *testing.T) {
	t.Parallel()
	l, _ := newManual()
	var got []*Intercepted
	c := &interceptedCtx{newFakeCtx(t, l), grab(&got)}
	var r recorder[int]
	var finished []error
	Await(c, &manualOp[int]{}, r.fn, Timeout(time.Second))
	got[0].OnFinish(func(err error) { finished = append(finished, err) })
	l.Advance(time.Second)
	require.Equal(t, 1, r.calls)
	require.ErrorIs(t, r.err, ErrTimeout)
	require.Len(t, finished, 1)
	require.ErrorIs(t, finished[0], ErrTimeout)
	require.ErrorIs(t, got[0].Complete(1, nil), ErrNotPending, "too late")
	require.Equal(t, 1, r.calls)

	// The context ends while the second await waits: no resume, the
	// outcome is ErrCancelled.
	var r2 recorder[int]
	Await(c, &manualOp[int]{}, r2.fn)
	got[1].OnFinish(func(err error) { finished = append(finished, err) })
	c.end()
	require.Zero(t, r2.calls)
	require.Len(t, finished, 2)
	require.ErrorIs(t, finished[1], ErrCancelled)
	require.ErrorIs(t, got[1].Err(), ErrCancelled)
	require.ErrorIs(t, got[1].Complete(1, nil), ErrNotPending)
	require.Zero(t, r2.calls)
}

func TestInterceptNotHandledRunsTheRealOp(t *testing.T) {
	t.Parallel()
	l, _ := newManual()
	var seen []*Intercepted
	c := &interceptedCtx{newFakeCtx(t, l), func(a *Intercepted) bool { seen = append(seen, a); return false }}
	obs := &fakeObserver{}

	var r recorder[struct{}]
	Await(c, Sleep(3*time.Second), r.fn, Observe(obs), Name("nap"))
	require.Len(t, seen, 1)
	require.Equal(t, "async.sleep: 3s", seen[0].Desc)
	require.False(t, seen[0].Pending(), "not handled: nothing to complete")
	require.ErrorIs(t, seen[0].Complete(struct{}{}, nil), ErrNotPending)
	var finished []error
	seen[0].OnFinish(func(err error) { finished = append(finished, err) })
	l.Advance(3 * time.Second)
	require.Equal(t, 1, r.calls, "the real op ran on the loop's clock")
	require.NoError(t, r.err)
	require.Equal(t, []error{nil}, finished)
	require.Equal(t, []string{"nap"}, obs.started, "the await's own observer still sees it")
	require.Len(t, obs.finished, 1)

	var r2 recorder[int]
	Await(c, Done(5, nil), r2.fn)
	require.Equal(t, "async.done", seen[1].Desc)
	require.Equal(t, 1, r2.calls, "a synchronous op still resumes inline")
	require.Equal(t, 5, r2.v)
	require.Equal(t, 1, c.suspended, "sleep and done: only the sleep suspended")
}

func TestInterceptCompleteInsideInterceptorIsSynchronous(t *testing.T) {
	t.Parallel()
	l, _ := newManual()
	for _, handled := range []bool{true, false} {
		c := &interceptedCtx{newFakeCtx(t, l), func(a *Intercepted) bool {
			require.NoError(t, a.Complete(7, nil))
			return handled // a completed await is not started, whatever f says
		}}
		op := &manualOp[int]{}
		var r recorder[int]
		Await(c, op, r.fn)
		require.Equal(t, 1, r.calls)
		require.Equal(t, 7, r.v)
		require.Zero(t, op.starts)
		require.Zero(t, c.suspended)
		require.Zero(t, l.Timers())
	}
}

func TestInterceptDescriptions(t *testing.T) {
	t.Parallel()
	l, _ := newManual()
	var got []*Intercepted
	fn := func(context.Context) (int, error) { return 1, nil }
	for _, op := range []Op[int]{
		Blocking(fn),
		Blocking(fn, Name("lcr")),
		OpFunc[int](func(*reactor.Loop, func(int, error)) func() { return nil }),
	} {
		Await(&interceptedCtx{newFakeCtx(t, l), grab(&got)}, op, nil)
	}
	require.Equal(t, "async.blocking", got[0].Desc)
	require.Equal(t, "async.blocking: lcr", got[1].Desc)
	require.Equal(t, "", got[2].Desc, "an op that does not describe itself")
	for _, a := range got {
		require.NoError(t, a.Complete(1, nil))
	}
}

func TestInterceptNilOpOrInterceptor(t *testing.T) {
	t.Parallel()
	l, _ := newManual()
	calls := 0
	c := &interceptedCtx{newFakeCtx(t, l), func(*Intercepted) bool { calls++; return true }}
	var r recorder[int]
	Await(c, nil, r.fn)
	require.ErrorIs(t, r.err, ErrNilOp, "a nil op is not offered")
	require.Zero(t, calls)

	c.f = nil // no interceptor: the op runs as usual
	op := &manualOp[int]{}
	Await(c, op, r.fn)
	require.Equal(t, 1, op.starts)
	op.done(1, nil)
	require.Equal(t, 2, r.calls)
}

func TestInterceptPanicIsAnError(t *testing.T) {
	t.Parallel()
	l, _ := newManual()
	c := &interceptedCtx{newFakeCtx(t, l), func(*Intercepted) bool { panic("interceptor bug") }}
	var r recorder[int]
	Await(c, &manualOp[int]{}, r.fn)
	require.ErrorIs(t, r.err, ErrPanic)
}
