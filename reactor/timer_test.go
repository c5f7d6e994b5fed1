package reactor

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

var epoch = time.Unix(1_700_000_000, 0)

func manual(t *testing.T) (*Loop, *FakeClock) {
	t.Helper()
	clk := NewFakeClock(epoch)
	return NewManual(clk), clk
}

func TestTimerOrder(t *testing.T) {
	tests := []struct {
		name   string
		delays []time.Duration // armed in this order, named by index
		want   []int           // firing order
	}{
		{"ascending", []time.Duration{1, 2, 3}, []int{0, 1, 2}},
		{"descending", []time.Duration{3, 2, 1}, []int{2, 1, 0}},
		{"mixed", []time.Duration{5, 1, 4, 2, 3}, []int{1, 3, 4, 2, 0}},
		{"equal deadlines fire in arming order", []time.Duration{2, 2, 1, 2}, []int{2, 0, 1, 3}},
		{"zero and negative fire first", []time.Duration{1, 0, -1}, []int{1, 2, 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, clk := manual(t)
			var got []int
			for i, d := range tt.delays {
				want := epoch.Add(max(d, 0) * time.Millisecond)
				l.AfterFunc(d*time.Millisecond, func() {
					require.Equal(t, want, clk.Now(), "timer %d sees its own deadline", i)
					require.Equal(t, want, l.Now())
					got = append(got, i)
				})
			}
			l.Advance(10 * time.Millisecond)
			require.Equal(t, tt.want, got)
			require.Zero(t, l.Timers())
			require.Equal(t, epoch.Add(10*time.Millisecond), clk.Now())
		})
	}
}

func TestTimerNotEarly(t *testing.T) {
	l, _ := manual(t)
	fired := false
	l.AfterFunc(time.Second, func() { fired = true })
	l.Advance(time.Second - time.Nanosecond)
	require.False(t, fired)
	l.Advance(time.Nanosecond)
	require.True(t, fired)
}

func TestTimerStopReset(t *testing.T) {
	tests := []struct {
		name string
		run  func(t *testing.T, l *Loop) (fired *int)
		// after Advance(10ms)
		wantFired int
	}{
		{"stop pending", func(t *testing.T, l *Loop) *int {
			n := new(int)
			tm := l.AfterFunc(5*time.Millisecond, func() { *n++ })
			require.True(t, tm.Pending())
			require.True(t, tm.Stop())
			require.False(t, tm.Pending())
			require.False(t, tm.Stop(), "second stop")
			return n
		}, 0},
		{"stop after fired", func(t *testing.T, l *Loop) *int {
			n := new(int)
			tm := l.AfterFunc(time.Millisecond, func() { *n++ })
			l.Advance(time.Millisecond)
			require.False(t, tm.Stop(), "a fired timer was not pending")
			return n
		}, 1},
		{"reset pending moves the deadline", func(t *testing.T, l *Loop) *int {
			n := new(int)
			tm := l.AfterFunc(2*time.Millisecond, func() { *n++ })
			require.True(t, tm.Reset(20*time.Millisecond))
			require.Equal(t, l.Now().Add(20*time.Millisecond), tm.When())
			return n
		}, 0},
		{"reset after fired re-arms", func(t *testing.T, l *Loop) *int {
			n := new(int)
			tm := l.AfterFunc(time.Millisecond, func() { *n++ })
			l.Advance(time.Millisecond)
			require.False(t, tm.Reset(time.Millisecond))
			return n
		}, 2},
		{"reset from its own callback (periodic)", func(t *testing.T, l *Loop) *int {
			n := new(int)
			var tm *Timer
			tm = l.AfterFunc(2*time.Millisecond, func() {
				*n++
				require.False(t, tm.Pending(), "not pending while firing")
				require.False(t, tm.Reset(2*time.Millisecond))
			})
			return n
		}, 5},
		{"stop from its own callback", func(t *testing.T, l *Loop) *int {
			n := new(int)
			var tm *Timer
			tm = l.AfterFunc(time.Millisecond, func() { *n++; require.False(t, tm.Stop()) })
			return n
		}, 1},
		{"a timer stops another due at the same time", func(t *testing.T, l *Loop) *int {
			n := new(int)
			var b *Timer
			l.AfterFunc(time.Millisecond, func() { *n++; require.True(t, b.Stop()) })
			b = l.AfterFunc(time.Millisecond, func() { *n += 100 })
			return n
		}, 1},
		{"a timer resets another that is due", func(t *testing.T, l *Loop) *int {
			n := new(int)
			var b *Timer
			l.AfterFunc(time.Millisecond, func() { *n++; b.Reset(5 * time.Millisecond) })
			b = l.AfterFunc(time.Millisecond, func() { *n += 100 })
			return n
		}, 101},
		{"nil timer stop", func(t *testing.T, l *Loop) *int {
			var tm *Timer
			require.False(t, tm.Stop())
			require.False(t, tm.Pending())
			return new(int)
		}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, _ := manual(t)
			n := tt.run(t, l)
			l.Advance(10 * time.Millisecond)
			require.Equal(t, tt.wantFired, *n)
		})
	}
}

// A timer that re-arms itself with no delay must not starve tasks: it fires
// at most once per iteration, and tasks run in between.
func TestTimerZeroDelayRearmDoesNotStarve(t *testing.T) {
	g := startGroup(t, 1, Config{})
	l := g.Loop(0)
	stop := make(chan struct{})
	var ticks atomic.Int64
	var tm *Timer
	onLoop(t, l, func() {
		tm = l.AfterFunc(0, func() {
			ticks.Add(1)
			select {
			case <-stop:
			default:
				tm.Reset(0)
			}
		})
	})
	eventually(t, func() bool { return ticks.Load() >= 3 }, "timer keeps firing")
	onLoop(t, l, func() {}) // tasks still run between firings
	close(stop)
}

func TestTimerRealLoop(t *testing.T) {
	checkFDs(t)
	g := startGroup(t, 1, Config{})
	l := g.Loop(0)
	fired := make(chan time.Duration, 1)
	start := time.Now()
	onLoop(t, l, func() {
		l.AfterFunc(3*time.Millisecond, func() { fired <- time.Since(start) })
		stopped := l.AfterFunc(0, func() { t.Error("stopped timer fired") })
		// A task posted now runs in this iteration, before timers run again.
		_ = l.PostUrgent(func() { stopped.Stop() })
	})
	require.GreaterOrEqual(t, recv(t, fired), 3*time.Millisecond, "a timer never fires early")
	require.EqualValues(t, 2, l.Stats().TimersStarted)
}

func TestNextTimer(t *testing.T) {
	l, _ := manual(t)
	_, ok := l.NextTimer()
	require.False(t, ok)
	l.AfterFunc(3*time.Second, func() {})
	l.AfterFunc(time.Second, func() {})
	when, ok := l.NextTimer()
	require.True(t, ok)
	require.Equal(t, epoch.Add(time.Second), when)
	require.Equal(t, 1000, l.nextTimeout(epoch))
	require.Equal(t, 1, l.nextTimeout(epoch.Add(999_999_999)), "rounds up")
	require.Equal(t, 0, l.nextTimeout(epoch.Add(2*time.Second)))
}
