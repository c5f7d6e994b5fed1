package dispatcher

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/asyncsip/asyncsip/async"
	"github.com/asyncsip/asyncsip/reactor"
	"github.com/asyncsip/asyncsip/tm"
)

// Probing (Start): every target is sent an OPTIONS once per Interval, from
// a timer job and not a goroutine per target. The job ticks Slices times
// per interval, each tick on the least busy loop (reactor.Group.Every),
// and probes the targets of one slice (a target's slice is the hash of its
// URI), so probes are spread over the interval and over the loops; each
// probe is a tm client transaction (Server.Originate) whose outcome comes
// back on the loop of its tick. A target has at most one probe in flight,
// and the dispatcher at most MaxInFlight.

// Defaults of ProbeConfig.
const (
	DefaultInterval     = 10 * time.Second
	DefaultFailAfter    = 3
	DefaultRecoverAfter = 2
	DefaultMaxInFlight  = 1000
	// DefaultProbeTimeout bounds a probe when the interval is longer.
	DefaultProbeTimeout = 5 * time.Second
)

// ProbeConfig configures health probing. The zero value probes every 10 s,
// takes a target down after 3 failures in a row and back after 2
// successes, and counts any response as alive.
type ProbeConfig struct {
	// Interval is the time between two probes of a target (default 10 s).
	Interval time.Duration
	// Timeout bounds one probe: no final response by then is a failure
	// (default the smaller of Interval/2 and 5 s; at most 90 % of
	// Interval, so that a probe ends before the target's next turn).
	Timeout time.Duration
	// FailAfter is the number of failed probes in a row that take an up
	// target down (default 3).
	FailAfter int
	// RecoverAfter is the number of successful probes in a row that bring a
	// down target back (default 2).
	RecoverAfter int
	// FailureCodes are the responses that count as failures: a status
	// code (503), or a class digit (5 for every 5xx). Any other response,
	// whatever its code, proves the target alive.
	FailureCodes []int
	// MaxInFlight caps the probes in flight; a target whose turn comes
	// beyond it is skipped until its next turn (counted in
	// Stats.ProbesSkipped). Default 1000.
	MaxInFlight int
	// Slices is the number of ticks per interval the targets are spread
	// over (default the number of loops, at most 64).
	Slices int
	// From is the From URI of the probes (default the proxy's address).
	From string
}

func (p ProbeConfig) withDefaults(loops int) ProbeConfig {
	if p.Interval <= 0 {
		p.Interval = DefaultInterval
	}
	// A probe must end before the target's next turn, else that turn is
	// skipped (its probe still out) and a dead target is found twice as
	// late.
	if p.Timeout <= 0 {
		p.Timeout = min(p.Interval/2, DefaultProbeTimeout)
	}
	p.Timeout = min(p.Timeout, p.Interval*9/10)
	if p.FailAfter <= 0 {
		p.FailAfter = DefaultFailAfter
	}
	if p.RecoverAfter <= 0 {
		p.RecoverAfter = DefaultRecoverAfter
	}
	if p.MaxInFlight <= 0 {
		p.MaxInFlight = DefaultMaxInFlight
	}
	if p.Slices <= 0 {
		p.Slices = loops
	}
	p.Slices = max(1, min(p.Slices, 64, int(p.Interval/time.Millisecond)))
	return p
}

func (p ProbeConfig) failure(code int) bool {
	for _, f := range p.FailureCodes {
		if f == code || (f >= 1 && f <= 6 && code/100 == f) {
			return true
		}
	}
	return false
}

// health is the state of one distinct target URI, shared by every set that
// has it and kept across snapshots.
type health struct {
	uri      string
	hash     uint64
	up       atomic.Bool
	probing  atomic.Bool // a probe is in flight
	removed  atomic.Bool // in no set any more
	selected atomic.Uint64

	mu         sync.Mutex // the fields below; updated by probe reports
	fails, oks int        // in a row
	probes     uint64
	failed     uint64
	lastCode   int
	lastErr    string
	since      time.Time // of the last state change (zero: never changed)
}

func newHealth(uri string) *health {
	h := &health{uri: uri, hash: hashString(uri)}
	h.up.Store(true) // a new target is trusted until probes say otherwise
	return h
}

// Prober is the probing job started by Start.
type Prober struct {
	d   *Dispatcher
	srv *tm.Server
	cfg ProbeConfig
	job *reactor.Job

	tick     atomic.Uint64
	inFlight atomic.Int64
}

