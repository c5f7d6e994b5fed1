package async

import (
	"context"
	"runtime"
	"sync"
	"time"
)

// PoolConfig configures a Pool. The zero value gives the DefaultPool sizes.
type PoolConfig struct {
	// Workers bounds the goroutines running calls at once; <= 0 means
	// runtime.GOMAXPROCS(0)*64 (blocking calls mostly wait, so many more
	// workers than CPUs are useful).
	Workers int
	// Queue bounds the calls waiting for a worker; 0 means 4096 and < 0
	// means no queue (a call is rejected as soon as every worker is busy).
	// Beyond it calls fail at once with ErrOverloaded.
	Queue int
	// IdleTimeout is how long an idle worker waits for work before it
	// exits; <= 0 means DefaultIdleTimeout. Workers start on demand, so an
	// idle pool holds no goroutine.
	IdleTimeout time.Duration
}

// DefaultIdleTimeout is the IdleTimeout of pools that do not set one. It is
// short enough that an idle pool is empty again before goleak (whose default
// retries last about 0.4 s) looks for leaked goroutines, and long enough that
// a busy pool keeps its workers.
const DefaultIdleTimeout = 200 * time.Millisecond

// PoolStats is a snapshot of a pool's gauges and counters, for metrics.
type PoolStats struct {
	Workers   int    // goroutines alive now
	Busy      int    // workers running a call now
	Queued    int    // calls waiting for a worker now
	Rejected  uint64 // calls refused with ErrOverloaded
	Completed uint64 // calls whose function returned
	Dropped   uint64 // calls dropped unrun: cancelled while queued, or Close gave up
}

// Pool is a bounded set of goroutines for blocking calls (database/sql,
// net/http, cgo): the loops never block, they hand such calls to a pool and
// get the result back as an urgent task (see Blocking). Submitting never
// blocks: when every worker is busy and the queue is full the call is
// rejected with ErrOverloaded. A Pool is safe for concurrent use.
type Pool struct {
	workers int
	queue   int
	idle    time.Duration

	mu      sync.Mutex
	q       ring
	waiting []*worker // idle workers, most recent last
	live    int
	busy    int
	closed  bool
	exited  chan struct{} // closed when the pool is closed and empty
	empty   bool          // exited is closed
	running map[*worker]struct{}

	rejected, completed, dropped uint64
}

// job is one call submitted to a pool.
type job interface {
	// run executes the call on a worker and delivers its result.
	run()
	// wanted reports whether the result is still wanted (not cancelled).
	wanted() bool
	// abandon completes the call with err without running it.
	abandon(err error)
	// interrupt cancels the context of a running call.
	interrupt()
}

// worker is one pool goroutine; wake hands it its next job (nil: exit).
type worker struct {
	wake chan job
	cur  job
}

// NewPool returns a pool configured by cfg (see PoolConfig for defaults).
// It starts no goroutine until work arrives.
func NewPool(cfg PoolConfig) *Pool {
	p := &Pool{
		workers: cfg.Workers,
		queue:   cfg.Queue,
		idle:    cfg.IdleTimeout,
		exited:  make(chan struct{}),
		running: make(map[*worker]struct{}),
	}
	if p.workers <= 0 {
		p.workers = runtime.GOMAXPROCS(0) * 64
	}
	switch {
	case p.queue == 0:
		p.queue = 4096
	case p.queue < 0:
		p.queue = 0
	}
	if p.idle <= 0 {
		p.idle = DefaultIdleTimeout
	}
	return p
}

var defaultPool struct {
	once sync.Once
	p    *Pool
}

// DefaultPool returns the pool Blocking uses when not given OnPool: created
// on first use with the zero PoolConfig, that is GOMAXPROCS*64 workers, a
// queue of 4096 calls and DefaultIdleTimeout. It is shared by the whole
// process and never closed; its idle workers exit on their own.
func DefaultPool() *Pool {
	defaultPool.once.Do(func() { defaultPool.p = NewPool(PoolConfig{}) })
	return defaultPool.p
}

// submit hands j to an idle worker, a new worker or the queue, in that
// order; it fails with ErrOverloaded when all are full and ErrClosed after
// Close. It never blocks.
func (p *Pool) submit(j job) error {
	p.mu.Lock()
	switch {
	case p.closed:
		p.mu.Unlock()
		return ErrClosed
	case len(p.waiting) > 0:
		w := p.waiting[len(p.waiting)-1]
		p.waiting = p.waiting[:len(p.waiting)-1]
		p.busy++
		w.cur = j
		p.mu.Unlock()
		w.wake <- j // buffered, never blocks
		return nil
	case p.live < p.workers:
		p.live++
		p.busy++
		w := &worker{wake: make(chan job, 1), cur: j}
		p.running[w] = struct{}{}
		p.mu.Unlock()
		go p.work(w, j)
		return nil
	case p.q.len() < p.queue:
		p.q.push(j)
		p.mu.Unlock()
		return nil
	default:
		p.rejected++
		p.mu.Unlock()
		return ErrOverloaded
	}
}

