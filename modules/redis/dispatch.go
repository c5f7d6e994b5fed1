package redis

// Design: no goroutine per command. An op started on a loop is appended to
// the client's queue; a fixed set of dispatcher goroutines (Dispatchers)
// each take a batch of up to MaxBatch queued commands and send it with one
// rueidis DoMulti — one pipelined write, one wait for all the replies —
// then convert each reply off the loop and post it to its loop with
// async.PostDone's urgent priority. rueidis multiplexes the dispatchers'
// batches over its auto-pipelined connection. Blocking commands (BLPOP,
// WAIT, XREAD BLOCK) would hold a whole batch, so they are sent alone, each
// from a goroutine of its own, on rueidis's pool of blocking connections.
// BenchmarkOp and TestMeasureLatency (README.md) hold the figures.

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/redis/rueidis"
)

// job is one queued command; cmdJob[T] is the only implementation.
type job interface {
	// build returns the command to send, nil if the op is no longer
	// wanted (cancelled or timed out while queued).
	build(b rueidis.Builder) (cmd rueidis.Completed, ok bool)
	// fallback returns the command to send when the reply was NOSCRIPT
	// (EVAL for an EVALSHA), or ok=false.
	fallback(b rueidis.Builder) (cmd rueidis.Completed, ok bool)
	// finish converts the reply and posts it to the op's loop.
	finish(r rueidis.RedisResult, latency time.Duration)
	// fail completes the op with err without a reply.
	fail(err error)
	started() time.Time
}

// queue is the FIFO of commands waiting for a dispatcher. An idle
// dispatcher waits on a channel of its own; push wakes the one that went
// idle last (LIFO, as async.Pool does): under light load the same, hot
// dispatcher takes every command.
type queue struct {
	mu     sync.Mutex
	jobs   []job
	idle   []chan struct{} // wake channels of idle dispatchers, a stack
	closed bool
	batch  int
}

func (q *queue) init(batch int) { q.batch = batch }

// push queues j; it reports false when the queue is closed.
func (q *queue) push(j job) bool {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return false
	}
	q.jobs = append(q.jobs, j)
	w := q.popIdle()
	q.mu.Unlock()
	if w != nil {
		w <- struct{}{} // buffered: never blocks
	}
	return true
}

// popIdle removes and returns the dispatcher that went idle last, or nil.
func (q *queue) popIdle() chan struct{} {
	n := len(q.idle)
	if n == 0 {
		return nil
	}
	w := q.idle[n-1]
	q.idle[n-1] = nil
	q.idle = q.idle[:n-1]
	return w
}

// take waits for jobs (wake is the caller's own channel, capacity 1) and
// moves up to q.batch of them into buf. It returns an empty batch only
// when the queue is closed and drained.
func (q *queue) take(buf []job, wake chan struct{}) []job {
	q.mu.Lock()
	for len(q.jobs) == 0 && !q.closed {
		q.idle = append(q.idle, wake)
		q.mu.Unlock()
		<-wake // whoever popped us from idle sends exactly once
		q.mu.Lock()
	}
	n := min(len(q.jobs), q.batch)
	buf = append(buf[:0], q.jobs[:n]...)
	rest := copy(q.jobs, q.jobs[n:])
	clear(q.jobs[rest:])
	q.jobs = q.jobs[:rest]
	var w chan struct{}
	if rest > 0 {
		w = q.popIdle() // more for another dispatcher
	}
	q.mu.Unlock()
	if w != nil {
		w <- struct{}{}
	}
	return buf
}

// close wakes every dispatcher; they fail what is left with ErrClosed.
func (q *queue) close() {
	q.mu.Lock()
	q.closed = true
	idle := q.idle
	q.idle = nil
	q.mu.Unlock()
	for _, w := range idle {
		w <- struct{}{}
	}
}

func (q *queue) isClosed() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.closed
}

