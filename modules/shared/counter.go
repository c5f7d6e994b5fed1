package shared

import (
	"sync"
	"time"

	"github.com/asyncsip/asyncsip/async"
)

// MemoryCounter is the in-process Counter. Several instances can share one
// (For), each with its own part of every count, as they would share a Redis
// server: the tests of the contract use that. An instance given a TTL is
// dead once it has not called Sync for that long, and its part stops
// counting; the default instance never expires. Ops complete at once. Its
// zero value is not usable: call NewMemoryCounter.
type MemoryCounter struct {
	mu    sync.Mutex
	parts map[string]*counterPart // instance → its part
	now   func() time.Time
	self  *counterView
}

type counterPart struct {
	counts   map[string]int
	ttl      time.Duration // 0: never expires
	lastSync time.Time
}

// NewMemoryCounter returns an empty counter; its own methods act as a
// default instance that never expires.
func NewMemoryCounter() *MemoryCounter {
	c := &MemoryCounter{parts: map[string]*counterPart{}, now: time.Now}
	c.self = c.view("", 0)
	return c
}

// For returns the Counter of instance name, whose part expires ttl after its
// last Sync (ttl <= 0: never).
func (c *MemoryCounter) For(name string, ttl time.Duration) Counter { return c.view(name, ttl) }

func (c *MemoryCounter) view(name string, ttl time.Duration) *counterView {
	c.mu.Lock()
	defer c.mu.Unlock()
	p := c.parts[name]
	if p == nil {
		p = &counterPart{counts: map[string]int{}}
		c.parts[name] = p
	}
	p.ttl, p.lastSync = ttl, c.now()
	return &counterView{c: c, name: name}
}

// total sums key over the live parts; c.mu held.
func (c *MemoryCounter) total(key string, now time.Time) int {
	n := 0
	for _, p := range c.parts {
		if p.ttl <= 0 || now.Sub(p.lastSync) < p.ttl {
			n += p.counts[key]
		}
	}
	return n
}

// Acquire implements Counter for the default instance.
func (c *MemoryCounter) Acquire(key string, limit int) async.Op[Acquired] {
	return c.self.Acquire(key, limit)
}

// Release implements Counter for the default instance.
func (c *MemoryCounter) Release(key string) async.Op[int] { return c.self.Release(key) }

// Total implements Counter.
func (c *MemoryCounter) Total(key string) async.Op[int] { return c.self.Total(key) }

// Sync implements Counter for the default instance.
func (c *MemoryCounter) Sync(own map[string]int) async.Op[struct{}] { return c.self.Sync(own) }

type counterView struct {
	c    *MemoryCounter
	name string
}

func (v *counterView) part() *counterPart {
	p := v.c.parts[v.name]
	if p == nil { // never removed; kept for safety against misuse
		p = &counterPart{counts: map[string]int{}}
		v.c.parts[v.name] = p
	}
	return p
}

func (v *counterView) Acquire(key string, limit int) async.Op[Acquired] {
	if key == "" {
		return async.Done(Acquired{}, ErrBadKey)
	}
	c := v.c
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.total(key, c.now())
	if limit > 0 && n >= limit {
		return async.Done(Acquired{Total: n}, nil)
	}
	v.part().counts[key]++
	return async.Done(Acquired{Total: n + 1, OK: true}, nil)
}

func (v *counterView) Release(key string) async.Op[int] {
	if key == "" {
		return async.Done(0, ErrBadKey)
	}
	c := v.c
	c.mu.Lock()
	defer c.mu.Unlock()
	p := v.part()
	if p.counts[key] <= 1 {
		delete(p.counts, key) // keys do not accumulate
	} else {
		p.counts[key]--
	}
	return async.Done(c.total(key, c.now()), nil)
}

func (v *counterView) Total(key string) async.Op[int] {
	c := v.c
	c.mu.Lock()
	defer c.mu.Unlock()
	return async.Done(c.total(key, c.now()), nil)
}

func (v *counterView) Sync(own map[string]int) async.Op[struct{}] {
	c := v.c
	c.mu.Lock()
	defer c.mu.Unlock()
	p := v.part()
	p.counts = make(map[string]int, len(own))
	for k, n := range own {
		if n > 0 && k != "" {
			p.counts[k] = n
		}
	}
	p.lastSync = c.now()
	return async.Done(struct{}{}, nil)
}
