package sipdns

import (
	"container/list"
	"strings"
	"sync"
	"time"

	mdns "github.com/miekg/dns"
)

// cacheKey names one RRset: a lower-case name without the final dot, and
// a type.
type cacheKey struct {
	name  string
	qtype uint16
}

// canonical is the cache form of a name (no allocation when it is already
// lower case without a final dot, the usual case).
func canonical(name string) string {
	return strings.ToLower(strings.TrimSuffix(name, "."))
}

// cacheEntry is a positive answer (rrs) or a negative one (err is
// ErrNXDomain or ErrNoRecords), valid until expires.
type cacheEntry struct {
	key     cacheKey
	rrs     []mdns.RR
	err     error
	expires time.Time
}

// cache is a bounded LRU of answers shared by every loop of a resolver.
// One mutex: a hit holds it for a map lookup and a list move, and DNS
// answers change rarely, so it is not where time goes (BenchmarkCacheHit).
type cache struct {
	mu    sync.Mutex
	max   int
	items map[cacheKey]*list.Element
	lru   list.List // front = most recently used
}

func newCache(max int) *cache {
	return &cache{max: max, items: make(map[cacheKey]*list.Element)}
}

// get returns the entry for k if it has not expired at now.
func (c *cache) get(k cacheKey, now time.Time) (*cacheEntry, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.items[k]
	if !ok {
		return nil, false
	}
	e := el.Value.(*cacheEntry)
	if !now.Before(e.expires) {
		c.lru.Remove(el)
		delete(c.items, k)
		return nil, false
	}
	c.lru.MoveToFront(el)
	return e, true
}

// put stores e, evicting the least recently used entries beyond the bound.
func (c *cache) put(e *cacheEntry) {
	if c.max <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.items[e.key]; ok {
		el.Value = e
		c.lru.MoveToFront(el)
		return
	}
	c.items[e.key] = c.lru.PushFront(e)
	for c.lru.Len() > c.max {
		old := c.lru.Back()
		c.lru.Remove(old)
		delete(c.items, old.Value.(*cacheEntry).key)
	}
}

// len returns the number of entries (expired ones included until touched).
func (c *cache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lru.Len()
}
