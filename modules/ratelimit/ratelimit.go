// Package ratelimit detects sources that send requests faster than a given
// rate and bans them for a while — the job of Kamailio's and OpenSIPS's
// pike module —, recognises the User-Agents of SIP scanners, and counts
// failed authentication attempts per source and per user with bans that
// back off (Failures, used by modules/auth).
//
// It is the first step of a request route: every worker loop calls it for
// every request, so the state is sharded and each check takes one short
// lock on one shard. Memory is bounded: at most Config.MaxTracked sources
// are remembered, the least recently seen are evicted first, and a timer
// job forgets idle sources.
//
//	rl := ratelimit.New(ratelimit.Config{Rate: 20, Burst: 40, BanFor: time.Minute})
//	job, _ := rl.Start(srv.Group()) // the cleanup job; job.Stop() when done
//	srv.Request(func(c *tm.Context) {
//		if !rl.Check(c) || ratelimit.IsScanner(c.Req()) {
//			c.Drop() // no answer: a flood or a scan gets nothing back
//			return
//		}
//		...
//	})
package ratelimit

import (
	"hash/maphash"
	"net/netip"
	"sync"
	"time"

	"github.com/asyncsip/asyncsip/modules/shared"
	"github.com/asyncsip/asyncsip/reactor"
)

// Config configures a Limiter. The zero value of every field is useful.
type Config struct {
	// Rate is the sustained number of requests per second a source IP may
	// send (default 20).
	Rate float64
	// Burst is how many requests a source may send at once above Rate —
	// the size of its token bucket (default 2×Rate, at least 1).
	Burst int
	// BanFor is how long a source that went over the rate is refused
	// (default 1 minute). When the ban ends the source starts afresh with a
	// full Burst; one that keeps flooding is banned again at once.
	BanFor time.Duration
	// Window is how long an idle source is remembered (default 2 minutes,
	// and never less than BanFor); the cleanup job started by Start runs
	// every Window/2.
	Window time.Duration
	// MaxTracked bounds the number of sources remembered (default 100000,
	// at least 64: the table has 64 shards).
	// Beyond it the least recently seen source is forgotten; banned
	// sources are kept while another can go.
	MaxTracked int
	// Exempt lists networks that are never limited (own gateways, trunks).
	Exempt []netip.Prefix
	// Observer, when set, is told of every ban and refusal (metrics).
	Observer Observer
	// Now is the clock (default time.Now); tests set a fake one.
	Now func() time.Time

	// Shared, when set, counts each source's requests across every
	// instance that shares it (modules/shared/sharedredis); StartShared
	// runs the exchange. See shared.go for how and what happens when it
	// fails.
	Shared shared.Rates
	// SharedEvery is how often the counts are exchanged with Shared
	// (default DefaultSharedEvery).
	SharedEvery time.Duration
	// SharedWindow is the window in which Shared counts a source's
	// requests (default DefaultSharedWindow): a source is banned on every
	// instance when its requests to them all within a window exceed
	// Rate×SharedWindow + Burst.
	SharedWindow time.Duration
}

const shards = 64

// Limiter is a per-source request rate limiter with a ban list. Its methods
// are safe for concurrent use from every loop.
type Limiter struct {
	cfg    Config
	burst  float64
	rate   float64 // tokens per nanosecond
	banFor int64
	window int64
	seed   maphash.Seed
	shards [shards]shard
	count  counters
}

// shard is one part of the table: a map into a ring of entries that a
// CLOCK hand walks to evict the least recently seen.
type shard struct {
	mu    sync.Mutex
	index map[netip.Addr]int32
	ents  []entry
	free  []int32
	hand  int
	limit int
}

type entry struct {
	ip          netip.Addr
	tokens      float64
	refill      int64 // when tokens were last refilled (unix ns)
	seen        int64 // last request (unix ns)
	bannedUntil int64
	ref         bool // seen since the hand last passed
	used        bool
	unreported  int64 // requests not yet reported to Config.Shared
}

