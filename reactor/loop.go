package reactor

import (
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// Errors returned by loops.
var (
	// ErrClosed is returned when work is posted to a loop that has stopped.
	ErrClosed = errors.New("reactor: loop closed")
	// ErrManual is returned by fd operations on a manual (fake) loop.
	ErrManual = errors.New("reactor: manual loop has no poller")
	// ErrNotWatched is returned by Modify and Unwatch for an unknown fd.
	ErrNotWatched = errors.New("reactor: fd not watched")
)

// Config configures a Loop. The zero value is usable.
type Config struct {
	// ID names the loop in logs and metrics; Group sets it to the index.
	ID int
	// Clock is the loop's time source; nil means the system clock.
	Clock Clock
	// Logger receives panics and fd errors; nil means slog.Default().
	Logger *slog.Logger
	// MaxTasks bounds the tasks run per iteration (default 256) so that fd
	// events are never starved by a flood of posts.
	MaxTasks int
	// MaxEvents bounds the fd events taken per epoll_wait (default 128).
	MaxEvents int
	// NoLockThread leaves the loop goroutine unlocked from its OS thread.
	// Locking is the default because it keeps the loop's cache warm. An
	// unlocked loop waits for its epoll fd on the Go netpoller (park.go)
	// and shares its thread with the other goroutines: with GOMAXPROCS=1 a
	// hop to a pool worker and back then costs no context switch (locked:
	// ~3, BenchmarkBlockingThread in ./async). Not the default: with one P
	// and four unlocked loops the rest benchmark lost calls at 2,500
	// calls/s where locked loops lost none (docs/ARCHITECTURE.md, "Performance: the async path"). The
	// per-thread loop CPU metric is not available for an unlocked loop.
	NoLockThread bool
}

// Loop is one event loop. See the package documentation.
type Loop struct {
	id        int
	clock     Clock
	log       *slog.Logger
	maxTasks  int
	maxEvents int
	lock      bool
	manual    bool

	epfd int // -1 on a manual loop
	efd  int // never changes after New; efdMu guards writes against the close

	efdMu     sync.Mutex
	efdClosed bool
	tid       atomic.Int32 // OS thread of a locked running loop, 0 otherwise
	goid      atomic.Int64 // goroutine of an unlocked running loop, 0 otherwise

	q          taskQueue
	wakeArmed  atomic.Bool // an eventfd write is outstanding
	sleeping   atomic.Bool // the loop is in (or about to enter) a blocking epoll_wait
	pending    atomic.Int64
	timers     timerHeap
	now        time.Time
	batch      []func()
	watchers   map[int]*watcher
	watchSeq   int32
	events     []unix.EpollEvent
	onStop     []*hook // stop-input hooks, run when a graceful stop starts
	onClose    []*hook // resource closers, run when the loop exits
	timerSeq   uint64  // orders timers with equal deadlines
	stopping   bool
	stopReq    atomic.Bool
	forceStop  atomic.Bool
	started    atomic.Bool
	done       chan struct{}
	stopOnce   sync.Once
	inCallback bool
	park       *parker // unlocked loops: wait on the netpoller (park.go)

	stats loopStats
}

// hook is a registered OnStop or OnClose function; fn is nil once removed.
type hook struct{ fn func() }

// watcher is one registered fd.
type watcher struct {
	fd  int
	seq int32
	ev  Events
	h   func(fd int, ev Events)
}

// New creates a loop backed by epoll. Call Run (or Start) to run it.
func New(cfg Config) (*Loop, error) {
	l := newLoop(cfg)
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("reactor: epoll_create1: %w", err)
	}
	efd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		unix.Close(epfd)
		return nil, fmt.Errorf("reactor: eventfd: %w", err)
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(efd), Pad: -1}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, efd, &ev); err != nil {
		unix.Close(efd)
		unix.Close(epfd)
		return nil, fmt.Errorf("reactor: epoll_ctl eventfd: %w", err)
	}
	l.epfd, l.efd = epfd, efd
	if !l.lock {
		l.park = newParker(epfd) // nil: it blocks in epoll_wait instead
	}
	return l, nil
}

// NewManual returns a loop with no goroutine and no poller, for tests: time
// moves only with Advance, and posted tasks run only in RunPending or
// Advance, on the caller's goroutine. Fd operations return ErrManual.
func NewManual(clk Clock) *Loop {
	if clk == nil {
		clk = NewFakeClock(time.Unix(1_700_000_000, 0))
	}
	l := newLoop(Config{Clock: clk})
	l.manual = true
	l.started.Store(true)
	return l
}

