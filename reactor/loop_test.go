package reactor

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

func TestPostManyGoroutinesExactlyOnce(t *testing.T) {
	checkFDs(t)
	g := startGroup(t, 1, Config{MaxTasks: 64})
	l := g.Loop(0)
	const posters, each = 16, 5000
	var ran [posters * each]atomic.Int32
	var total atomic.Int64
	var wg sync.WaitGroup
	for p := 0; p < posters; p++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				k := p*each + i
				post := l.Post
				if i%3 == 0 {
					post = l.PostUrgent
				}
				if err := post(func() { ran[k].Add(1); total.Add(1) }); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	eventually(t, func() bool { return total.Load() == posters*each }, "all tasks ran")
	onLoop(t, l, func() {})
	for k := range ran {
		require.EqualValues(t, 1, ran[k].Load(), "task %d", k)
	}
	require.EqualValues(t, posters*each+1, l.Stats().Posted)
	require.Zero(t, l.Pending())
}

// While the loop is busy, a burst of posts costs one eventfd write.
func TestWakeupDedupe(t *testing.T) {
	g := startGroup(t, 1, Config{})
	l := g.Loop(0)
	block, blocked := make(chan struct{}), make(chan struct{})
	require.NoError(t, l.Post(func() { close(blocked); <-block }))
	recv(t, blocked)
	before := l.Stats()
	const burst = 10000
	var n atomic.Int64
	for i := 0; i < burst; i++ {
		require.NoError(t, l.Post(func() { n.Add(1) }))
	}
	close(block)
	eventually(t, func() bool { return n.Load() == burst }, "burst ran")
	after := l.Stats()
	require.EqualValues(t, burst, after.Posted-before.Posted)
	require.LessOrEqual(t, after.Wakeups-before.Wakeups, uint64(2), "wake-ups are deduplicated")
}

func TestUrgentBeforeNormal(t *testing.T) {
	t.Run("manual", func(t *testing.T) {
		l, _ := manual(t)
		var got []string
		add := func(s string) func() { return func() { got = append(got, s) } }
		require.NoError(t, l.Post(add("n1")))
		require.NoError(t, l.PostUrgent(add("u1")))
		require.NoError(t, l.Post(add("n2")))
		require.NoError(t, l.PostUrgent(add("u2")))
		l.RunPending()
		require.Equal(t, []string{"u1", "u2", "n1", "n2"}, got)
	})
	t.Run("running loop, and fds come after tasks", func(t *testing.T) {
		g := startGroup(t, 1, Config{})
		l := g.Loop(0)
		r, w := pipe(t)
		var got []string
		done := make(chan struct{})
		onLoop(t, l, func() {
			assert.NoError(t, l.Watch(r, Readable, func(fd int, ev Events) {
				drain(fd)
				got = append(got, "fd")
				_ = l.Unwatch(fd)
				close(done)
			}))
		})
		block, blocked := make(chan struct{}), make(chan struct{})
		require.NoError(t, l.Post(func() { close(blocked); <-block }))
		recv(t, blocked)
		_, err := unix.Write(w, []byte{1})
		require.NoError(t, err)
		for _, s := range []string{"n1", "n2"} {
			require.NoError(t, l.Post(func() { got = append(got, s) }))
		}
		require.NoError(t, l.PostUrgent(func() { got = append(got, "u1") }))
		close(block)
		recv(t, done)
		onLoop(t, l, func() { assert.Equal(t, []string{"u1", "n1", "n2", "fd"}, got) })
	})
}

// A task that re-posts itself forever must not starve fd events: at most
// MaxTasks tasks run between two polls.
func TestDrainBoundFDsNotStarved(t *testing.T) {
	checkFDs(t)
	const maxTasks = 4
	g := startGroup(t, 1, Config{MaxTasks: maxTasks})
	l := g.Loop(0)
	r, w := pipe(t)
	var stop atomic.Bool
	var floods atomic.Int64
	var flood func()
	flood = func() {
		floods.Add(1)
		if !stop.Load() {
			_ = l.Post(flood)
			_ = l.Post(func() {}) // the queue grows: 2 posted per task run
		}
	}
	handled := make(chan int64, 1)
	onLoop(t, l, func() {
		assert.NoError(t, l.Watch(r, Readable, func(fd int, _ Events) {
			drain(fd)
			handled <- floods.Load()
			_ = l.Unwatch(fd)
		}))
		_ = l.Post(flood)
	})
	eventually(t, func() bool { return floods.Load() > 100 }, "flood running")
	_, err := unix.Write(w, []byte{1})
	require.NoError(t, err)
	at := recv(t, handled)
	require.False(t, stop.Load(), "fd handled while the flood went on")
	stop.Store(true)
	require.Positive(t, at)
	require.Greater(t, l.Stats().Polls, uint64(floods.Load()/maxTasks/2), "a poll every MaxTasks tasks")
}

