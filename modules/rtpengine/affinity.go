package rtpengine

import (
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"
)

// affinity remembers which instance each call lives on, for every loop of
// the process: the offer may be handled on one loop and the BYE's delete
// on another. It is sharded (a mutex per shard, so loops rarely contend),
// bounded (at most max entries; over it, expired entries go first, then an
// arbitrary one — a forgotten call only loses its affinity, and its next
// command is sent by weight) and entries expire ttl after their last use.
type affinity struct {
	seed   maphash.Seed
	shards [affinityShards]affinityShard
	perCap int
	ttl    time.Duration

	evicted atomic.Uint64
}

const affinityShards = 64

type affinityShard struct {
	mu sync.Mutex
	m  map[string]affinityEntry
}

type affinityEntry struct {
	inst    int
	expires int64 // unix nanoseconds
}

func newAffinity(max int, ttl time.Duration) *affinity {
	a := &affinity{seed: maphash.MakeSeed(), ttl: ttl, perCap: max / affinityShards}
	if a.perCap < 1 {
		a.perCap = 1
	}
	for i := range a.shards {
		a.shards[i].m = make(map[string]affinityEntry)
	}
	return a
}

func (a *affinity) shard(callID string) *affinityShard {
	return &a.shards[maphash.String(a.seed, callID)%affinityShards]
}

// get returns the instance of callID, refreshing its expiry.
func (a *affinity) get(callID string, now time.Time) (int, bool) {
	s := a.shard(callID)
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.m[callID]
	if !ok {
		return 0, false
	}
	if e.expires <= now.UnixNano() {
		delete(s.m, callID)
		return 0, false
	}
	e.expires = now.Add(a.ttl).UnixNano()
	s.m[callID] = e
	return e.inst, true
}

// set remembers that callID lives on inst.
func (a *affinity) set(callID string, inst int, now time.Time) {
	s := a.shard(callID)
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.m[callID]; !ok && len(s.m) >= a.perCap {
		a.makeRoom(s, now.UnixNano())
	}
	s.m[callID] = affinityEntry{inst: inst, expires: now.Add(a.ttl).UnixNano()}
}

// makeRoom drops expired entries of a full shard, or one arbitrary entry
// when none has expired. It runs only when the shard is full, so its cost
// is spread over the inserts that filled it.
func (a *affinity) makeRoom(s *affinityShard, now int64) {
	for k, e := range s.m {
		if e.expires <= now {
			delete(s.m, k)
		}
	}
	if len(s.m) < a.perCap {
		return
	}
	for k := range s.m {
		delete(s.m, k)
		a.evicted.Add(1)
		return
	}
}

func (a *affinity) remove(callID string) {
	s := a.shard(callID)
	s.mu.Lock()
	delete(s.m, callID)
	s.mu.Unlock()
}

func (a *affinity) len() int {
	n := 0
	for i := range a.shards {
		s := &a.shards[i]
		s.mu.Lock()
		n += len(s.m)
		s.mu.Unlock()
	}
	return n
}
