package ratelimit

import (
	"hash/maphash"
	"net/netip"
	"sync/atomic"
	"time"
)

// FailureConfig configures a Failures tracker. The zero value of every
// field is useful.
type FailureConfig struct {
	// SourceLimit is how many failed attempts a source IP may make within
	// Window before it is banned (default 10).
	SourceLimit int
	// UserLimit is how many failed attempts for one user name, from any
	// sources, are allowed within Window before the user is banned
	// (default 30). It is higher than SourceLimit because anyone can fail
	// in someone else's name: a user ban locks the real user out too.
	UserLimit int
	// Window is the period over which failures are counted (default 1
	// minute): the count starts again after a Window without a ban.
	Window time.Duration
	// BanFor is the first ban's length (default 1 minute). Every further
	// ban of the same source or user doubles it, up to MaxBan.
	BanFor time.Duration
	// MaxBan caps a ban's length (default 1 hour). A source or user that
	// stays quiet for MaxBan after its last ban ends starts again from
	// BanFor.
	MaxBan time.Duration
	// MaxTracked bounds the sources and, separately, the users remembered
	// (default 65536 each, at least 64). Beyond it the least recently seen
	// entry is forgotten; banned entries are kept while another can go.
	// User names are kept as 64-bit keyed hashes, so an entry is a few
	// dozen bytes whatever the name's length.
	MaxTracked int
	// Exempt lists networks whose failures are never counted (trusted
	// peers). Their users' failures are not counted either.
	Exempt []netip.Prefix
	// Now is the clock (default time.Now); tests set a fake one.
	Now func() time.Time
}

// Failures counts failed authentication attempts per source IP and per
// user, and bans those that fail too often, with a back-off that doubles at
// each ban. Its methods are safe for concurrent use from every loop; each
// call takes one short lock on one shard of each table.
type Failures struct {
	cfg     FailureConfig
	seed    maphash.Seed
	sources *table[netip.Addr]
	users   *table[uint64]
	bans    atomic.Uint64
}

// Ban is what Fail and Banned report. Zero times mean "not banned".
type Ban struct {
	// Source and User are when the source's and the user's bans end.
	Source, User time.Time
	// NewSource and NewUser report that this failure started the ban.
	NewSource, NewUser bool
}

// Active reports whether the source or the user is banned.
func (b Ban) Active() bool { return !b.Source.IsZero() || !b.User.IsZero() }

// NewFailures returns a Failures tracker for cfg.
func NewFailures(cfg FailureConfig) *Failures {
	if cfg.SourceLimit <= 0 {
		cfg.SourceLimit = 10
	}
	if cfg.UserLimit <= 0 {
		cfg.UserLimit = 30
	}
	if cfg.Window <= 0 {
		cfg.Window = time.Minute
	}
	if cfg.BanFor <= 0 {
		cfg.BanFor = time.Minute
	}
	if cfg.MaxBan <= 0 {
		cfg.MaxBan = time.Hour
	}
	cfg.MaxBan = max(cfg.MaxBan, cfg.BanFor)
	if cfg.MaxTracked <= 0 {
		cfg.MaxTracked = 65536
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	p := tableParams{window: int64(cfg.Window), banFor: int64(cfg.BanFor), maxBan: int64(cfg.MaxBan)}
	return &Failures{
		cfg: cfg, seed: maphash.MakeSeed(),
		sources: newTable[netip.Addr](cfg.MaxTracked, p),
		users:   newTable[uint64](cfg.MaxTracked, p),
	}
}

func (f *Failures) exempt(ip netip.Addr) bool {
	for _, p := range f.cfg.Exempt {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

func (f *Failures) userKey(user string) uint64 { return maphash.String(f.seed, user) }

// Banned reports the bans now in force on src or user (an empty user is
// not looked up).
func (f *Failures) Banned(user string, src netip.Addr) Ban {
	src = src.Unmap()
	if f.exempt(src) {
		return Ban{}
	}
	now := f.cfg.Now().UnixNano()
	var b Ban
	if u := f.sources.banned(src, now); u != 0 {
		b.Source = time.Unix(0, u)
	}
	if user != "" {
		if u := f.users.banned(f.userKey(user), now); u != 0 {
			b.User = time.Unix(0, u)
		}
	}
	return b
}

// Fail counts one failed attempt by src for user (an empty user counts
// for the source only) and reports the bans in force afterwards.
func (f *Failures) Fail(user string, src netip.Addr) Ban {
	src = src.Unmap()
	if f.exempt(src) {
		return Ban{}
	}
	now := f.cfg.Now().UnixNano()
	var b Ban
	if u, isNew := f.sources.fail(src, now, f.cfg.SourceLimit); u != 0 {
		b.Source, b.NewSource = time.Unix(0, u), isNew
	}
	if user != "" {
		if u, isNew := f.users.fail(f.userKey(user), now, f.cfg.UserLimit); u != 0 {
			b.User, b.NewUser = time.Unix(0, u), isNew
		}
	}
	if b.NewSource {
		f.bans.Add(1)
	}
	if b.NewUser {
		f.bans.Add(1)
	}
	return b
}

// Succeed records a successful authentication of user: the user's failure
// count starts again (a ban already in force stays). The source's count is
// kept: one success behind a shared NAT must not excuse a brute-forcer
// behind the same address.
func (f *Failures) Succeed(user string, src netip.Addr) {
	if user == "" || f.exempt(src.Unmap()) {
		return
	}
	f.users.reset(f.userKey(user))
}

// FailureStats are a Failures tracker's counters.
type FailureStats struct {
	// Sources and Users are the entries remembered now (each ≤ MaxTracked).
	Sources, Users int
	// Bans counts the bans issued (sources and users).
	Bans uint64
}

// Stats returns the counters.
func (f *Failures) Stats() FailureStats {
	return FailureStats{Sources: f.sources.len(), Users: f.users.len(), Bans: f.bans.Load()}
}
