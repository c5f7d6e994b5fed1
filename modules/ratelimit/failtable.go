package ratelimit

import (
	"hash/maphash"
	"sync"
)

// tableParams are the timings a failure table works with (nanoseconds).
type tableParams struct {
	window, banFor, maxBan int64
}

// table is a bounded, sharded map of failure counters keyed by K. Like the
// Limiter's table, each shard is a map into a slice of entries that a
// CLOCK hand walks to evict the least recently seen, sparing banned ones.
type table[K comparable] struct {
	p      tableParams
	seed   maphash.Seed
	shards [shards]failShard[K]
}

type failShard[K comparable] struct {
	mu    sync.Mutex
	index map[K]int32
	ents  []failEntry[K]
	hand  int
	limit int
}

type failEntry[K comparable] struct {
	key   K
	count int   // failures in the current window
	start int64 // when the current window began (unix ns)
	until int64 // banned until (unix ns), 0 when never banned
	level int   // bans so far: the next one lasts banFor << level
	seen  int64 // last failure or check (unix ns)
	ref   bool  // seen since the hand last passed
}

func newTable[K comparable](maxTracked int, p tableParams) *table[K] {
	t := &table[K]{p: p, seed: maphash.MakeSeed()}
	for i := range t.shards {
		sh := &t.shards[i]
		sh.index = make(map[K]int32)
		sh.limit = maxTracked / shards
		if i < maxTracked%shards {
			sh.limit++
		}
		sh.limit = max(1, sh.limit)
	}
	return t
}

func (t *table[K]) shard(k K) *failShard[K] {
	return &t.shards[maphash.Comparable(t.seed, k)%shards]
}

// banned returns when k's ban ends, or 0 when k is not banned now.
func (t *table[K]) banned(k K, now int64) int64 {
	sh := t.shard(k)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	i, ok := sh.index[k]
	if !ok || sh.ents[i].until <= now {
		return 0
	}
	return sh.ents[i].until
}

// fail counts one failure of k. It returns when k's ban ends (0: not
// banned) and whether this failure started it.
func (t *table[K]) fail(k K, now int64, limit int) (until int64, started bool) {
	sh := t.shard(k)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	e := sh.lookup(k, now)
	e.ref, e.seen = true, now
	if e.until > now {
		return e.until, false // already banned: the ban is not extended
	}
	if e.until != 0 && now-e.until > t.p.maxBan {
		e.level = 0 // quiet for long enough: the back-off starts again
	}
	if now-e.start > t.p.window || e.start < e.until {
		e.count, e.start = 0, now // a new window (also after each ban)
	}
	e.count++
	if e.count < limit {
		return 0, false
	}
	d := t.p.maxBan
	if e.level < 62 && t.p.banFor<<e.level < t.p.maxBan && t.p.banFor<<e.level > 0 {
		d = t.p.banFor << e.level
	}
	e.level++
	e.until, e.count = now+d, 0
	return e.until, true
}

// reset clears k's failure count (its ban and back-off level stay).
func (t *table[K]) reset(k K) {
	sh := t.shard(k)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if i, ok := sh.index[k]; ok {
		sh.ents[i].count = 0
	}
}

func (t *table[K]) len() int {
	n := 0
	for i := range t.shards {
		sh := &t.shards[i]
		sh.mu.Lock()
		n += len(sh.index)
		sh.mu.Unlock()
	}
	return n
}

// lookup returns k's entry, adding one (and evicting another when the
// shard is full) if needed. Called with sh.mu held.
func (sh *failShard[K]) lookup(k K, now int64) *failEntry[K] {
	if i, ok := sh.index[k]; ok {
		return &sh.ents[i]
	}
	var i int32
	if len(sh.ents) < sh.limit {
		sh.ents = append(sh.ents, failEntry[K]{})
		i = int32(len(sh.ents) - 1)
	} else {
		i = sh.victim(now)
		delete(sh.index, sh.ents[i].key)
	}
	sh.ents[i] = failEntry[K]{key: k}
	sh.index[k] = i
	return &sh.ents[i]
}

// victim picks the entry to evict: the CLOCK hand skips (and clears) the
// recently seen ones, and banned ones for as long as another can go.
func (sh *failShard[K]) victim(now int64) int32 {
	n := len(sh.ents)
	for step := 0; step < 2*n; step++ {
		i := sh.hand
		sh.hand = (sh.hand + 1) % n
		e := &sh.ents[i]
		if e.ref {
			e.ref = false
			continue
		}
		if e.until <= now {
			return int32(i)
		}
	}
	i := sh.hand // every entry is banned: the next position goes
	sh.hand = (sh.hand + 1) % n
	return int32(i)
}
