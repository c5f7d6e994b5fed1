package async

import (
	"context"
	"github.com/asyncsip/asyncsip/internal/testenv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// On a real loop, a completion posted from another goroutine runs before
// normal tasks that were queued earlier: resumes beat new work.
func TestResumeFromGoroutineBeatsEarlierNormalTasks(t *testing.T) {
	t.Parallel()
	l := testenv.StartLoop(t)
	var order []string // touched on the loop only
	op := &manualOp[int]{}
	testenv.OnLoop(t, l, func() {
		Await(newFakeCtx(t, l), op, func(v int, err error) { order = append(order, "resume") })
		// Keep the loop busy while another goroutine queues normal tasks and
		// then the completion.
		queued := make(chan struct{})
		go func() {
			defer close(queued)
			for range 3 {
				_ = l.Post(func() { order = append(order, "normal") })
			}
			_ = PostDone(l, op.done, 1, nil)
		}()
		<-queued
	})
	got := make(chan []string, 1)
	require.NoError(t, l.Post(func() { got <- append([]string(nil), order...) }))
	require.Equal(t, []string{"resume", "normal", "normal", "normal"}, testenv.Wait(t, 5*time.Second, got, "order"))
}

// The same for Blocking: the pool worker's result is posted urgently.
func TestBlockingResultBeatsEarlierNormalTasks(t *testing.T) {
	t.Parallel()
	p := NewPool(PoolConfig{Workers: 1})
	closePool(t, p)
	l := testenv.StartLoop(t)
	var order []string
	release := make(chan struct{})
	hold, holding := make(chan struct{}), make(chan struct{})
	testenv.OnLoop(t, l, func() {
		Await(newFakeCtx(t, l), Blocking(func(context.Context) (int, error) {
			<-release
			return 1, nil
		}, OnPool(p)), func(int, error) { order = append(order, "resume") })
		// The next task holds the loop until the normal tasks and the
		// result are all queued.
		_ = l.Post(func() { close(holding); <-hold })
	})
	testenv.Wait(t, 5*time.Second, holding, "loop held")
	for range 3 {
		require.NoError(t, l.Post(func() { order = append(order, "normal") }))
	}
	close(release)
	testenv.Eventually(t, 5*time.Second, "result queued", func() bool { return l.Pending() >= 4 })
	close(hold)
	got := make(chan []string, 1)
	require.NoError(t, l.Post(func() { got <- append([]string(nil), order...) }))
	require.Equal(t, []string{"resume", "normal", "normal", "normal"}, testenv.Wait(t, 5*time.Second, got, "order"))
}

// A timeout on a real loop: bounded by the loop's timer, not by the op.
func TestAwaitTimeoutOnRealLoop(t *testing.T) {
	t.Parallel()
	p := NewPool(PoolConfig{Workers: 1})
	closePool(t, p)
	l := testenv.StartLoop(t)
	got := make(chan error, 1)
	ctxErr := make(chan error, 1)
	testenv.OnLoop(t, l, func() {
		Await(newFakeCtx(t, l), Blocking(func(ctx context.Context) (int, error) {
			<-ctx.Done()
			ctxErr <- ctx.Err()
			return 0, ctx.Err()
		}, OnPool(p)), func(_ int, err error) { got <- err }, Timeout(20*time.Millisecond))
	})
	require.ErrorIs(t, testenv.Wait(t, 5*time.Second, got, "timeout resume"), ErrTimeout)
	// Either fn was running and its ctx is cancelled, or (on a loaded
	// machine, the worker started after the 20 ms) the call was cancelled
	// while queued and never runs — both are the op being cancelled.
	testenv.Eventually(t, 5*time.Second, "fn's ctx cancelled or the queued call dropped", func() bool {
		select {
		case err := <-ctxErr:
			require.ErrorIs(t, err, context.Canceled)
			ctxErr <- err
			return true
		default:
			return p.Stats().Dropped == 1
		}
	})
}
