package reactor

import (
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// No wake-up is lost between a poster and a loop going to sleep (the
// sleeping flag checked Dekker-style against pending, loop.go). On each
// loop one pinger posts a task and waits for it to run before posting the
// next, so the loop, which has no timer, goes to sleep between tasks again
// and again and every post races with the loop's way into epoll_wait; a
// lost wake-up leaves the pinger's task queued on a sleeping loop forever
// (no other post of the pinger can rescue it), and the bounded wait
// fails. Meanwhile many sprayers post to every loop at once.
//
// Unlocked loops (NoLockThread) wait on the Go netpoller instead of a
// blocking epoll_wait (park.go); the same races apply to them.
func TestPostWakesSleepingLoop(t *testing.T) {
	for _, unlocked := range []bool{false, true} {
		t.Run(map[bool]string{false: "default", true: "unlocked"}[unlocked], func(t *testing.T) {
			testPostWakesSleepingLoop(t, Config{NoLockThread: unlocked})
		})
	}
}

func testPostWakesSleepingLoop(t *testing.T, cfg Config) {
	const loops, pings, sprayers, sprays = 4, 2000, 8, 2000
	g := startGroup(t, loops, cfg)
	var wg sync.WaitGroup
	var sprayed atomic.Int64
	for p := 0; p < sprayers; p++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < sprays; i++ {
				if err := g.Loop((p + i) % loops).Post(func() { sprayed.Add(1) }); err != nil {
					t.Error(err)
					return
				}
				if i%64 == 0 {
					runtime.Gosched()
				}
			}
		}()
	}
	for k := 0; k < loops; k++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l := g.Loop(k)
			done := make(chan struct{}, 1)
			for i := 0; i < pings; i++ {
				post := l.Post
				if i%2 == 1 {
					post = l.PostUrgent
				}
				if err := post(func() { done <- struct{}{} }); err != nil {
					t.Error(err)
					return
				}
				select {
				case <-done:
				case <-time.After(waitTimeout):
					t.Errorf("loop %d, ping %d: not run within %v (a lost wake-up)", k, i, waitTimeout)
					return
				}
			}
		}()
	}
	wg.Wait()
	eventually(t, func() bool { return sprayed.Load() == sprayers*sprays }, "every sprayed task ran")
	var posted, wakeups uint64
	for _, l := range g.Loops() {
		st := l.Stats()
		posted += st.Posted
		wakeups += st.Wakeups
	}
	require.NotZero(t, wakeups, "a sleeping loop is woken by the eventfd")
	require.LessOrEqual(t, wakeups, posted, "at most one eventfd write per post")
}

// A loop that is awake is not woken: posts made while it runs a task
// write no eventfd (the loop runs them before it polls again).
func TestNoWakeupWhileAwake(t *testing.T) {
	g := startGroup(t, 1, Config{})
	l := g.Loop(0)
	block, blocked := make(chan struct{}), make(chan struct{})
	require.NoError(t, l.Post(func() { close(blocked); <-block }))
	recv(t, blocked)
	before := l.Stats()
	const burst = 1000
	var n atomic.Int64
	for i := 0; i < burst; i++ {
		require.NoError(t, l.Post(func() { n.Add(1) }))
	}
	mid := l.Stats()
	close(block)
	eventually(t, func() bool { return n.Load() == burst }, "burst ran")
	require.Equal(t, before.Wakeups, mid.Wakeups, "no eventfd write while the loop is awake")
}

// An unlocked loop parks on the netpoller and is woken by each of its
// sources: a post, a watched fd, its next timer. Every wait is bounded.
func TestUnlockedLoopWakes(t *testing.T) {
	g := startGroup(t, 1, Config{NoLockThread: true})
	l := g.Loop(0)
	require.NotNil(t, l.park, "an unlocked loop waits on the netpoller")

	ran := make(chan struct{}, 1)
	require.NoError(t, l.Post(func() { ran <- struct{}{} }))
	recv(t, ran)

	var p [2]int
	require.NoError(t, unix.Pipe2(p[:], unix.O_NONBLOCK|unix.O_CLOEXEC))
	defer unix.Close(p[1])
	read := make(chan struct{}, 1)
	watched := make(chan error, 1)
	require.NoError(t, l.Post(func() {
		watched <- l.Watch(p[0], Readable, func(fd int, _ Events) {
			var b [8]byte
			_, _ = unix.Read(fd, b[:])
			_ = l.Unwatch(fd)
			unix.Close(fd)
			read <- struct{}{}
		})
	}))
	require.NoError(t, recv(t, watched))
	time.Sleep(5 * time.Millisecond) // let the loop park again (not timed: any outcome must pass)
	_, err := unix.Write(p[1], []byte{1})
	require.NoError(t, err)
	recv(t, read)

	fired := make(chan struct{}, 1)
	require.NoError(t, l.Post(func() { l.AfterFunc(5*time.Millisecond, func() { fired <- struct{}{} }) }))
	recv(t, fired)
	require.True(t, l.Stats().Polls > 0)
}

// onLoopThread recognises an unlocked loop's goroutine by its id.
func TestUnlockedOnLoopThread(t *testing.T) {
	g := startGroup(t, 1, Config{NoLockThread: true})
	l := g.Loop(0)
	on := make(chan bool, 1)
	require.NoError(t, l.Post(func() { on <- l.onLoopThread() }))
	require.True(t, recv(t, on))
	require.False(t, l.onLoopThread())
}
