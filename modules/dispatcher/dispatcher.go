package dispatcher

import (
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/emiago/sipgo/sip"

	"github.com/asyncsip/asyncsip/modules/shared"
)

// Errors of the dispatcher.
var (
	// ErrNoTarget: the set has no live target left to try (every target is
	// down, already tried, or the set is empty). Relay and RelayNext answer
	// it 503.
	ErrNoTarget = errors.New("dispatcher: no live target")
	// ErrUnknownSet: no set has that id.
	ErrUnknownSet = errors.New("dispatcher: unknown set")
	// ErrBadTarget: a target's URI, weight or priority is not valid, or a
	// target is added twice to a set.
	ErrBadTarget = errors.New("dispatcher: bad target")
	// ErrNoSelection: Next was called on a Context that Select did not
	// see.
	ErrNoSelection = errors.New("dispatcher: no selection on this transaction")
)

// MaxWeight is the largest Target.Weight.
const MaxWeight = 1 << 16

// Target is one destination of a set.
type Target struct {
	// URI is where a selected call goes, as the next hop (the Request-URI
	// stays): "sip:10.0.0.1:5060", "sip:gw1.example.com;transport=tcp", or
	// a bare "10.0.0.1:5060". The same URI in two sets is probed once and
	// shares its state.
	URI string `json:"uri"`
	// Weight is the target's share under Weighted (0 means 1; at most
	// MaxWeight).
	Weight int `json:"weight,omitempty"`
	// Priority orders targets under Priority: lower values first.
	Priority int `json:"priority,omitempty"`
	// Attrs are the operator's attributes (a trunk name, a prefix to add…),
	// returned with the target; treat them as read-only.
	Attrs map[string]string `json:"attrs,omitempty"`
}

// SetConfig is a destination set: an id, an algorithm and its targets.
type SetConfig struct {
	// ID names the set in Select.
	ID string `json:"id"`
	// Algorithm chooses a target for each call (default RoundRobin).
	Algorithm Algorithm `json:"algorithm,omitempty"`
	// Targets are the destinations, in the order the operator gave them.
	Targets []Target `json:"targets"`
}

// Config configures a Dispatcher. The zero value is usable: no probing
// until Start, round-robin sets added with Replace or SetSet.
type Config struct {
	// Sets are the initial sets.
	Sets []SetConfig
	// Probe configures health probing (Start).
	Probe ProbeConfig
	// Load reports a target's load for LeastLoaded sets (its active calls:
	// dialog.Profile("trunk").Count(t.URI), say); it is called on the
	// loops, once per target per selection, and must be cheap and safe
	// for concurrent use. Required by LeastLoaded sets.
	Load func(t Target) int
	// Observer, when set, is told of state changes and probes.
	Observer Observer
	// Logger receives state changes (default slog.Default()).
	Logger *slog.Logger
	// Board, when set, shares the targets' states with every instance that
	// shares it (modules/shared/sharedredis): each instance probes, every
	// state change it sees is published, and each instance applies the
	// changes published by the others once per probe Interval. See
	// shared.go.
	Board shared.Board
	// Instance names this instance in the changes it publishes (default:
	// the host name and process id).
	Instance string
}

// Dispatcher holds destination sets, chooses a target per call and probes
// the targets' health. All of its methods are safe from any goroutine:
// the sets are an immutable snapshot swapped atomically on each change, so
// the loops select without a lock and a change never disturbs a call
// being routed; a target removed gets no call that selects after the
// change returns.
type Dispatcher struct {
	cfg  Config
	log  *slog.Logger
	key  string // Context value key, unique to this dispatcher
	snap atomic.Pointer[snapshot]

	mu      sync.Mutex                // serializes changes
	configs map[string]SetConfig      // set id → its config, the source of snap
	rr      map[string]*atomic.Uint64 // set id → selection counter, kept across changes

	count counters
}

// snapshot is one immutable version of every set.
type snapshot struct {
	sets   map[string]*set
	health []*health // every distinct target, in a stable order
}

type set struct {
	id      string
	alg     Algorithm
	entries []entry // configured order; by priority for Priority
	n       *atomic.Uint64
	load    func(Target) int // LeastLoaded

	mu sync.Mutex // Weighted: cw
	cw []int64
}

