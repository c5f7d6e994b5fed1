package ratelimit

import (
	"net/netip"
	"sync/atomic"
	"time"
)

// Observer is told what the Limiter decides, for metrics and logs. Its
// methods are called from the loops, outside the Limiter's locks, and must
// not block.
type Observer interface {
	// Ban: ip went over the rate and is refused until `until`.
	Ban(ip netip.Addr, until time.Time)
	// Refuse: a request from ip was refused (ip is banned).
	Refuse(ip netip.Addr)
}

// Stats are the Limiter's counters.
type Stats struct {
	// Allowed and Refused count the requests checked.
	Allowed, Refused uint64
	// Bans counts the bans issued.
	Bans uint64
	// Tracked is the number of sources remembered now (≤ MaxTracked).
	Tracked int64
	// Evicted counts sources forgotten because the table was full.
	Evicted uint64
	// SharedBans counts the bans learnt from Config.Shared (a source over
	// the rate across instances); SharedFailed the exchanges with it that
	// failed or timed out.
	SharedBans, SharedFailed uint64
}

type counters struct {
	allowed, refused, bans, evicted atomic.Uint64
	sharedBans, sharedFailed        atomic.Uint64
	tracked                         atomic.Int64
}

// Stats returns the counters.
func (l *Limiter) Stats() Stats {
	return Stats{
		Allowed: l.count.allowed.Load(), Refused: l.count.refused.Load(), Bans: l.count.bans.Load(),
		Tracked: l.count.tracked.Load(), Evicted: l.count.evicted.Load(),
		SharedBans: l.count.sharedBans.Load(), SharedFailed: l.count.sharedFailed.Load(),
	}
}