// dispatch is the body of one dispatcher goroutine.
func (c *Client) dispatch() {
	defer c.wg.Done()
	var (
		batch []job
		sent  []job
		cmds  []rueidis.Completed
		wake  = make(chan struct{}, 1)
	)
	for {
		batch = c.q.take(batch, wake)
		if len(batch) == 0 {
			return
		}
		if c.q.isClosed() {
			for _, j := range batch {
				j.fail(ErrClosed)
			}
			continue
		}
		rc := c.rc.Load()
		if rc == nil || c.down.Load() {
			for _, j := range batch {
				j.fail(ErrUnavailable)
			}
			continue
		}
		sent, cmds = sent[:0], cmds[:0]
		var newest time.Time
		for _, j := range batch {
			cmd, ok := j.build(rc.B())
			if !ok {
				j.fail(nil) // dropped: nobody waits
				continue
			}
			sent, cmds = append(sent, j), append(cmds, cmd)
			if s := j.started(); s.After(newest) {
				newest = s
			}
		}
		if len(sent) == 0 {
			continue
		}
		// The batch may wait as long as its youngest op may; older ops
		// are bounded by their own loop timers.
		ctx, cancel := context.WithDeadline(context.Background(), newest.Add(c.cfg.Timeout))
		res := rc.DoMulti(ctx, cmds...)
		c.retryNoScript(ctx, rc, sent, res)
		cancel()
		for i, j := range sent {
			j.finish(res[i], time.Since(j.started()))
		}
		clear(sent)
		clear(batch)
	}
}

// retryNoScript sends EVAL for each EVALSHA answered NOSCRIPT (the script
// cache was flushed, or Redis restarted), in one more batch; the replies
// replace the NOSCRIPT ones in res.
func (c *Client) retryNoScript(ctx context.Context, rc *rueidisClient, sent []job, res []rueidis.RedisResult) {
	var idx []int
	var cmds []rueidis.Completed
	for i, r := range res {
		if re, ok := r.Error().(*rueidis.RedisError); !ok || !re.IsNoScript() {
			continue
		}
		if cmd, ok := sent[i].fallback(rc.B()); ok {
			idx, cmds = append(idx, i), append(cmds, cmd)
		}
	}
	if len(cmds) == 0 {
		return
	}
	c.m.scriptLoads.Add(uint64(len(cmds)))
	for k, r := range rc.DoMulti(ctx, cmds...) {
		res[idx[k]] = r
	}
}

// runBlocking sends one blocking command on rueidis's blocking pool, from
// its own goroutine: it may legitimately wait up to Timeout.
func (c *Client) runBlocking(j job) {
	defer c.wg.Done()
	rc := c.rc.Load()
	if rc == nil {
		j.fail(ErrUnavailable)
		return
	}
	cmd, ok := j.build(rc.B())
	if !ok {
		j.fail(nil)
		return
	}
	ctx, cancel := context.WithDeadline(context.Background(), j.started().Add(c.cfg.Timeout))
	r := rc.Do(ctx, cmd)
	cancel()
	j.finish(r, time.Since(j.started()))
}

// isUnavailable reports whether err (not a Redis reply) means that Redis
// cannot be reached: the client then fails fast until a PING succeeds.
// A connection that was refused, reset or closed, or a dial that failed
// (timed out included) is unavailable; a read or write that timed out on
// an established connection is slow, not down: the op times out, and the
// next one goes through (rueidis replaces a connection it gave up on).
func isUnavailable(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) ||
		errors.Is(err, os.ErrDeadlineExceeded) {
		return false
	}
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Op == "dial" {
		return true
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return false
	}
	switch {
	case errors.Is(err, rueidis.ErrClosing), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, net.ErrClosed), errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET),
		errors.Is(err, syscall.EPIPE), errors.As(err, &ne):
		return true
	}
	var re *rueidis.RedisError
	if errors.As(err, &re) {
		return re.IsLoading()
	}
	return false
}

// isTimeout reports whether err (not a Redis reply) is a timeout.
func isTimeout(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) ||
		errors.Is(err, os.ErrDeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout() && !isUnavailable(err)
}
