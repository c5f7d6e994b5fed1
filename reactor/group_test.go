package reactor

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestEveryPolicies: a job whose first run stays busy while three more ticks
// arrive. In a manual group a run is "busy" from the tick that starts it to
// the end of its function; the first run lands on loop 1 (loop 0 has a task
// queued at every tick, so it is not the least busy) and performs the next
// ticks itself.
func TestEveryPolicies(t *testing.T) {
	const interval = 10 * time.Millisecond
	tests := []struct {
		policy      Overlap
		wantRuns    uint64
		wantSkipped uint64
	}{
		{Skip, 1, 3},
		{Delay, 2, 0},     // the three busy ticks collapse into one run after the first
		{RunAnyway, 4, 0}, // every tick runs
	}
	for _, tt := range tests {
		t.Run([]string{"Skip", "Delay", "RunAnyway"}[tt.policy], func(t *testing.T) {
			clk := NewFakeClock(epoch)
			g := NewManualGroup(2, clk)
			tick := func() {
				clk.Add(interval)
				require.NoError(t, g.Loop(0).Post(func() {}))
				g.Loop(0).RunPending() // timers first: the tick sees loop 0 busy
			}
			var runs atomic.Int32
			var where []int
			j, err := g.Every(interval, func(l *Loop) {
				where = append(where, l.ID())
				if runs.Add(1) == 1 {
					tick()
					tick()
					tick()
				}
			}, tt.policy)
			require.NoError(t, err)
			tick()
			require.Zero(t, j.Runs(), "the first run waits on loop 1")
			g.Loop(1).RunPending()
			g.Loop(0).RunPending()
			g.Loop(1).RunPending()
			require.Equal(t, tt.wantRuns, j.Runs())
			require.Equal(t, tt.wantSkipped, j.Skipped())
			require.Equal(t, 1, where[0])

			j.Stop()
			tick()
			g.Loop(1).RunPending()
			require.Equal(t, tt.wantRuns, j.Runs(), "no run after Stop")
			require.NoError(t, g.Stop(context.Background()))
		})
	}
}

func TestEveryRealGroup(t *testing.T) {
	checkFDs(t)
	g := startGroup(t, 2, Config{})
	_, err := g.Every(0, func(*Loop) {}, Skip)
	require.Error(t, err)
	var runs atomic.Int32
	loops := make(chan int, 100)
	j, err := g.Every(time.Millisecond, func(l *Loop) {
		if runs.Add(1) <= 100 {
			loops <- l.ID()
		}
	}, Skip)
	require.NoError(t, err)
	eventually(t, func() bool { return runs.Load() >= 20 }, "periodic job runs")
	j.Stop()
	j.Stop() // idempotent
}

func TestGroupLeastDispatchOwner(t *testing.T) {
	g := NewManualGroup(3, nil)
	require.Equal(t, 3, g.Len())
	require.NoError(t, g.Post(0, func() {}))
	require.NoError(t, g.Post(0, func() {}))
	require.NoError(t, g.Post(1, func() {}))
	require.Same(t, g.Loop(2), g.Least())
	ran := -1
	require.NoError(t, g.Dispatch(func() { ran = 2 }))
	require.Equal(t, 1, g.Loop(2).Pending())
	g.Loop(2).RunPending()
	require.Equal(t, 2, ran)

	// All idle: Least rotates instead of always picking the same loop.
	for _, l := range g.Loops() {
		l.RunPending()
	}
	seen := map[int]bool{}
	for i := 0; i < 3; i++ {
		seen[g.Least().ID()] = true
	}
	require.Len(t, seen, 3)

	for key, want := range map[uint64]int{0: 0, 1: 1, 2: 2, 3: 0, 1<<64 - 1: int((1<<64 - 1) % 3)} {
		require.Same(t, g.Loop(want), g.Owner(key), "key %d", key)
	}
	require.NoError(t, g.Stop(context.Background()))
	require.ErrorIs(t, g.Post(0, func() {}), ErrClosed)
}

func TestNewGroupDefaultSize(t *testing.T) {
	checkFDs(t)
	g, err := NewGroup(0, Config{})
	require.NoError(t, err)
	require.Positive(t, g.Len())
	for i, l := range g.Loops() {
		require.Equal(t, i, l.ID())
	}
	require.NoError(t, g.Stop(context.Background()))
}