type entry struct {
	idx  int // in set.entries
	t    Target
	h    *health
	hash uint64 // of the URI, for rendezvous hashing
}

// New returns a Dispatcher with cfg.Sets loaded.
func New(cfg Config) (*Dispatcher, error) {
	d := &Dispatcher{cfg: cfg, log: cfg.Logger, configs: map[string]SetConfig{}, rr: map[string]*atomic.Uint64{}}
	if d.log == nil {
		d.log = slog.Default()
	}
	d.key = fmt.Sprintf("dispatcher.%p", d)
	d.snap.Store(&snapshot{sets: map[string]*set{}})
	if err := d.Replace(cfg.Sets...); err != nil {
		return nil, err
	}
	return d, nil
}

// Replace replaces every set with sets (a reload). Targets kept across the
// change keep their state (up or down, counters).
func (d *Dispatcher) Replace(sets ...SetConfig) error {
	next := make(map[string]SetConfig, len(sets))
	for _, s := range sets {
		if _, dup := next[s.ID]; dup {
			return fmt.Errorf("%w: set %q given twice", ErrBadTarget, s.ID)
		}
		next[s.ID] = s
	}
	return d.change(func(map[string]SetConfig) (map[string]SetConfig, error) { return next, nil })
}

// SetSet adds the set, or replaces the set with the same id.
func (d *Dispatcher) SetSet(s SetConfig) error {
	return d.change(func(cur map[string]SetConfig) (map[string]SetConfig, error) {
		cur[s.ID] = s
		return cur, nil
	})
}

// DeleteSet removes a set.
func (d *Dispatcher) DeleteSet(id string) error {
	return d.change(func(cur map[string]SetConfig) (map[string]SetConfig, error) {
		if _, ok := cur[id]; !ok {
			return nil, fmt.Errorf("%w: %q", ErrUnknownSet, id)
		}
		delete(cur, id)
		return cur, nil
	})
}

// AddTarget adds t to a set, creating a round-robin set when id is new.
func (d *Dispatcher) AddTarget(id string, t Target) error {
	return d.change(func(cur map[string]SetConfig) (map[string]SetConfig, error) {
		s := cur[id]
		s.ID = id
		s.Targets = append(slices.Clip(s.Targets), t)
		cur[id] = s
		return cur, nil
	})
}

// UpdateTarget replaces the target of set id that has t's URI (its weight,
// priority and attributes); its state is kept.
func (d *Dispatcher) UpdateTarget(id string, t Target) error {
	return d.editTarget(id, t.URI, func(ts []Target, i int) []Target {
		ts = slices.Clone(ts)
		ts[i] = t
		return ts
	})
}

// RemoveTarget removes the target with that URI from set id. A call
// selected after RemoveTarget returns never gets it; calls already sent
// there go on.
func (d *Dispatcher) RemoveTarget(id, uri string) error {
	return d.editTarget(id, uri, func(ts []Target, i int) []Target { return slices.Delete(slices.Clone(ts), i, i+1) })
}

func (d *Dispatcher) editTarget(id, uri string, edit func([]Target, int) []Target) error {
	return d.change(func(cur map[string]SetConfig) (map[string]SetConfig, error) {
		s, ok := cur[id]
		if !ok {
			return nil, fmt.Errorf("%w: %q", ErrUnknownSet, id)
		}
		want, err := normalizeURI(uri)
		if err != nil {
			return nil, err
		}
		for i, t := range s.Targets {
			if u, _ := normalizeURI(t.URI); u == want {
				s.Targets = edit(s.Targets, i)
				cur[id] = s
				return cur, nil
			}
		}
		return nil, fmt.Errorf("%w: %q is not in set %q", ErrBadTarget, uri, id)
	})
}

// change applies edit to a copy of the configs, builds the snapshot and
// publishes it; on error nothing changes.
func (d *Dispatcher) change(edit func(map[string]SetConfig) (map[string]SetConfig, error)) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	cur := make(map[string]SetConfig, len(d.configs))
	for k, v := range d.configs {
		cur[k] = v
	}
	next, err := edit(cur)
	if err != nil {
		return err
	}
	snap, err := d.build(next)
	if err != nil {
		return err
	}
	old := d.snap.Swap(snap)
	d.configs = next
	live := make(map[*health]bool, len(snap.health))
	for _, h := range snap.health {
		live[h] = true
	}
	for _, h := range old.health {
		if !live[h] {
			h.removed.Store(true) // a probe in flight reports to nobody
		}
	}
	for id := range d.rr {
		if _, ok := next[id]; !ok {
			delete(d.rr, id)
		}
	}
	return nil
}