// work is a worker goroutine: it runs j, then queued jobs, then waits for a
// hand-off until it has been idle for the idle timeout.
func (p *Pool) work(w *worker, j job) {
	idle := time.NewTimer(p.idle)
	defer idle.Stop()
	for {
		ran := j.wanted() // a call cancelled before it starts is skipped
		if ran {
			j.run()
		}
		var ok bool
		if j, ok = p.next(w, ran); !ok {
			return
		}
		if j == nil {
			idle.Reset(p.idle)
			select {
			case j = <-w.wake:
			case <-idle.C:
				j = p.retire(w)
			}
			if j == nil {
				return
			}
		}
	}
}

// next records that w finished its job (ran says whether the function ran)
// and returns the next queued job. With none it puts w on the idle list and
// returns (nil, true), or, when the pool is closed, retires w and returns
// (nil, false).
func (p *Pool) next(w *worker, ran bool) (job, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if ran {
		p.completed++
	} else {
		p.dropped++
	}
	w.cur = nil
	for p.q.len() > 0 {
		j := p.q.pop()
		if !j.wanted() {
			p.dropped++
			continue
		}
		w.cur = j
		return j, true
	}
	p.busy--
	if p.closed {
		p.exit(w)
		return nil, false
	}
	p.waiting = append(p.waiting, w)
	return nil, true
}

// retire makes an idle worker exit, unless a job was handed to it in the
// meantime, which it then returns.
func (p *Pool) retire(w *worker) job {
	p.mu.Lock()
	for i, x := range p.waiting {
		if x == w {
			p.waiting = append(p.waiting[:i], p.waiting[i+1:]...)
			p.exit(w)
			p.mu.Unlock()
			return nil
		}
	}
	p.mu.Unlock()
	// Not on the idle list: submit or Close took it and is sending.
	return <-w.wake
}

// exit removes w from the pool; p.mu is held.
func (p *Pool) exit(w *worker) {
	delete(p.running, w)
	p.live--
	p.checkExited()
}

// checkExited signals Close once the pool is closed and empty; p.mu is held.
func (p *Pool) checkExited() {
	if p.closed && p.live == 0 && !p.empty {
		p.empty = true
		close(p.exited)
	}
}

// Stats returns the pool's gauges and counters.
func (p *Pool) Stats() PoolStats {
	p.mu.Lock()
	defer p.mu.Unlock()
	return PoolStats{
		Workers:   p.live,
		Busy:      p.busy,
		Queued:    p.q.len(),
		Rejected:  p.rejected,
		Completed: p.completed,
		Dropped:   p.dropped,
	}
}

// Close stops accepting calls (they fail with ErrClosed) and waits until
// the running and queued calls are over and every worker has exited. If ctx
// ends first, queued calls are completed with ErrClosed without running,
// running calls have their context cancelled, and Close returns ctx.Err()
// (those workers exit as soon as their function returns). Close is
// idempotent.
func (p *Pool) Close(ctx context.Context) error {
	p.mu.Lock()
	if !p.closed {
		p.closed = true
		for _, w := range p.waiting {
			w.wake <- nil
			p.exit(w)
		}
		p.waiting = nil
		p.checkExited()
	}
	p.mu.Unlock()
	select {
	case <-p.exited:
		return nil
	case <-ctx.Done():
	}
	p.mu.Lock()
	var queued []job
	for p.q.len() > 0 {
		queued = append(queued, p.q.pop())
	}
	p.dropped += uint64(len(queued))
	for w := range p.running {
		if w.cur != nil {
			w.cur.interrupt()
		}
	}
	p.mu.Unlock()
	for _, j := range queued {
		j.abandon(ErrClosed)
	}
	return ctx.Err()
}

// ring is a FIFO of jobs that grows by doubling and reuses its array.
type ring struct {
	buf  []job
	head int
	n    int
}

func (r *ring) len() int { return r.n }

func (r *ring) push(j job) {
	if r.n == len(r.buf) {
		nb := make([]job, max(16, 2*len(r.buf)))
		for i := 0; i < r.n; i++ {
			nb[i] = r.buf[(r.head+i)%len(r.buf)]
		}
		r.buf, r.head = nb, 0
	}
	r.buf[(r.head+r.n)%len(r.buf)] = j
	r.n++
}

func (r *ring) pop() job {
	j := r.buf[r.head]
	r.buf[r.head] = nil
	r.head = (r.head + 1) % len(r.buf)
	r.n--
	return j
}