// New returns a Limiter for cfg.
func New(cfg Config) *Limiter {
	if cfg.Rate <= 0 {
		cfg.Rate = 20
	}
	if cfg.Burst <= 0 {
		cfg.Burst = max(1, int(2*cfg.Rate))
	}
	if cfg.BanFor <= 0 {
		cfg.BanFor = time.Minute
	}
	if cfg.Window <= 0 {
		cfg.Window = 2 * time.Minute
	}
	cfg.Window = max(cfg.Window, cfg.BanFor)
	if cfg.MaxTracked <= 0 {
		cfg.MaxTracked = 100000
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	l := &Limiter{
		cfg: cfg, burst: float64(cfg.Burst), rate: cfg.Rate / 1e9,
		banFor: int64(cfg.BanFor), window: int64(cfg.Window), seed: maphash.MakeSeed(),
	}
	for i := range l.shards {
		l.shards[i].index = make(map[netip.Addr]int32)
		l.shards[i].limit = cfg.MaxTracked / shards
		if i < cfg.MaxTracked%shards {
			l.shards[i].limit++
		}
		l.shards[i].limit = max(1, l.shards[i].limit)
	}
	return l
}

// Source is what Check needs of a request: *tm.Context implements it.
type Source interface {
	Source() netip.AddrPort
}

// Check reports whether the request of c may go on: false when its source
// IP is banned or has just gone over the rate (and is banned from now).
func (l *Limiter) Check(c Source) bool { return l.Allow(c.Source().Addr()) }

// Allow counts one request from ip and reports whether it may go on.
func (l *Limiter) Allow(ip netip.Addr) bool {
	ip = ip.Unmap()
	for _, p := range l.cfg.Exempt {
		if p.Contains(ip) {
			l.count.allowed.Add(1)
			return true
		}
	}
	now := l.cfg.Now().UnixNano()
	sh := &l.shards[shardOf(l, ip)]
	sh.mu.Lock()
	e, added, evicted := sh.lookup(ip, now)
	if added {
		e.tokens, e.refill = l.burst, now // a new source starts with a full bucket
	}
	e.ref, e.seen = true, now
	e.unreported++
	if e.bannedUntil > now {
		sh.mu.Unlock()
		l.after(added, evicted)
		l.count.refused.Add(1)
		if o := l.cfg.Observer; o != nil {
			o.Refuse(ip)
		}
		return false
	}
	e.tokens = min(l.burst, e.tokens+float64(now-e.refill)*l.rate)
	e.refill = now
	if e.tokens >= 1 {
		e.tokens--
		sh.mu.Unlock()
		l.after(added, evicted)
		l.count.allowed.Add(1)
		return true
	}
	// Banned. When the ban ends the source starts again with a full
	// bucket (refilled from then on), as if it were new.
	e.bannedUntil = now + l.banFor
	e.tokens, e.refill = l.burst, e.bannedUntil
	sh.mu.Unlock()
	l.after(added, evicted)
	l.count.bans.Add(1)
	l.count.refused.Add(1)
	if o := l.cfg.Observer; o != nil {
		o.Ban(ip, time.Unix(0, now+l.banFor))
	}
	return false
}

func shardOf(l *Limiter, ip netip.Addr) uint64 { return maphash.Comparable(l.seed, ip) % shards }

func (l *Limiter) after(added, evicted bool) {
	if added {
		l.count.tracked.Add(1)
	}
	if evicted {
		l.count.tracked.Add(-1)
		l.count.evicted.Add(1)
	}
}

// Banned reports whether ip is banned now.
func (l *Limiter) Banned(ip netip.Addr) bool {
	ip = ip.Unmap()
	now := l.cfg.Now().UnixNano()
	sh := &l.shards[maphash.Comparable(l.seed, ip)%shards]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	i, ok := sh.index[ip]
	return ok && sh.ents[i].bannedUntil > now
}

// lookup returns ip's entry, adding an empty one if needed and
// evicting another when the shard is full. Called with sh.mu held.
func (sh *shard) lookup(ip netip.Addr, now int64) (e *entry, added, evicted bool) {
	if i, ok := sh.index[ip]; ok {
		return &sh.ents[i], false, false
	}
	var i int32
	switch {
	case len(sh.free) > 0:
		i = sh.free[len(sh.free)-1]
		sh.free = sh.free[:len(sh.free)-1]
	case len(sh.ents) < sh.limit:
		sh.ents = append(sh.ents, entry{})
		i = int32(len(sh.ents) - 1)
	default:
		i = sh.victim(now)
		delete(sh.index, sh.ents[i].ip)
		evicted = true
	}
	sh.ents[i] = entry{ip: ip, used: true}
	sh.index[ip] = i
	return &sh.ents[i], true, evicted
}

// victim picks the entry to evict: the CLOCK hand skips (and clears) the
// recently seen ones, and banned ones for as long as another can go.
func (sh *shard) victim(now int64) int32 {
	n := len(sh.ents)
	for step := 0; step < 2*n; step++ {
		i := sh.hand
		sh.hand = (sh.hand + 1) % n
		e := &sh.ents[i]
		if e.ref {
			e.ref = false
			continue
		}
		if e.bannedUntil <= now {
			return int32(i)
		}
	}
	i := sh.hand // every source is banned: the oldest position goes
	sh.hand = (sh.hand + 1) % n
	return int32(i)
}

// Sweep forgets the sources idle for longer than Window whose ban is over.
// Start runs it periodically; it returns how many were forgotten.
func (l *Limiter) Sweep() int {
	now := l.cfg.Now().UnixNano()
	total := 0
	for s := range l.shards {
		sh := &l.shards[s]
		sh.mu.Lock()
		for i := range sh.ents {
			e := &sh.ents[i]
			if e.used && now-e.seen > l.window && e.bannedUntil <= now {
				delete(sh.index, e.ip)
				*e = entry{}
				sh.free = append(sh.free, int32(i))
				total++
			}
		}
		sh.mu.Unlock()
	}
	l.count.tracked.Add(-int64(total))
	return total
}

// Start runs Sweep every Window/2 as a timer job on g's loops (skipped
// when the previous run is still busy). Stop the returned job when done.
func (l *Limiter) Start(g *reactor.Group) (*reactor.Job, error) {
	return g.Every(l.cfg.Window/2, func(*reactor.Loop) { l.Sweep() }, reactor.Skip)
}