// Start probes the targets of d with OPTIONS sent by srv from a timer job
// of g (the server's group: asyncsip.Server.Group()), as cfg.Probe says.
// Stop the returned Prober before the server shuts down; probes in flight
// then end on their own timeout.
func (d *Dispatcher) Start(srv *tm.Server, g *reactor.Group) (*Prober, error) {
	cfg := d.cfg.Probe.withDefaults(g.Len())
	if cfg.From != "" {
		if _, err := srv.NewRequest(tm.OutOfDialog{Method: sip.OPTIONS, Target: "sip:check.invalid", From: cfg.From}); err != nil {
			return nil, fmt.Errorf("dispatcher: probe From: %w", err)
		}
	}
	p := &Prober{d: d, srv: srv, cfg: cfg}
	job, err := g.Every(cfg.Interval/time.Duration(cfg.Slices), p.run, reactor.Skip)
	if err != nil {
		return nil, err
	}
	p.job = job
	return p, nil
}

// Stop stops probing. Targets keep their state.
func (p *Prober) Stop() { p.job.Stop() }

// Config returns the probing configuration in effect (defaults filled).
func (p *Prober) Config() ProbeConfig { return p.cfg }

// run is one tick, on a loop: it probes the targets of the next slice.
func (p *Prober) run(l *reactor.Loop) {
	slice := (p.tick.Add(1) - 1) % uint64(p.cfg.Slices)
	if slice == 0 && p.d.cfg.Board != nil {
		p.fetchShared(l) // once per interval
	}
	for _, h := range p.d.snap.Load().health {
		if h.hash%uint64(p.cfg.Slices) == slice {
			p.probe(l, h)
		}
	}
}

func (p *Prober) probe(l *reactor.Loop, h *health) {
	if !h.probing.CompareAndSwap(false, true) {
		p.d.count.skipped.Add(1) // the last probe is still out
		return
	}
	if p.inFlight.Add(1) > int64(p.cfg.MaxInFlight) {
		p.inFlight.Add(-1)
		h.probing.Store(false)
		p.d.count.skipped.Add(1)
		return
	}
	req, err := p.srv.NewRequest(tm.OutOfDialog{Method: sip.OPTIONS, Target: h.uri, From: p.cfg.From})
	if err != nil {
		p.report(l, h, nil, err)
		return
	}
	p.d.count.sent.Add(1)
	p.srv.Originate(l, req, tm.SendOptions{Timeout: p.cfg.Timeout}, func(resp *sip.Response, err error) {
		p.report(l, h, resp, err)
	})
}

// report counts a probe's outcome and changes the target's state when the
// threshold is reached. Errors of our own side (overload, closing) do not
// count against the target.
func (p *Prober) report(l *reactor.Loop, h *health, resp *sip.Response, err error) {
	defer func() {
		p.inFlight.Add(-1)
		h.probing.Store(false)
	}()
	if err != nil && (errors.Is(err, async.ErrOverloaded) || errors.Is(err, tm.ErrClosed)) {
		p.d.count.skipped.Add(1)
		return
	}
	ok := err == nil && resp != nil && !p.cfg.failure(resp.StatusCode)
	if !ok {
		p.d.count.failed.Add(1)
	}
	if h.removed.Load() {
		return
	}
	h.mu.Lock()
	h.probes++
	h.lastCode, h.lastErr = 0, ""
	if resp != nil {
		h.lastCode = resp.StatusCode
	}
	if err != nil {
		h.lastErr = err.Error()
	}
	var change *Change
	if ok {
		h.fails, h.oks = 0, h.oks+1
		if !h.up.Load() && h.oks >= p.cfg.RecoverAfter {
			change = p.d.setState(h, l.Now(), true, fmt.Sprintf("%d probes answered in a row", h.oks))
		}
	} else {
		h.failed++
		h.oks, h.fails = 0, h.fails+1
		if h.up.Load() && h.fails >= p.cfg.FailAfter {
			change = p.d.setState(h, l.Now(), false, fmt.Sprintf("%d probes failed in a row, last: %s", h.fails, outcome(resp, err)))
		}
	}
	h.mu.Unlock()
	if o := p.d.cfg.Observer; o != nil {
		o.Probed(h.uri, ok)
	}
	if change != nil {
		p.d.changed(*change)
		p.publish(l, h.uri, change.Up, l.Now())
	}
}

// setState flips h (h.mu held) and returns the change to announce.
func (d *Dispatcher) setState(h *health, now time.Time, up bool, reason string) *Change {
	h.up.Store(up)
	h.since = now
	if up {
		d.count.ups.Add(1)
	} else {
		d.count.downs.Add(1)
	}
	return &Change{URI: h.uri, Up: up, Reason: reason}
}

func outcome(resp *sip.Response, err error) string {
	if err != nil {
		return err.Error()
	}
	return fmt.Sprintf("%d %s", resp.StatusCode, resp.Reason)
}
