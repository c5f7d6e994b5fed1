package reactor

import (
	"container/heap"
	"time"
)

// Timer is a one-shot timer owned by a loop. Its methods must be called on
// the owner loop.
type Timer struct {
	loop *Loop
	when time.Time
	seq  uint64 // arming order, breaks ties between equal deadlines
	fn   func()
	idx  int // position in the heap; -1 when not scheduled
}

// Stop prevents the timer from firing. It reports whether the timer was
// pending. Stopping a fired or stopped timer is harmless.
func (t *Timer) Stop() bool {
	if t == nil || t.loop == nil || t.idx < 0 {
		return false
	}
	heap.Remove(&t.loop.timers, t.idx)
	return true
}

// Reset re-arms the timer to fire d from now, whether or not it was pending.
// It reports whether the timer was pending. The timer must have been armed
// once (AfterFunc or Loop.Arm).
func (t *Timer) Reset(d time.Duration) bool {
	was := t.Stop()
	if d < 0 {
		d = 0
	}
	l := t.loop
	t.when = l.Now().Add(d)
	l.timerSeq++
	t.seq = l.timerSeq
	heap.Push(&l.timers, t)
	return was
}

// Pending reports whether the timer is scheduled.
func (t *Timer) Pending() bool { return t != nil && t.loop != nil && t.idx >= 0 }

// When returns the time the timer fires (or fired).
func (t *Timer) When() time.Time { return t.when }

// timerHeap orders timers by deadline; ties keep arming order thanks to seq.
type timerHeap []*Timer

func (h timerHeap) Len() int { return len(h) }
func (h timerHeap) Less(i, j int) bool {
	if h[i].when.Equal(h[j].when) {
		return h[i].seq < h[j].seq
	}
	return h[i].when.Before(h[j].when)
}
func (h timerHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].idx = i
	h[j].idx = j
}
func (h *timerHeap) Push(x any) {
	t := x.(*Timer)
	t.idx = len(*h)
	*h = append(*h, t)
}
func (h *timerHeap) Pop() any {
	old := *h
	n := len(old) - 1
	t := old[n]
	old[n] = nil
	t.idx = -1
	*h = old[:n]
	return t
}

// AfterFunc schedules fn to run on the loop after d. It must be called on the
// loop goroutine (or before the loop starts); use Post to schedule from
// elsewhere. Timers with equal deadlines fire in the order they were armed
// (or last Reset). d is measured from Loop.Now, the start of the current
// iteration.
func (l *Loop) AfterFunc(d time.Duration, fn func()) *Timer {
	if d < 0 {
		d = 0
	}
	l.timerSeq++
	t := &Timer{loop: l, when: l.Now().Add(d), seq: l.timerSeq, fn: fn, idx: -1}
	heap.Push(&l.timers, t)
	l.stats.timersStarted.Add(1)
	return t
}

// Arm schedules t, a Timer the caller keeps (a field of its own struct, so
// that arming allocates nothing, where AfterFunc allocates a Timer each
// time), to run fn on the loop after d. A pending t moves to the new
// deadline and function; the zero Timer is a stopped one. The rules of
// AfterFunc apply: call it on the loop; equal deadlines fire in arming
// order.
func (l *Loop) Arm(t *Timer, d time.Duration, fn func()) {
	t.Stop()
	if d < 0 {
		d = 0
	}
	l.timerSeq++
	t.loop, t.when, t.seq, t.fn, t.idx = l, l.Now().Add(d), l.timerSeq, fn, -1
	heap.Push(&l.timers, t)
	l.stats.timersStarted.Add(1)
}

// runTimers fires every timer due at now, in deadline order. A timer armed
// by a callback of this run (for example one that re-arms itself with a zero
// delay) waits for the next iteration, so timers cannot starve tasks and fds.
func (l *Loop) runTimers(now time.Time) int {
	n := 0
	limit := l.timerSeq
	for len(l.timers) > 0 {
		t := l.timers[0]
		if t.when.After(now) || t.seq > limit {
			break
		}
		heap.Pop(&l.timers)
		n++
		l.stats.timersFired.Add(1)
		l.call(t.fn)
	}
	return n
}

// nextTimeout returns the epoll_wait timeout in milliseconds for the next
// timer: -1 when there is none. It rounds up so a timer never fires early.
func (l *Loop) nextTimeout(now time.Time) int {
	if len(l.timers) == 0 {
		return -1
	}
	d := l.timers[0].when.Sub(now)
	if d <= 0 {
		return 0
	}
	ms := (d + time.Millisecond - 1) / time.Millisecond
	if ms > 1<<30 {
		ms = 1 << 30
	}
	return int(ms)
}
