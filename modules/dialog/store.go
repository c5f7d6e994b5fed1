package dialog

import (
	"hash/maphash"
	"sync"
	"time"

	"github.com/asyncsip/asyncsip/tm"
)

// ID names a tracked call: its Call-ID and the caller's From tag, known
// from the INVITE on (the callee's tag comes with its answer, and forks
// answer with several).
type ID struct {
	CallID    string
	CallerTag string
}

// Record is what a Store keeps of a call: what another instance would need
// to count it in profiles and to end it with a BYE to each side.
type Record struct {
	ID
	// State is the call's state (Early once a provisional answer with a
	// To tag arrived, Confirmed on the 2xx).
	State State
	// CalleeTag is the To tag of the confirmed dialog (empty before).
	CalleeTag string
	// EarlyTags are the To tags of the early dialogs (one per fork that
	// answered with a provisional response and a tag; at most 16).
	EarlyTags []string
	// Created is when Track was called, Confirmed when the 2xx passed
	// (zero before), on the loop's clock.
	Created, Confirmed time.Time
	// Profiles are the profile values the call counts in.
	Profiles []ProfileValue
	// ToCallee and ToCaller are the dialog state the proxy sends requests
	// with (tm.Server.CallDialogs), filled when the call is confirmed.
	ToCallee, ToCaller tm.DialogState
}

// Store keeps the records of tracked calls and the profile counts. The
// tracker calls it from every loop at once, so an implementation is safe
// for concurrent use; it must not block for long (it is called on the
// loops). NewMemoryStore is the in-process one; a shared store (for
// several instances counting the same profiles) implements the same
// contract.
type Store interface {
	// Put inserts or replaces rec.
	Put(rec Record)
	// Delete removes the record of id and reports whether it was there:
	// true for exactly one caller, which then releases the record's
	// profile values (Leave).
	Delete(id ID) bool
	// Get returns the record of id.
	Get(id ID) (Record, bool)
	// Len returns the number of records.
	Len() int
	// Join counts one more call in profile name with value, unless limit
	// is above zero and limit calls are counted already: then it counts
	// nothing and returns ok false. It returns the count after the call.
	Join(name, value string, limit int) (count int, ok bool)
	// Leave counts one call fewer in profile name with value (never below
	// zero) and returns the count after the call.
	Leave(name, value string) int
	// Count returns how many calls are counted in profile name with value.
	Count(name, value string) int
	// Values returns the values of profile name with their counts (the
	// values counted now, not those that dropped to zero).
	Values(name string) map[string]int
}

// memShards is the number of lock shards of the memory store: enough for
// the loops of a large machine not to queue on one lock.
const memShards = 64

// MemoryStore is the in-process Store: records and profile counts in
// sharded maps under mutexes. Its zero value is not usable: call
// NewMemoryStore.
type MemoryStore struct {
	seed     maphash.Seed
	recs     [memShards]recShard
	profMu   sync.Mutex
	profiles map[string]map[string]int
}

type recShard struct {
	mu sync.Mutex
	m  map[ID]Record
}

// NewMemoryStore returns an empty in-process store.
func NewMemoryStore() *MemoryStore {
	s := &MemoryStore{seed: maphash.MakeSeed(), profiles: map[string]map[string]int{}}
	for i := range s.recs {
		s.recs[i].m = map[ID]Record{}
	}
	return s
}

func (s *MemoryStore) shard(id ID) *recShard {
	return &s.recs[maphash.String(s.seed, id.CallID)%memShards]
}

// Put implements Store.
func (s *MemoryStore) Put(rec Record) {
	sh := s.shard(rec.ID)
	sh.mu.Lock()
	sh.m[rec.ID] = rec
	sh.mu.Unlock()
}

// Delete implements Store.
func (s *MemoryStore) Delete(id ID) bool {
	sh := s.shard(id)
	sh.mu.Lock()
	_, ok := sh.m[id]
	delete(sh.m, id)
	sh.mu.Unlock()
	return ok
}

// Get implements Store.
func (s *MemoryStore) Get(id ID) (Record, bool) {
	sh := s.shard(id)
	sh.mu.Lock()
	r, ok := sh.m[id]
	sh.mu.Unlock()
	return r, ok
}

// Len implements Store.
func (s *MemoryStore) Len() int {
	n := 0
	for i := range s.recs {
		s.recs[i].mu.Lock()
		n += len(s.recs[i].m)
		s.recs[i].mu.Unlock()
	}
	return n
}

// Join implements Store.
func (s *MemoryStore) Join(name, value string, limit int) (int, bool) {
	s.profMu.Lock()
	defer s.profMu.Unlock()
	vals := s.profiles[name]
	if vals == nil {
		vals = map[string]int{}
		s.profiles[name] = vals
	}
	n := vals[value]
	if limit > 0 && n >= limit {
		return n, false
	}
	vals[value] = n + 1
	return n + 1, true
}

// Leave implements Store.
func (s *MemoryStore) Leave(name, value string) int {
	s.profMu.Lock()
	defer s.profMu.Unlock()
	vals := s.profiles[name]
	n := vals[value] - 1
	if n <= 0 {
		delete(vals, value) // values do not accumulate
		return 0
	}
	vals[value] = n
	return n
}

// Count implements Store.
func (s *MemoryStore) Count(name, value string) int {
	s.profMu.Lock()
	defer s.profMu.Unlock()
	return s.profiles[name][value]
}

// Values implements Store.
func (s *MemoryStore) Values(name string) map[string]int {
	s.profMu.Lock()
	defer s.profMu.Unlock()
	out := make(map[string]int, len(s.profiles[name]))
	for v, n := range s.profiles[name] {
		out[v] = n
	}
	return out
}
