package dialog

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/asyncsip/asyncsip/async"
	"github.com/asyncsip/asyncsip/modules/shared"
	"github.com/asyncsip/asyncsip/reactor"
	"github.com/asyncsip/asyncsip/tm"
)

// Profiles shared by several instances (Config.Counter).
//
// TrackShared counts a call in the shared counter before it tracks it
// locally; the local Store counts it too, and bounds each instance by the
// same limits. Each instance states its own counts to the counter with a
// heartbeat (StartShared): the counter sums the parts of the instances
// alive, so the calls of an instance that died stop counting when its
// heartbeat stops, and a count lost while the counter was unreachable is
// corrected by the next beat. Between two beats a count may be high by the
// acquires and releases in flight, never low: the heartbeat adds the
// acquires and releases not yet answered to the calls tracked.
//
// When the counter fails (timeout, Redis down) the call goes on counted
// locally only (Config.CounterFailClosed refuses it instead): each instance
// then enforces the limits on its own calls, and the heartbeat brings the
// shared count back in line when the counter returns.

// Defaults of the shared profile counter.
const (
	// DefaultCounterTimeout is the default of Config.CounterTimeout.
	DefaultCounterTimeout = 500 * time.Millisecond
	// DefaultCounterSync is the default of Config.CounterSync.
	DefaultCounterSync = time.Second
)

// ErrCounterUnavailable is the error of TrackShared when the shared
// counter failed and Config.CounterFailClosed is set; it wraps the
// counter's error.
var ErrCounterUnavailable = errors.New("dialog: shared profile counter unavailable")

// sharedState is the tracker's bookkeeping of the shared counter.
type sharedState struct {
	mu       sync.Mutex
	names    map[string]bool // profile names tracked with TrackShared
	inFlight map[string]int  // key → acquires and releases not answered yet
}

// profileKey is the counter key of a profile value.
func profileKey(p, v string) string { return p + "/" + v }

func (t *Tracker) counterTimeout() time.Duration {
	if t.cfg.CounterTimeout > 0 {
		return t.cfg.CounterTimeout
	}
	return DefaultCounterTimeout
}

func (s *sharedState) add(key string, n int) {
	s.inFlight[key] += n
	if s.inFlight[key] <= 0 {
		delete(s.inFlight, key)
	}
}

// TrackShared is Track with o.Profiles counted across instances by
// Config.Counter (without one it is Track, answered inline). It counts the
// call in each profile value — refused with ErrLimit when a value is at its
// limit over every instance —, then tracks it as Track does, and calls then
// with the outcome on c's loop; the route answers from then (486, 503).
// Each counter op is bounded by Config.CounterTimeout. c must be an initial
// INVITE in the request route.
func (t *Tracker) TrackShared(c *tm.Context, o Options, then func(error)) {
	if t.cfg.Counter == nil || len(o.Profiles) == 0 {
		then(t.Track(c, o))
		return
	}
	if _, ok := c.Get(ctxKey); ok {
		then(ErrTracked)
		return
	}
	s := &t.sh
	s.mu.Lock()
	for _, p := range o.Profiles {
		s.names[p.Profile] = true
		s.add(profileKey(p.Profile, p.Value), 1)
	}
	s.mu.Unlock()
	st := &sharedTrack{t: t, c: c, o: o, then: then}
	st.next()
}

// sharedTrack is one TrackShared in progress.
type sharedTrack struct {
	t        *Tracker
	c        *tm.Context
	o        Options
	then     func(error)
	i        int      // the profile value being counted
	acquired []string // keys counted in the shared counter
}