func TestFDReadinessAndUnwatch(t *testing.T) {
	checkFDs(t)
	g := startGroup(t, 1, Config{})
	l := g.Loop(0)
	r, w := pipe(t)
	evs := make(chan Events, 16)
	onLoop(t, l, func() {
		assert.NoError(t, l.Watch(r, Readable, func(fd int, ev Events) { drain(fd); evs <- ev }))
		assert.True(t, l.Watching(r))
		assert.Error(t, l.Watch(r, Readable, func(int, Events) {}), "double watch")
	})
	_, err := unix.Write(w, []byte("x"))
	require.NoError(t, err)
	require.Equal(t, Readable, recv(t, evs)&Readable)
	onLoop(t, l, func() {
		assert.NoError(t, l.Unwatch(r))
		assert.ErrorIs(t, l.Unwatch(r), ErrNotWatched)
		assert.ErrorIs(t, l.Modify(r, Writable), ErrNotWatched)
	})
	_, err = unix.Write(w, []byte("y"))
	require.NoError(t, err)
	onLoop(t, l, func() {}) // a full iteration after the write
	require.Empty(t, evs, "no event after Unwatch")

	// Modify: a pipe's write end is always writable.
	onLoop(t, l, func() {
		assert.NoError(t, l.Watch(w, 0, func(fd int, ev Events) { _ = l.Unwatch(fd); evs <- ev }))
		assert.NoError(t, l.Modify(w, Writable))
	})
	require.Equal(t, Writable, recv(t, evs)&Writable)
	require.Zero(t, l.Stats().Watchers)
}

// Events of one epoll batch: a handler that unwatches (or closes and
// re-watches) another fd of the same batch suppresses that fd's handler.
func TestUnwatchWhileEventsPending(t *testing.T) {
	checkFDs(t)
	l, err := New(Config{})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, l.Stop(context.Background())) })
	ra, wa := pipe(t)
	rb, wb := pipe(t)
	var calls []int
	require.NoError(t, l.Watch(ra, Readable, func(fd int, _ Events) { calls = append(calls, fd); _ = l.Unwatch(rb) }))
	require.NoError(t, l.Watch(rb, Readable, func(fd int, _ Events) { calls = append(calls, fd); _ = l.Unwatch(ra) }))
	for _, w := range []int{wa, wb} {
		_, err := unix.Write(w, []byte{1})
		require.NoError(t, err)
	}
	// Drive one poll by hand (the loop is not running): both fds are in the
	// same batch, the first handler removes the other.
	require.NoError(t, l.poll(0))
	require.Len(t, calls, 1)

	// Same fd number re-registered within the batch: the stale event is
	// dropped (watchers carry a sequence number).
	rc, wc := pipe(t)
	rd, wd := pipe(t)
	var got []string
	var h func(string) func(int, Events)
	h = func(name string) func(int, Events) {
		return func(fd int, _ Events) {
			got = append(got, name)
			other := rc + rd - fd
			if l.Watching(other) {
				_ = l.Unwatch(other)
				_ = l.Watch(other, Readable, h("new"))
			}
		}
	}
	require.NoError(t, l.Watch(rc, Readable, h("c")))
	require.NoError(t, l.Watch(rd, Readable, h("d")))
	for _, w := range []int{wc, wd} {
		_, err := unix.Write(w, []byte{1})
		require.NoError(t, err)
	}
	require.NoError(t, l.poll(0))
	require.Len(t, got, 1, "the re-registered watcher does not get the old event")
}

func TestPanicsRecovered(t *testing.T) {
	checkFDs(t)
	g := startGroup(t, 1, Config{Logger: quiet})
	l := g.Loop(0)
	r, w := pipe(t)
	var after atomic.Bool
	onLoop(t, l, func() {
		assert.NoError(t, l.Watch(r, Readable, func(int, Events) { panic("handler") }))
	})
	_, err := unix.Write(w, []byte{1})
	require.NoError(t, err)
	eventually(t, func() bool { return l.Stats().Panics == 1 }, "handler panic counted")
	onLoop(t, l, func() { assert.False(t, l.Watching(r), "watcher removed after panic") })

	// A panicking task does not lose the rest of its batch.
	block, blocked := make(chan struct{}), make(chan struct{})
	require.NoError(t, l.Post(func() { close(blocked); <-block }))
	recv(t, blocked)
	require.NoError(t, l.Post(func() { panic("task") }))
	require.NoError(t, l.Post(func() { after.Store(true) }))
	close(block)
	onLoop(t, l, func() { l.AfterFunc(0, func() { panic("timer") }) })
	eventually(t, func() bool { return l.Stats().Panics == 3 }, "task and timer panics counted")
	require.True(t, after.Load())
	onLoop(t, l, func() {}) // still running
}

