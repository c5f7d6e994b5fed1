package shared

import (
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/asyncsip/asyncsip/async"
)

// MemoryRates is the in-process Rates: counts in fixed windows and bans,
// forgotten once their window and their ban are over. Ops complete at once.
type MemoryRates struct {
	mu        sync.Mutex
	counts    map[string]rateWindow
	bans      map[string]time.Time
	lastSweep time.Time
	now       func() time.Time
}

type rateWindow struct {
	start time.Time
	n     int64
}

// NewMemoryRates returns empty in-process rates.
func NewMemoryRates() *MemoryRates {
	return &MemoryRates{counts: map[string]rateWindow{}, bans: map[string]time.Time{}, now: time.Now}
}

// Add implements Rates.
func (r *MemoryRates) Add(counts map[string]int64, limit int64, window, banFor time.Duration) async.Op[map[string]time.Time] {
	if window <= 0 {
		window = time.Second
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	start := now.Truncate(window)
	r.sweep(now, window)
	out := map[string]time.Time{}
	for k, n := range counts {
		if until, ok := r.bans[k]; ok && until.After(now) {
			out[k] = until
			continue
		}
		w := r.counts[k]
		if !w.start.Equal(start) {
			w = rateWindow{start: start}
		}
		w.n += n
		r.counts[k] = w
		if limit > 0 && w.n > limit {
			until := now.Add(banFor)
			r.bans[k] = until
			out[k] = until
		}
	}
	return async.Done(out, nil)
}

// sweep forgets past windows and bans, at most once per window; r.mu held.
func (r *MemoryRates) sweep(now time.Time, window time.Duration) {
	if now.Sub(r.lastSweep) < window {
		return
	}
	r.lastSweep = now
	start := now.Truncate(window)
	for k, w := range r.counts {
		if w.start.Before(start) {
			delete(r.counts, k)
		}
	}
	for k, until := range r.bans {
		if !until.After(now) {
			delete(r.bans, k)
		}
	}
}

// DefaultMaxNonces bounds a MemoryNonces made with NewMemoryNonces(0).
const DefaultMaxNonces = 1 << 18

// MemoryNonces is the in-process Nonces, bounded: when it is full (and
// nothing has expired) a nonce not seen yet is refused — the client is
// challenged again — rather than forgetting one that a replay could then
// reuse.
type MemoryNonces struct {
	mu   sync.Mutex
	m    map[string]nonceEntry
	max  int
	now  func() time.Time
	next time.Time // earliest expiry, for the sweep
}

type nonceEntry struct {
	nc      uint32
	expires time.Time
}

// NewMemoryNonces returns an empty nonce cache holding at most max nonces
// (max <= 0: DefaultMaxNonces).
func NewMemoryNonces(max int) *MemoryNonces {
	if max <= 0 {
		max = DefaultMaxNonces
	}
	return &MemoryNonces{m: map[string]nonceEntry{}, max: max, now: time.Now}
}

// Use implements Nonces.
func (c *MemoryNonces) Use(key string, nc uint32, ttl time.Duration) async.Op[bool] {
	if key == "" {
		return async.Done(false, ErrBadKey)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	e, ok := c.m[key]
	if ok && !e.expires.After(now) {
		ok = false
	}
	if ok && nc <= e.nc {
		return async.Done(false, nil)
	}
	if !ok && len(c.m) >= c.max {
		c.sweep(now)
		if len(c.m) >= c.max {
			return async.Done(false, nil)
		}
	}
	exp := now.Add(ttl)
	c.m[key] = nonceEntry{nc: nc, expires: exp}
	if c.next.IsZero() || exp.Before(c.next) {
		c.next = exp
	}
	return async.Done(true, nil)
}

func (c *MemoryNonces) sweep(now time.Time) {
	if now.Before(c.next) {
		return
	}
	c.next = time.Time{}
	for k, e := range c.m {
		if !e.expires.After(now) {
			delete(c.m, k)
		} else if c.next.IsZero() || e.expires.Before(c.next) {
			c.next = e.expires
		}
	}
}

// Len returns the number of nonces remembered (expired ones included until
// a sweep).
func (c *MemoryNonces) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.m)
}

// MemoryBoard is the in-process Board. Expired values are dropped when
// read, and swept when the board has grown.
type MemoryBoard struct {
	mu  sync.Mutex
	m   map[string]boardEntry
	now func() time.Time
}

type boardEntry struct {
	v       string
	expires time.Time
}

// NewMemoryBoard returns an empty board.
func NewMemoryBoard() *MemoryBoard {
	return &MemoryBoard{m: map[string]boardEntry{}, now: time.Now}
}