// next counts the next profile value, or tracks the call after the last.
func (st *sharedTrack) next() {
	t := st.t
	if st.i == len(st.o.Profiles) {
		// Tracked first, then no longer in flight: a heartbeat in
		// between counts the call twice (high until the next beat), never
		// zero times.
		err := t.Track(st.c, st.o)
		t.sh.mu.Lock()
		st.settle()
		t.sh.mu.Unlock()
		if err != nil {
			t.releaseShared(st.c.Loop(), st.acquired)
		} else if cl := tracked(st.c); cl != nil {
			cl.shared = st.acquired
		}
		st.then(err)
		return
	}
	p := st.o.Profiles[st.i]
	key := profileKey(p.Profile, p.Value)
	async.Await(st.c, t.cfg.Counter.Acquire(key, p.Limit), func(a shared.Acquired, err error) {
		switch {
		case err != nil && t.cfg.CounterFailClosed:
			t.sharedFailed.Add(1)
			st.fail(fmt.Errorf("%w: %w", ErrCounterUnavailable, err))
		case err != nil:
			t.sharedFailed.Add(1)
			t.log.Warn("dialog: shared profile counter failed; the call counts locally only",
				"profile", p.Profile, "value", p.Value, "err", err)
			st.i++
			st.next()
		case !a.OK:
			t.limited.Add(1)
			st.fail(fmt.Errorf("%w: profile %q value %q has %d of %d over every instance",
				ErrLimit, p.Profile, p.Value, a.Total, p.Limit))
		default:
			st.acquired = append(st.acquired, key)
			st.i++
			st.next()
		}
	}, async.Timeout(t.counterTimeout()), async.Name("dialog.acquire"))
}

// settle removes the in-flight marks of the profiles; t.sh.mu held.
func (st *sharedTrack) settle() {
	for _, p := range st.o.Profiles {
		st.t.sh.add(profileKey(p.Profile, p.Value), -1)
	}
}

// fail gives up: the shared counts taken are released.
func (st *sharedTrack) fail(err error) {
	st.t.sh.mu.Lock()
	st.settle()
	st.t.sh.mu.Unlock()
	st.t.releaseShared(st.c.Loop(), st.acquired)
	st.then(err)
}

// releaseShared releases keys in the shared counter from loop l (fire and
// forget, bounded); each stays in flight until answered.
func (t *Tracker) releaseShared(l *reactor.Loop, keys []string) {
	ctr := t.cfg.Counter
	if ctr == nil || len(keys) == 0 {
		return
	}
	s := &t.sh
	s.mu.Lock()
	for _, key := range keys {
		s.add(key, 1)
	}
	s.mu.Unlock()
	for _, key := range keys {
		async.Launch(l, ctr.Release(key), func(_ int, err error) {
			s.mu.Lock()
			s.add(key, -1)
			s.mu.Unlock()
			if err != nil {
				t.sharedFailed.Add(1)
			}
		}, async.Timeout(t.counterTimeout()), async.Name("dialog.release"))
	}
}

// StartShared runs the heartbeat of the shared counter (Config.Counter)
// every Config.CounterSync on g's loops: it states this instance's counts
// — the calls tracked with TrackShared plus the counter ops in flight — and
// keeps the instance alive. Stop the job when done (the instance's counts
// then expire with the counter's TTL). Without a counter it fails.
func (t *Tracker) StartShared(g *reactor.Group) (*reactor.Job, error) {
	if t.cfg.Counter == nil {
		return nil, errors.New("dialog: StartShared without Config.Counter")
	}
	if g == nil {
		return nil, errors.New("dialog: StartShared needs the server's reactor.Group")
	}
	every := t.cfg.CounterSync
	if every <= 0 {
		every = DefaultCounterSync
	}
	return g.Every(every, func(l *reactor.Loop) { t.SyncShared(l) }, reactor.Skip)
}

// SyncShared sends one heartbeat from loop l (StartShared runs it
// periodically); the result is counted in Stats.SharedFailed on failure.
func (t *Tracker) SyncShared(l *reactor.Loop) {
	async.Launch(l, t.cfg.Counter.Sync(t.ownCounts()), func(_ struct{}, err error) {
		if err != nil {
			t.sharedFailed.Add(1)
			t.log.Debug("dialog: shared profile heartbeat failed", "err", err)
		}
	}, async.Timeout(t.counterTimeout()), async.Name("dialog.sync"))
}

// ownCounts is this instance's part of the shared counts: the local counts
// of the profiles tracked with TrackShared plus the ops in flight.
func (t *Tracker) ownCounts() map[string]int {
	s := &t.sh
	s.mu.Lock()
	defer s.mu.Unlock()
	own := map[string]int{}
	for name := range s.names {
		for v, n := range t.store.Values(name) {
			own[profileKey(name, v)] += n
		}
	}
	for k, n := range s.inFlight {
		own[k] += n
	}
	return own
}

// Total returns the calls counted under value over every instance (the
// shared counter), or Count's local figure without one.
func (p Profile) Total(value string) async.Op[int] {
	if c := p.t.cfg.Counter; c != nil {
		return c.Total(profileKey(p.name, value))
	}
	return async.Done(p.Count(value), nil)
}