func TestGracefulStopFinishesWork(t *testing.T) {
	checkFDs(t)
	g, err := NewGroup(2, Config{})
	require.NoError(t, err)
	g.Start()
	var tasks, timers atomic.Int64
	for i := 0; i < g.Len(); i++ {
		l := g.Loop(i)
		for k := 0; k < 100; k++ {
			require.NoError(t, l.Post(func() {
				tasks.Add(1)
				// A timer armed by in-flight work, which posts more work.
				l.AfterFunc(time.Duration(k%5)*time.Millisecond, func() {
					timers.Add(1)
					_ = l.Post(func() { tasks.Add(1) })
				})
			}))
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	require.NoError(t, g.Stop(ctx))
	require.EqualValues(t, 200, timers.Load(), "pending timers fired before the loops exited")
	require.EqualValues(t, 400, tasks.Load())
	for _, l := range g.Loops() {
		select {
		case <-l.Done():
		default:
			t.Fatal("loop not done after Stop")
		}
		require.ErrorIs(t, l.Post(func() {}), ErrClosed)
		require.ErrorIs(t, l.PostUrgent(func() {}), ErrClosed)
	}
	require.NoError(t, g.Stop(ctx), "second Stop")
}

func TestStopDeadline(t *testing.T) {
	tests := []struct {
		name string
		ctx  func() (context.Context, context.CancelFunc)
		want error
	}{
		{"already cancelled", func() (context.Context, context.CancelFunc) {
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			return ctx, cancel
		}, context.Canceled},
		{"deadline during drain", func() (context.Context, context.CancelFunc) {
			return context.WithTimeout(context.Background(), 20*time.Millisecond)
		}, context.DeadlineExceeded},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkFDs(t)
			l, err := New(Config{})
			require.NoError(t, err)
			l.Start()
			onLoop(t, l, func() { l.AfterFunc(time.Hour, func() {}) }) // keeps the drain busy
			ctx, cancel := tt.ctx()
			defer cancel()
			require.ErrorIs(t, l.Stop(ctx), tt.want)
			<-l.Done()
			require.ErrorIs(t, l.Post(func() {}), ErrClosed)
		})
	}
}

// Regression: the loop used to block in epoll_wait for ever once the last
// timer of a graceful stop had fired, so Stop only returned at its deadline.
func TestStopExitsAfterLastTimer(t *testing.T) {
	checkFDs(t)
	for _, d := range []time.Duration{0, time.Millisecond, 5 * time.Millisecond} {
		l, err := New(Config{})
		require.NoError(t, err)
		l.Start()
		fired := make(chan struct{})
		onLoop(t, l, func() { l.AfterFunc(d, func() { close(fired) }) })
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		require.NoError(t, l.Stop(ctx), "delay %v", d)
		cancel()
		recv(t, fired)
	}
}

func TestStopNeverStarted(t *testing.T) {
	checkFDs(t)
	l, err := New(Config{})
	require.NoError(t, err)
	ran, closed, stopped := false, false, false
	l.OnStop(func() { stopped = true })
	l.OnClose(func() { closed = true })
	require.NoError(t, l.Post(func() { ran = true }))
	require.NoError(t, l.Stop(context.Background()))
	require.True(t, ran, "a task posted before Stop still runs")
	require.True(t, stopped)
	require.True(t, closed)
	require.ErrorIs(t, l.Post(func() {}), ErrClosed)
	l.Start() // harmless
	require.NoError(t, l.Stop(context.Background()))
}

func TestHooksOrderAndRemoval(t *testing.T) {
	l, _ := manual(t)
	var got []string
	l.OnStop(func() { got = append(got, "stop") })
	l.OnClose(func() { got = append(got, "close1") })
	l.OnClose(func() { got = append(got, "close2") })
	h := l.addCloseHook(func() { got = append(got, "removed") })
	l.removeHook(h)
	require.NoError(t, l.Stop(context.Background()))
	require.Equal(t, []string{"stop", "close2", "close1"}, got)
}

// Posting from many goroutines while the loop stops: every Post either
// returns ErrClosed or its task runs; none is lost and nothing races.
func TestPostRacingStop(t *testing.T) {
	checkFDs(t)
	for round := 0; round < 20; round++ {
		l, err := New(Config{})
		require.NoError(t, err)
		l.Start()
		var accepted, ran atomic.Int64
		var wg sync.WaitGroup
		for p := 0; p < 4; p++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					err := l.Post(func() { ran.Add(1) })
					if errors.Is(err, ErrClosed) {
						return
					}
					accepted.Add(1)
				}
			}()
		}
		// Posters never let the queue empty, so the graceful drain may well
		// run into the deadline; either way the loop exits.
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
		err = l.Stop(ctx)
		cancel()
		if err != nil {
			require.ErrorIs(t, err, context.DeadlineExceeded)
		}
		wg.Wait()
		require.Equal(t, accepted.Load(), ran.Load())
	}
}

func pipe(t testing.TB) (r, w int) {
	t.Helper()
	var p [2]int
	require.NoError(t, unix.Pipe2(p[:], unix.O_NONBLOCK|unix.O_CLOEXEC))
	t.Cleanup(func() { unix.Close(p[0]); unix.Close(p[1]) })
	return p[0], p[1]
}

func drain(fd int) {
	var buf [64]byte
	for {
		if n, err := unix.Read(fd, buf[:]); n <= 0 || err != nil {
			return
		}
	}
}