// build makes a snapshot of configs, reusing the health of targets the
// current snapshot has.
func (d *Dispatcher) build(configs map[string]SetConfig) (*snapshot, error) {
	known := map[string]*health{}
	for _, h := range d.snap.Load().health {
		known[h.uri] = h
	}
	snap := &snapshot{sets: make(map[string]*set, len(configs))}
	used := map[string]*health{}
	for id, sc := range configs {
		if id == "" {
			return nil, fmt.Errorf("%w: set without id", ErrBadTarget)
		}
		if !sc.Algorithm.valid() {
			return nil, fmt.Errorf("%w: set %q: algorithm %d", ErrBadTarget, id, sc.Algorithm)
		}
		if sc.Algorithm == LeastLoaded && d.cfg.Load == nil {
			return nil, fmt.Errorf("%w: set %q: least-loaded needs Config.Load", ErrBadTarget, id)
		}
		s := &set{id: id, alg: sc.Algorithm, n: d.rr[id], load: d.cfg.Load}
		if s.n == nil {
			s.n = new(atomic.Uint64)
			d.rr[id] = s.n
		}
		seen := map[string]bool{}
		for _, t := range sc.Targets {
			uri, err := normalizeURI(t.URI)
			if err != nil {
				return nil, fmt.Errorf("set %q: %w", id, err)
			}
			switch {
			case seen[uri]:
				return nil, fmt.Errorf("%w: set %q has %q twice", ErrBadTarget, id, uri)
			case t.Weight < 0 || t.Weight > MaxWeight:
				return nil, fmt.Errorf("%w: set %q: %q: weight %d not in 0..%d", ErrBadTarget, id, uri, t.Weight, MaxWeight)
			}
			seen[uri] = true
			t.URI = uri
			if t.Weight == 0 {
				t.Weight = 1
			}
			h := used[uri]
			if h == nil {
				if h = known[uri]; h == nil {
					h = newHealth(uri)
				}
				used[uri] = h
				snap.health = append(snap.health, h)
			}
			s.entries = append(s.entries, entry{t: t, h: h, hash: h.hash})
		}
		if s.alg == Priority {
			slices.SortStableFunc(s.entries, func(a, b entry) int { return a.t.Priority - b.t.Priority })
		}
		for i := range s.entries {
			s.entries[i].idx = i
		}
		s.cw = make([]int64, len(s.entries))
		snap.sets[id] = s
	}
	slices.SortFunc(snap.health, func(a, b *health) int { return strings.Compare(a.uri, b.uri) })
	return snap, nil
}

// Sets returns the configuration of every set, sorted by id.
func (d *Dispatcher) Sets() []SetConfig {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]SetConfig, 0, len(d.configs))
	for _, s := range d.configs {
		s.Targets = slices.Clone(s.Targets)
		out = append(out, s)
	}
	slices.SortFunc(out, func(a, b SetConfig) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// normalizeURI parses a target as tm does ("sip:" added to a bare
// host[:port]) and returns it in one canonical spelling.
func normalizeURI(s string) (string, error) {
	in := strings.TrimSpace(s)
	if !strings.HasPrefix(strings.ToLower(in), "sip:") && !strings.HasPrefix(strings.ToLower(in), "sips:") {
		in = "sip:" + in
	}
	var u sip.Uri
	if err := sip.ParseUri(in, &u); err != nil {
		return "", fmt.Errorf("%w: %q: %v", ErrBadTarget, s, err)
	}
	if u.Host == "" {
		return "", fmt.Errorf("%w: %q has no host", ErrBadTarget, s)
	}
	out := u.String()
	if strings.ContainsAny(out, "\r\n\x00 ") {
		return "", fmt.Errorf("%w: %q", ErrBadTarget, s)
	}
	return out, nil
}

func hashString(s string) uint64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte(s))
	return h.Sum64()
}
