package dispatcher

import (
	"fmt"
	"strings"
)

// Algorithm chooses a target of a set for each call.
type Algorithm int

const (
	// RoundRobin spreads calls evenly over the live targets, in turn.
	RoundRobin Algorithm = iota
	// Weighted gives each live target a share of the calls proportional to
	// its Weight, interleaved (smooth weighted round-robin): over every run
	// of W calls (W the sum of the live weights) each target gets exactly
	// its weight.
	Weighted
	// HashCallID sends every request of a Call-ID to the same target
	// (rendezvous hashing: adding or removing a target moves only the
	// calls of that target).
	HashCallID
	// HashFromUser is HashCallID over the From user (the Call-ID when the
	// From URI has no user): a caller sticks to one target.
	HashFromUser
	// HashRURIUser is HashCallID over the Request-URI user (the Call-ID
	// when there is none): a called number sticks to one target.
	HashRURIUser
	// Priority sends calls to the live targets of the lowest Priority value,
	// in turn among equals; the others are failover targets, tried in
	// priority order.
	Priority
	// LeastLoaded sends calls to the live target with the least load as
	// Config.Load reports it (the active calls of a dialog profile, say), in
	// turn among equals.
	LeastLoaded
)

var algorithmNames = []string{"round-robin", "weighted", "hash-callid", "hash-from-user", "hash-ruri-user", "priority", "least-loaded"}

func (a Algorithm) valid() bool { return a >= 0 && int(a) < len(algorithmNames) }

// String returns the algorithm's name ("round-robin", "weighted",
// "hash-callid", "hash-from-user", "hash-ruri-user", "priority").
func (a Algorithm) String() string {
	if !a.valid() {
		return fmt.Sprintf("Algorithm(%d)", int(a))
	}
	return algorithmNames[a]
}

// MarshalText implements encoding.TextMarshaler.
func (a Algorithm) MarshalText() ([]byte, error) {
	if !a.valid() {
		return nil, fmt.Errorf("dispatcher: algorithm %d", int(a))
	}
	return []byte(a.String()), nil
}

// UnmarshalText implements encoding.TextUnmarshaler: one of the names
// String returns.
func (a *Algorithm) UnmarshalText(b []byte) error {
	name := strings.ToLower(strings.TrimSpace(string(b)))
	for i, n := range algorithmNames {
		if n == name {
			*a = Algorithm(i)
			return nil
		}
	}
	return fmt.Errorf("dispatcher: unknown algorithm %q (want one of %s)", b, strings.Join(algorithmNames, ", "))
}

// pick chooses among the entries of s that ok accepts, for the call
// numbered n with hash key key. It returns -1 when ok accepts none. Every
// algorithm costs one or two passes over the set: sets are small (tens of
// targets), and a pass over a few cache lines costs less than keeping a
// live list in step with probe results.
func (s *set) pick(n, key uint64, ok func(*entry) bool) int {
	switch s.alg {
	case Weighted:
		return s.pickWeighted(ok)
	case HashCallID, HashFromUser, HashRURIUser:
		return s.pickHash(key, ok)
	case LeastLoaded:
		return s.pickLeast(n, ok)
	case Priority:
		// Entries are sorted by priority: the first accepted has the best.
		for i := range s.entries {
			if ok(&s.entries[i]) {
				best := s.entries[i].t.Priority
				return s.pickNth(n, func(e *entry) bool { return e.t.Priority == best && ok(e) })
			}
		}
		return -1
	default:
		return s.pickNth(n, ok)
	}
}

// pickLeast returns, in turn among equals, an accepted entry of the least
// load. Loads are read once per call: they move under our feet.
func (s *set) pickLeast(n uint64, ok func(*entry) bool) int {
	var buf [32]int
	loads := buf[:0]
	if len(s.entries) > len(buf) {
		loads = make([]int, 0, len(s.entries))
	}
	least, found := 0, false
	for i := range s.entries {
		l := 0
		if ok(&s.entries[i]) {
			l = s.load(s.entries[i].t)
			if !found || l < least {
				least, found = l, true
			}
		}
		loads = append(loads, l)
	}
	if !found {
		return -1
	}
	return s.pickNth(n, func(e *entry) bool { return loads[e.idx] == least && ok(e) })
}

// pickNth returns the (n mod live)th accepted entry.
func (s *set) pickNth(n uint64, ok func(*entry) bool) int {
	live := uint64(0)
	for i := range s.entries {
		if ok(&s.entries[i]) {
			live++
		}
	}
	if live == 0 {
		return -1
	}
	k := n % live
	for i := range s.entries {
		if ok(&s.entries[i]) {
			if k == 0 {
				return i
			}
			k--
		}
	}
	return -1
}

// pickWeighted is smooth weighted round-robin (the one nginx uses): each
// accepted entry gains its weight, the richest is chosen and pays the total.
// Over every W calls (W the sum of the live weights) each entry gets
// exactly its weight, spread out rather than in blocks. The state is the
// set's, under its lock (a few nanoseconds per call), and starts afresh
// with each change of the sets.
func (s *set) pickWeighted(ok func(*entry) bool) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	best, total := -1, int64(0)
	for i := range s.entries {
		if !ok(&s.entries[i]) {
			continue
		}
		w := int64(s.entries[i].t.Weight)
		s.cw[i] += w
		total += w
		if best < 0 || s.cw[i] > s.cw[best] {
			best = i
		}
	}
	if best >= 0 {
		s.cw[best] -= total
	}
	return best
}

// pickHash is rendezvous (highest random weight) hashing: the accepted
// entry whose mix of key and URI hash scores highest.
func (s *set) pickHash(key uint64, ok func(*entry) bool) int {
	best, score := -1, uint64(0)
	for i := range s.entries {
		e := &s.entries[i]
		if !ok(e) {
			continue
		}
		if v := mix(key ^ e.hash); best < 0 || v > score {
			best, score = i, v
		}
	}
	return best
}

// mix is splitmix64's finalizer.
func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}
