package reactor

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// Group runs N loops: the workers of a server.
type Group struct {
	loops []*Loop
	rr    atomic.Uint32
	mu    sync.Mutex
	jobs  []*Job
	once  sync.Once
}

// NewGroup creates n loops (n <= 0 means runtime.GOMAXPROCS(0)) from cfg;
// each gets its index as ID. The loops are not started.
func NewGroup(n int, cfg Config) (*Group, error) {
	if n <= 0 {
		n = runtime.GOMAXPROCS(0)
	}
	g := &Group{}
	for i := 0; i < n; i++ {
		c := cfg
		c.ID = i
		l, err := New(c)
		if err != nil {
			for _, l := range g.loops {
				_ = l.Stop(context.Background())
			}
			return nil, err
		}
		g.loops = append(g.loops, l)
	}
	return g, nil
}

// NewManualGroup returns a group of n manual loops sharing clk, for tests.
func NewManualGroup(n int, clk Clock) *Group {
	g := &Group{}
	for i := 0; i < n; i++ {
		l := NewManual(clk)
		l.id = i
		g.loops = append(g.loops, l)
	}
	return g
}

// Start starts every loop on its own goroutine.
func (g *Group) Start() {
	for _, l := range g.loops {
		l.Start()
	}
}

// Len returns the number of loops.
func (g *Group) Len() int { return len(g.loops) }

// Loop returns loop i.
func (g *Group) Loop(i int) *Loop { return g.loops[i] }

// Loops returns the loops (do not modify the slice).
func (g *Group) Loops() []*Loop { return g.loops }

// Post queues fn on loop i.
func (g *Group) Post(i int, fn func()) error { return g.loops[i].Post(fn) }

// Least returns the loop with the fewest queued tasks; ties rotate so that
// idle loops share the work.
func (g *Group) Least() *Loop {
	n := len(g.loops)
	start := int(g.rr.Add(1)) % n
	best := g.loops[start]
	bp := best.pending.Load()
	for k := 1; k < n && bp > 0; k++ {
		l := g.loops[(start+k)%n]
		if p := l.pending.Load(); p < bp {
			best, bp = l, p
		}
	}
	return best
}

// Dispatch queues fn on the least busy loop.
func (g *Group) Dispatch(fn func()) error { return g.Least().Post(fn) }

// Owner returns the loop that owns key (key modulo the number of loops), for
// example a transaction's hash. Handing a received packet to its owner means
// copying the bytes (a Packet's Data is only valid during the handler call)
// and posting the work to the owner with Post or PostUrgent; tm hands over
// parsed messages, which is cheaper than copying raw datagrams twice.
func (g *Group) Owner(key uint64) *Loop { return g.loops[key%uint64(len(g.loops))] }

// Overlap says what a periodic job does when its previous run is still busy.
type Overlap int

const (
	// Skip drops a tick that finds the previous run still busy.
	Skip Overlap = iota
	// Delay runs a tick that found the previous run busy right after it ends.
	Delay
	// RunAnyway runs every tick, even concurrently on another loop.
	RunAnyway
)

// Job is a periodic job created by Every.
type Job struct {
	g        *Group
	interval time.Duration
	fn       func(l *Loop)
	policy   Overlap
	running  atomic.Int32
	delayed  atomic.Bool
	stopped  atomic.Bool
	runs     atomic.Uint64
	skipped  atomic.Uint64
	timer    *Timer // on loop 0
}

// Every runs job every interval, each run on the least busy loop (the timer
// itself lives on loop 0), so timer work is spread over the workers as
// OpenSIPS spreads its timer jobs. policy decides what happens when a tick
// finds the previous run still busy. Every may be called from any goroutine.
func (g *Group) Every(interval time.Duration, job func(l *Loop), policy Overlap) (*Job, error) {
	if interval <= 0 {
		return nil, fmt.Errorf("reactor: Every: interval must be positive, got %v", interval)
	}
	j := &Job{g: g, interval: interval, fn: job, policy: policy}
	g.mu.Lock()
	g.jobs = append(g.jobs, j)
	g.mu.Unlock()
	l0 := g.loops[0]
	if l0.manual {
		j.timer = l0.AfterFunc(interval, j.tick)
		return j, nil
	}
	if err := l0.Post(func() {
		if !j.stopped.Load() {
			j.timer = l0.AfterFunc(interval, j.tick)
		}
	}); err != nil {
		return nil, err
	}
	return j, nil
}

// Stop stops future runs; a run in progress finishes.
func (j *Job) Stop() {
	if j.stopped.Swap(true) {
		return
	}
	l0 := j.g.loops[0]
	stop := func() { j.timer.Stop() }
	if l0.manual {
		stop()
		return
	}
	_ = l0.Post(stop)
}

// Runs returns how many times the job has started.
func (j *Job) Runs() uint64 { return j.runs.Load() }

// Skipped returns how many ticks were skipped by the Skip policy.
func (j *Job) Skipped() uint64 { return j.skipped.Load() }

func (j *Job) tick() {
	if j.stopped.Load() {
		return
	}
	j.timer.Reset(j.interval)
	if j.running.Load() > 0 {
		switch j.policy {
		case Skip:
			j.skipped.Add(1)
			return
		case Delay:
			j.delayed.Store(true)
			// The run may have ended between the check and the store; then
			// nobody else will start the delayed run.
			if j.running.Load() == 0 && j.delayed.Swap(false) {
				j.start()
			}
			return
		}
	}
	j.start()
}

func (j *Job) start() {
	j.running.Add(1)
	l := j.g.Least()
	err := l.Post(func() {
		defer j.finished()
		j.runs.Add(1)
		j.fn(l)
	})
	if err != nil {
		j.running.Add(-1)
	}
}

func (j *Job) finished() {
	if j.running.Add(-1) == 0 && j.delayed.Swap(false) && !j.stopped.Load() {
		j.start()
	}
}

// Stop stops every periodic job, then stops all loops gracefully in
// parallel (see Loop.Stop). It returns ctx.Err() if the deadline forced a
// loop to stop before its work was done. A second call waits (bounded by its
// own ctx) for the first to finish. Stop must not be called from one of the
// group's loops: it waits for them to exit.
func (g *Group) Stop(ctx context.Context) error {
	var errs []error
	first := false
	g.once.Do(func() {
		first = true
		g.mu.Lock()
		for _, j := range g.jobs {
			j.Stop()
		}
		g.mu.Unlock()
		var wg sync.WaitGroup
		var mu sync.Mutex
		for _, l := range g.loops {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := l.Stop(ctx); err != nil {
					mu.Lock()
					errs = append(errs, fmt.Errorf("loop %d: %w", l.id, err))
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
	})
	if !first {
		for _, l := range g.loops {
			select {
			case <-l.Done():
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
	return errors.Join(errs...)
}