// Put implements Board.
func (b *MemoryBoard) Put(key, value string, ttl time.Duration) async.Op[struct{}] {
	if key == "" {
		return async.Done(struct{}{}, ErrBadKey)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.now()
	if len(b.m) >= 1024 && len(b.m)&1023 == 0 {
		for k, e := range b.m {
			if !e.expires.After(now) {
				delete(b.m, k)
			}
		}
	}
	b.m[key] = boardEntry{v: value, expires: now.Add(ttl)}
	return async.Done(struct{}{}, nil)
}

// Get implements Board.
func (b *MemoryBoard) Get(keys ...string) async.Op[map[string]string] {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.now()
	out := make(map[string]string, len(keys))
	for _, k := range keys {
		if e, ok := b.m[k]; ok {
			if e.expires.After(now) {
				out[k] = e.v
			} else {
				delete(b.m, k)
			}
		}
	}
	return async.Done(out, nil)
}

// MemoryLocation is the in-process Location: one map per AOR under a lock.
// Expired bindings are dropped by the Save and Lookup of their AOR, and by
// Sweep (a timer job calls it).
type MemoryLocation struct {
	mu   sync.Mutex
	aors map[string]map[string]Binding
}

// NewMemoryLocation returns an empty location table.
func NewMemoryLocation() *MemoryLocation {
	return &MemoryLocation{aors: map[string]map[string]Binding{}}
}

// live returns the live bindings of m sorted by contact, dropping the
// expired ones from m.
func live(m map[string]Binding, now time.Time) []Binding {
	out := make([]Binding, 0, len(m))
	for ct, b := range m {
		if b.Live(now) {
			out = append(out, b)
		} else {
			delete(m, ct)
		}
	}
	slices.SortFunc(out, func(a, b Binding) int { return strings.Compare(a.Contact, b.Contact) })
	return out
}

// Save implements Location.
func (s *MemoryLocation) Save(aor string, binds []Binding, wildcard bool, max int, now time.Time) async.Op[Saved] {
	if aor == "" {
		return async.Done(Saved{}, ErrBadKey)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	cur := s.aors[aor]
	if cur == nil {
		cur = map[string]Binding{}
	}
	before := live(cur, now)
	next := make(map[string]Binding, len(cur)+len(binds))
	if !wildcard {
		for ct, b := range cur {
			next[ct] = b
		}
	}
	for _, b := range binds {
		if b.Live(now) {
			b.Expires = time.Unix(b.Expires.Unix(), 0)
			next[b.Contact] = b
		} else {
			delete(next, b.Contact)
		}
	}
	if max > 0 && len(next) > max {
		return async.Done(Saved{}, error(&TooManyError{Live: len(next)}))
	}
	after := live(next, now)
	if len(next) == 0 {
		delete(s.aors, aor)
	} else {
		s.aors[aor] = next
	}
	return async.Done(Saved{Before: before, After: after}, nil)
}

// Lookup implements Location.
func (s *MemoryLocation) Lookup(aor string, limit int, now time.Time) async.Op[[]Binding] {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.aors[aor]
	if m == nil {
		return async.Done[[]Binding](nil, nil)
	}
	out := live(m, now)
	if len(m) == 0 {
		delete(s.aors, aor)
	}
	SortLookup(out)
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return async.Done(out, nil)
}

// SortLookup sorts bindings in Lookup's order: the latest to expire first,
// ties by contact.
func SortLookup(bs []Binding) {
	slices.SortFunc(bs, func(a, b Binding) int {
		if c := b.Expires.Compare(a.Expires); c != 0 {
			return c
		}
		return strings.Compare(a.Contact, b.Contact)
	})
}

// Remove implements Location.
func (s *MemoryLocation) Remove(aor, contact string) async.Op[bool] {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.aors[aor]
	_, ok := m[contact]
	delete(m, contact)
	if len(m) == 0 {
		delete(s.aors, aor)
	}
	return async.Done(ok, nil)
}

// RemoveAll implements Location.
func (s *MemoryLocation) RemoveAll(aor string) async.Op[int] {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := len(s.aors[aor])
	delete(s.aors, aor)
	return async.Done(n, nil)
}

// Sweep removes the bindings expired at now and returns how many.
func (s *MemoryLocation) Sweep(now time.Time) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for aor, m := range s.aors {
		for ct, b := range m {
			if !b.Live(now) {
				delete(m, ct)
				n++
			}
		}
		if len(m) == 0 {
			delete(s.aors, aor)
		}
	}
	return n
}
