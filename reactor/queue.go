package reactor

import "sync"

// taskQueue is a multi-producer, single-consumer queue of funcs with two
// priorities. A short mutex guards two slices; the consumer takes a bounded
// batch at a time. Measured against a lock-free list in BenchmarkPost: with
// the batch swap the mutex is held for a few nanoseconds per task and the
// queue allocates nothing in steady state.
type taskQueue struct {
	mu     sync.Mutex
	urgent []func()
	normal []func()
	closed bool
}

// push appends fn; it reports false when the queue is closed.
func (q *taskQueue) push(fn func(), urgent bool) bool {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return false
	}
	if urgent {
		q.urgent = append(q.urgent, fn)
	} else {
		q.normal = append(q.normal, fn)
	}
	q.mu.Unlock()
	return true
}

// take moves up to max tasks into dst, urgent ones first, and reports how
// many of them were urgent and whether tasks remain queued.
func (q *taskQueue) take(dst []func(), max int) (out []func(), urgent int, more bool) {
	q.mu.Lock()
	n := min(len(q.urgent), max)
	dst = append(dst, q.urgent[:n]...)
	q.urgent = shift(q.urgent, n)
	m := min(len(q.normal), max-n)
	dst = append(dst, q.normal[:m]...)
	q.normal = shift(q.normal, m)
	more = len(q.urgent)+len(q.normal) > 0
	q.mu.Unlock()
	return dst, n, more
}

func (q *taskQueue) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.urgent) + len(q.normal)
}

func (q *taskQueue) close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
}

// shift drops the first n elements, reusing the backing array.
func shift(s []func(), n int) []func() {
	if n == 0 {
		return s
	}
	k := copy(s, s[n:])
	clear(s[k:])
	return s[:k]
}
