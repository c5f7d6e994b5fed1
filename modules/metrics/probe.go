package metrics

import (
	"math"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sys/unix"

	"github.com/asyncsip/asyncsip/reactor"
)

// loopProbe measures one loop from outside, without touching its hot path:
// every interval a task is posted to the loop and the time until it runs is
// its lag (queueing behind other tasks, timers and fd events). The task
// also reads what only the loop may read (its timer count) and learns the
// loop's OS thread, whose CPU clock gives the loop's busy time.
type loopProbe struct {
	l     *reactor.Loop
	base  time.Time // monotonic origin of postedAt
	lag   prometheus.Observer
	run   func() // the task, made once: posting it allocates nothing
	inFly atomic.Bool

	postedAt atomic.Int64 // ns since base of the post in flight
	lastLag  atomic.Int64 // ns, of the last probe that ran
	timers   atomic.Int64 // timers scheduled, read on the loop
	tables   func(*reactor.Loop) (server, client int)
	srvTx    atomic.Int64 // server transactions in the loop's table
	cliTx    atomic.Int64 // client transactions in the loop's table
	tid      atomic.Int32 // the loop's OS thread; -1 if it moves (unlocked loop)

	lastCPU  time.Duration // probe goroutine only
	lastWall time.Time     // probe goroutine only
	util     atomic.Uint64 // float64 bits: CPU share of the last interval
}

func newLoopProbe(l *reactor.Loop, base time.Time, lag prometheus.Observer,
	tables func(*reactor.Loop) (int, int)) *loopProbe {
	p := &loopProbe{l: l, base: base, lag: lag, tables: tables}
	p.run = p.onLoop
	return p
}

// post sends the probe task unless the previous one has not run yet (a
// stuck loop is then visible through currentLag).
func (p *loopProbe) post() {
	if !p.inFly.CompareAndSwap(false, true) {
		return
	}
	p.postedAt.Store(int64(time.Since(p.base)))
	if err := p.l.Post(p.run); err != nil {
		p.inFly.Store(false) // loop stopped
	}
}

// onLoop runs on the loop.
func (p *loopProbe) onLoop() {
	lag := time.Since(p.base) - time.Duration(p.postedAt.Load())
	p.lastLag.Store(int64(lag))
	p.lag.Observe(lag.Seconds())
	p.timers.Store(int64(p.l.Timers()))
	if p.tables != nil {
		srv, cli := p.tables(p.l)
		p.srvTx.Store(int64(srv))
		p.cliTx.Store(int64(cli))
	}
	tid := int32(unix.Gettid())
	if old := p.tid.Load(); old == 0 {
		p.tid.Store(tid)
	} else if old != tid {
		p.tid.Store(-1)
	}
	p.inFly.Store(false)
}

// currentLag is the last measured lag, or the age of a probe still waiting
// to run when that is larger: a loop blocked in a route shows a growing lag.
func (p *loopProbe) currentLag() time.Duration {
	lag := time.Duration(p.lastLag.Load())
	if p.inFly.Load() {
		if age := time.Since(p.base) - time.Duration(p.postedAt.Load()); age > lag {
			lag = age
		}
	}
	return lag
}

// cpu returns the CPU time the loop's thread has used, when the loop is
// running and locked to its thread (the reactor default).
func (p *loopProbe) cpu() (time.Duration, bool) {
	select {
	case <-p.l.Done():
		return 0, false
	default:
	}
	tid := p.tid.Load()
	if tid <= 0 {
		return 0, false
	}
	return threadCPU(tid)
}

// sampleUtil updates the utilisation gauge from the CPU used since the
// previous sample.
func (p *loopProbe) sampleUtil(now time.Time) {
	c, ok := p.cpu()
	if !ok {
		return
	}
	if !p.lastWall.IsZero() {
		if wall := now.Sub(p.lastWall); wall > 0 {
			u := float64(c-p.lastCPU) / float64(wall)
			p.util.Store(math.Float64bits(min(max(u, 0), 1)))
		}
	}
	p.lastCPU, p.lastWall = c, now
}

func (p *loopProbe) utilization() float64 { return math.Float64frombits(p.util.Load()) }

// threadCPU reads the CPU clock of thread tid of this process (Linux: the
// clock id pthread_getcpuclockid would return, CPUCLOCK_SCHED per thread).
func threadCPU(tid int32) (time.Duration, bool) {
	clock := int32(^uint32(tid)<<3 | 6)
	var ts unix.Timespec
	if err := unix.ClockGettime(clock, &ts); err != nil {
		return 0, false
	}
	return time.Duration(ts.Nano()), true
}
