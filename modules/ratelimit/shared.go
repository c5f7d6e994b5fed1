package ratelimit

import (
	"errors"
	"net/netip"
	"time"

	"github.com/asyncsip/asyncsip/async"
	"github.com/asyncsip/asyncsip/reactor"
)

// Rates counted across instances (Config.Shared).
//
// Allow decides at once, on this instance's token bucket alone: the route
// never waits for the network. Every SharedEvery the instance reports the
// requests each source sent it since the last report to the shared counter,
// which sums them over every instance in windows of SharedWindow and bans a
// source whose sum goes above Rate×SharedWindow + Burst; the answer lists
// the reported sources banned now, by any instance, and this instance bans
// them too until their shared ban ends. A source that spreads its flood
// over N instances is thus stopped within one exchange of crossing the
// shared limit.
//
// When the counter fails (timeout, Redis down) the report is lost and each
// instance limits on its own bucket only (fail open to the local limit);
// the exchanges resume by themselves when it answers again.

// Defaults of the shared rate exchange.
const (
	// DefaultSharedEvery is the default of Config.SharedEvery.
	DefaultSharedEvery = time.Second
	// DefaultSharedWindow is the default of Config.SharedWindow.
	DefaultSharedWindow = 10 * time.Second
)

func (l *Limiter) sharedEvery() time.Duration {
	if l.cfg.SharedEvery > 0 {
		return l.cfg.SharedEvery
	}
	return DefaultSharedEvery
}

func (l *Limiter) sharedWindow() time.Duration {
	if l.cfg.SharedWindow > 0 {
		return l.cfg.SharedWindow
	}
	return DefaultSharedWindow
}

// StartShared runs the exchange with Config.Shared every SharedEvery as a
// timer job on g's loops. Stop the returned job when done.
func (l *Limiter) StartShared(g *reactor.Group) (*reactor.Job, error) {
	if l.cfg.Shared == nil {
		return nil, errors.New("ratelimit: StartShared without Config.Shared")
	}
	if g == nil {
		return nil, errors.New("ratelimit: StartShared needs the server's reactor.Group")
	}
	return g.Every(l.sharedEvery(), l.ExchangeShared, reactor.Skip)
}

// ExchangeShared reports the requests counted since the last exchange to
// Config.Shared from loop lp and bans the sources it says are over the
// shared limit (StartShared runs it periodically). The exchange is bounded
// by SharedEvery.
func (l *Limiter) ExchangeShared(lp *reactor.Loop) {
	counts := l.unreported()
	if len(counts) == 0 {
		return
	}
	w := l.sharedWindow()
	limit := int64(l.cfg.Rate*w.Seconds()) + int64(l.cfg.Burst)
	async.Launch(lp, l.cfg.Shared.Add(counts, limit, w, l.cfg.BanFor), func(banned map[string]time.Time, err error) {
		if err != nil {
			l.count.sharedFailed.Add(1)
			return
		}
		for k, until := range banned {
			if ip, err := netip.ParseAddr(k); err == nil {
				l.banShared(ip, until)
			}
		}
	}, async.Timeout(l.sharedEvery()), async.Name("ratelimit.shared"))
}

// unreported takes the counts of requests not yet reported, by source.
func (l *Limiter) unreported() map[string]int64 {
	out := map[string]int64{}
	for s := range l.shards {
		sh := &l.shards[s]
		sh.mu.Lock()
		for i := range sh.ents {
			if e := &sh.ents[i]; e.used && e.unreported > 0 {
				out[e.ip.String()] += e.unreported
				e.unreported = 0
			}
		}
		sh.mu.Unlock()
	}
	return out
}

// banShared bans ip here until until, as the shared counter said.
func (l *Limiter) banShared(ip netip.Addr, until time.Time) {
	ip = ip.Unmap()
	for _, p := range l.cfg.Exempt {
		if p.Contains(ip) {
			return
		}
	}
	now := l.cfg.Now().UnixNano()
	u := until.UnixNano()
	sh := &l.shards[shardOf(l, ip)]
	sh.mu.Lock()
	e, added, evicted := sh.lookup(ip, now)
	if added {
		e.tokens, e.refill, e.seen = l.burst, now, now
	}
	fresh := e.bannedUntil <= now
	if u > e.bannedUntil {
		e.bannedUntil = u
		e.tokens, e.refill = l.burst, u
	}
	sh.mu.Unlock()
	l.after(added, evicted)
	if fresh && u > now {
		l.count.sharedBans.Add(1)
		if o := l.cfg.Observer; o != nil {
			o.Ban(ip, until)
		}
	}
}
