package reactor

import "sync/atomic"

type loopStats struct {
	posted        atomic.Uint64
	wakeups       atomic.Uint64
	polls         atomic.Uint64
	fdEvents      atomic.Uint64
	timersStarted atomic.Uint64
	timersFired   atomic.Uint64
	panics        atomic.Uint64
	watchers      atomic.Int64
}

// Stats is a snapshot of a loop's counters. It is safe to read from any
// goroutine; observability exports it.
type Stats struct {
	Posted        uint64 // tasks posted
	Wakeups       uint64 // eventfd writes (at most one per wake-up cycle)
	Polls         uint64 // epoll_wait calls
	FDEvents      uint64 // fd events dispatched
	TimersStarted uint64
	TimersFired   uint64
	Panics        uint64 // panics recovered in tasks, timers and handlers
	Watchers      int64  // fds watched now
	Pending       int64  // tasks queued now
}

// Stats returns the loop's counters.
func (l *Loop) Stats() Stats {
	return Stats{
		Posted:        l.stats.posted.Load(),
		Wakeups:       l.stats.wakeups.Load(),
		Polls:         l.stats.polls.Load(),
		FDEvents:      l.stats.fdEvents.Load(),
		TimersStarted: l.stats.timersStarted.Load(),
		TimersFired:   l.stats.timersFired.Load(),
		Panics:        l.stats.panics.Load(),
		Watchers:      l.stats.watchers.Load(),
		Pending:       l.pending.Load(),
	}
}