func newLoop(cfg Config) *Loop {
	if cfg.Clock == nil {
		cfg.Clock = systemClock{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.MaxTasks <= 0 {
		cfg.MaxTasks = 256
	}
	if cfg.MaxEvents <= 0 {
		cfg.MaxEvents = 128
	}
	l := &Loop{
		id:        cfg.ID,
		clock:     cfg.Clock,
		log:       cfg.Logger.With("loop", cfg.ID),
		maxTasks:  cfg.MaxTasks,
		maxEvents: cfg.MaxEvents,
		lock:      !cfg.NoLockThread,
		epfd:      -1,
		efd:       -1,
		watchers:  make(map[int]*watcher),
		done:      make(chan struct{}),
	}
	l.now = l.clock.Now()
	l.events = make([]unix.EpollEvent, l.maxEvents)
	return l
}

// ID returns the loop's identifier.
func (l *Loop) ID() int { return l.id }

// Logger returns the loop's logger (with a "loop" attribute).
func (l *Loop) Logger() *slog.Logger { return l.log }

// Manual reports whether the loop is a manual test loop.
func (l *Loop) Manual() bool { return l.manual }

// Now returns the time at the start of the current iteration, refreshed after
// every fd event batch. On the loop it is cheaper than time.Now and it is the
// time timers are measured against.
func (l *Loop) Now() time.Time { return l.now }

// Post queues fn to run on the loop at normal priority. It is safe from any
// goroutine and never blocks; it returns ErrClosed once the loop has exited.
func (l *Loop) Post(fn func()) error { return l.post(fn, false) }

// PostUrgent queues fn at urgent priority: it runs before normal tasks and
// fd events of the same iteration. Async completions use it.
func (l *Loop) PostUrgent(fn func()) error { return l.post(fn, true) }

func (l *Loop) post(fn func(), urgent bool) error {
	if !l.q.push(fn, urgent) {
		return ErrClosed
	}
	l.pending.Add(1)
	l.stats.posted.Add(1)
	if l.sleeping.Load() {
		l.wake()
	}
	return nil
}

// wake writes the eventfd once per wake-up cycle: posters that find a write
// outstanding skip the syscall. A poster calls it only when the loop
// sleeps: a loop that is awake runs the task before it polls again.
//
// Why no wake-up is lost (Dekker's pattern over two sequentially
// consistent atomics): the poster increments pending, then reads sleeping;
// the loop sets sleeping, then reads pending, before a blocking
// epoll_wait. At least one of them sees the other's write: the poster
// sees sleeping and writes the eventfd, or the loop sees the task and
// polls without blocking. TestPostWakesSleepingLoop drives both orders.
func (l *Loop) wake() {
	if l.manual || !l.wakeArmed.CompareAndSwap(false, true) {
		return
	}
	l.stats.wakeups.Add(1)
	l.writeEventfd()
}

// writeEventfd signals the eventfd unless the loop has closed it. The lock
// makes sure a poster that lost the race with the loop's exit never writes
// to a closed (and possibly reused) fd number.
func (l *Loop) writeEventfd() {
	var one = [8]byte{1}
	l.efdMu.Lock()
	if !l.efdClosed {
		_, _ = unix.Write(l.efd, one[:])
	}
	l.efdMu.Unlock()
}

// Pending returns the number of tasks queued and not yet run.
func (l *Loop) Pending() int { return int(l.pending.Load()) }

// Timers returns the number of scheduled timers. Call it on the loop.
func (l *Loop) Timers() int { return len(l.timers) }

// Start runs the loop on a new goroutine.
func (l *Loop) Start() {
	if l.manual || !l.started.CompareAndSwap(false, true) {
		return
	}
	go l.run()
}

// Run runs the loop on the calling goroutine until it stops.
func (l *Loop) Run() {
	if l.manual || !l.started.CompareAndSwap(false, true) {
		return
	}
	l.run()
}

// Done is closed when the loop has exited and released its fds.
func (l *Loop) Done() <-chan struct{} { return l.done }

func (l *Loop) run() {
	if l.lock {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		l.tid.Store(int32(unix.Gettid()))
	} else {
		l.goid.Store(goid())
		defer l.goid.Store(0)
	}
	defer l.stopOnce.Do(l.finish)
	for {
		if l.stopReq.Load() {
			l.beginStop()
			if l.forceStop.Load() || l.drained() {
				return
			}
		}
		more := l.iterate()
		if l.stopping && !more && l.drained() {
			// The last timer or task of a graceful stop just ran: nothing
			// would wake a poll without timeout, so exit now.
			continue
		}
		timeout := 0
		if !more {
			timeout = l.nextTimeout(l.clock.Now())
		}
		if timeout != 0 {
			// About to block: from here on posters write the eventfd.
			// A task posted before they could see it is run first.
			l.sleeping.Store(true)
			if l.pending.Load() > 0 {
				l.sleeping.Store(false)
				timeout = 0
			}
		}
		err := l.poll(timeout)
		l.sleeping.Store(false)
		if err != nil {
			l.log.Error("reactor: epoll_wait failed, loop exits", "err", err)
			return
		}
	}
}

// drained reports whether no task is queued and no timer is scheduled.
func (l *Loop) drained() bool { return len(l.timers) == 0 && l.q.len() == 0 }

// iterate runs due timers, then up to MaxTasks tasks — including tasks
// posted while the first ones ran, so that a completion posted by a task or
// by another goroutine meanwhile still beats fd events that became ready at
// the same time. It reports whether tasks are still queued.
func (l *Loop) iterate() bool {
	l.now = l.clock.Now()
	l.runTimers(l.now)
	budget := l.maxTasks
	for budget > 0 {
		batch, _, more := l.q.take(l.batch[:0], budget)
		n := len(batch)
		l.pending.Add(-int64(n))
		l.runBatch(batch)
		clear(batch)
		l.batch = batch[:0]
		budget -= n
		if n == 0 || (!more && l.pending.Load() == 0) {
			return false
		}
	}
	return l.pending.Load() > 0
}

// poll waits for fd events (bounded by timeout ms) and dispatches them.
func (l *Loop) poll(timeout int) error {
	l.stats.polls.Add(1)
	var (
		n   int
		err error
	)
	if timeout != 0 && l.park != nil {
		n, err = l.park.poll(l.epfd, l.events, timeout)
	} else {
		n, err = unix.EpollWait(l.epfd, l.events, timeout)
	}
	if err != nil {
		if err == unix.EINTR {
			return nil
		}
		return err
	}
	l.now = l.clock.Now()
	for i := 0; i < n; i++ {
		e := &l.events[i]
		if e.Pad == -1 && int(e.Fd) == l.efd {
			var buf [8]byte
			_, _ = unix.Read(l.efd, buf[:])
			l.wakeArmed.Store(false)
			continue
		}
		w := l.watchers[int(e.Fd)]
		if w == nil || w.seq != e.Pad {
			continue // unwatched (or replaced) earlier in this batch
		}
		l.dispatch(w, Events(e.Events))
	}
	return nil
}

// RunPending runs, on the caller's goroutine, every due timer and every
// queued task until none is left. It is meant for manual loops; on a running
// loop it must not be called.
func (l *Loop) RunPending() {
	for {
		l.now = l.clock.Now()
		fired := l.runTimers(l.now)
		batch, _, _ := l.q.take(l.batch[:0], l.maxTasks)
		l.pending.Add(-int64(len(batch)))
		l.runBatch(batch)
		clear(batch)
		l.batch = batch[:0]
		if fired == 0 && len(batch) == 0 {
			return
		}
	}
}

// Advance moves a manual loop's FakeClock forward by d, stopping at each
// timer deadline on the way so that every timer sees the time it was due at,
// and runs whatever becomes due. It panics if the loop's clock is not a
// *FakeClock.
func (l *Loop) Advance(d time.Duration) {
	fc, ok := l.clock.(*FakeClock)
	if !ok {
		panic("reactor: Advance needs a loop built with a *FakeClock")
	}
	end := fc.Now().Add(d)
	l.RunPending()
	for len(l.timers) > 0 && !l.timers[0].when.After(end) {
		fc.Set(l.timers[0].when)
		l.RunPending()
	}
	fc.Set(end)
	l.RunPending()
}

// NextTimer returns the deadline of the earliest timer, if any.
func (l *Loop) NextTimer() (time.Time, bool) {
	if len(l.timers) == 0 {
		return time.Time{}, false
	}
	return l.timers[0].when, true
}

// runBatch runs tasks, recovering panics without losing the rest of the batch.
func (l *Loop) runBatch(batch []func()) {
	for i := 0; i < len(batch); {
		i = l.runFrom(batch, i)
	}
}

func (l *Loop) runFrom(batch []func(), i int) (next int) {
	defer func() {
		if r := recover(); r != nil {
			l.panicked(r)
			next = i + 1
		}
	}()
	for ; i < len(batch); i++ {
		batch[i]()
	}
	return i
}

// call runs fn, recovering a panic.
func (l *Loop) call(fn func()) {
	defer func() {
		if r := recover(); r != nil {
			l.panicked(r)
		}
	}()
	fn()
}

func (l *Loop) panicked(r any) {
	l.stats.panics.Add(1)
	buf := make([]byte, 4096)
	buf = buf[:runtime.Stack(buf, false)]
	l.log.Error("reactor: panic recovered", "panic", fmt.Sprint(r), "stack", string(buf))
}
