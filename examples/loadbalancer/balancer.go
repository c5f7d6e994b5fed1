package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"time"

	"github.com/asyncsip/asyncsip/modules/dialog"
	"github.com/asyncsip/asyncsip/modules/dispatcher"
	"github.com/asyncsip/asyncsip/tm"
	"github.com/emiago/sipgo/sip"
)

// Profile is the dialog profile that counts the calls in progress per
// destination (its value is the destination's URI): the per-destination
// limit and the least-loaded algorithm read it.
const Profile = "dst"

// Config configures a Balancer.
type Config struct {
	// Sets are the destination sets; Set names the one calls go to
	// (default: the first).
	Sets []dispatcher.SetConfig
	Set  string
	// Limit caps the calls in progress per destination (0: none). A call
	// goes to another destination when the chosen one is full, and gets
	// 503 when every live destination is.
	Limit int
	// MaxDuration ends a call that long after its 200 OK with a BYE to
	// both sides (0: never).
	MaxDuration time.Duration
	// PingInterval sends in-dialog OPTIONS to both sides of each call (0:
	// none); 3 failures in a row end the call.
	PingInterval time.Duration
	// BranchTimeout fails a destination over when it has not rung (a 1xx
	// other than 100) within it (0: Timer B, 32 s).
	BranchTimeout time.Duration
	// Probe configures the OPTIONS probing of the destinations.
	Probe dispatcher.ProbeConfig
	// Trusted are the sources that may place calls; others get 403.
	// In-dialog requests along our signed Record-Route pass from anyone.
	Trusted []netip.Prefix
	// MaxDialogs caps the calls tracked at once (default
	// dialog.DefaultMaxDialogs); calls beyond get 503.
	MaxDialogs int
	Logger     *slog.Logger
}

// Balancer routes calls over a destination set: dispatcher chooses,
// dialog counts and ends them.
type Balancer struct {
	cfg     Config
	store   *moveStore
	tracker *dialog.Tracker
	d       *dispatcher.Dispatcher
	log     *slog.Logger
}

// ctxDst is the Context value holding the destination a tracked call is
// counted under.
const ctxDst = "loadbalancer.dst"

// New returns a Balancer for cfg.
func New(cfg Config) (*Balancer, error) {
	if len(cfg.Sets) == 0 {
		return nil, errors.New("loadbalancer: no destination set")
	}
	if cfg.Set == "" {
		cfg.Set = cfg.Sets[0].ID
	}
	if cfg.Limit < 0 {
		return nil, errors.New("loadbalancer: negative limit")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	b := &Balancer{cfg: cfg, store: newMoveStore(dialog.NewMemoryStore()), log: cfg.Logger}
	b.tracker = dialog.New(dialog.Config{MaxDialogs: cfg.MaxDialogs, Store: b.store, Logger: cfg.Logger})
	d, err := dispatcher.New(dispatcher.Config{
		Sets:  cfg.Sets,
		Probe: cfg.Probe,
		// least-loaded: the calls in progress per destination, as the
		// dialog profile counts them.
		Load:   func(t dispatcher.Target) int { return b.tracker.Profile(Profile).Count(t.URI) },
		Logger: cfg.Logger,
	})
	if err != nil {
		return nil, err
	}
	found := false
	for _, s := range d.Sets() {
		found = found || s.ID == cfg.Set
	}
	if !found {
		return nil, fmt.Errorf("loadbalancer: %w: %q", dispatcher.ErrUnknownSet, cfg.Set)
	}
	b.d = d
	return b, nil
}

// Dispatcher returns the destination sets and their state.
func (b *Balancer) Dispatcher() *dispatcher.Dispatcher { return b.d }

// Tracker returns the calls in progress.
func (b *Balancer) Tracker() *dialog.Tracker { return b.tracker }

// Routes returns the balancer's routes, wrapped by the dialog tracker.
func (b *Balancer) Routes() tm.Routes {
	return b.tracker.Routes(tm.Routes{Request: b.request, Failure: b.failure})
}

func (b *Balancer) trusted(a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range b.cfg.Trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

func (b *Balancer) request(c *tm.Context) {
	if c.InDialog() { // ACK, BYE, re-INVITE along our signed Record-Route
		_ = c.Relay()
		return
	}
	req := c.Req()
	if req.Method == sip.ACK { // an ACK of no dialog of ours
		c.Drop()
		return
	}
	if !b.trusted(c.Source().Addr()) {
		b.log.Warn("loadbalancer: untrusted source refused", "source", c.Source(), "method", req.Method)
		_ = c.Reply(403, "Forbidden")
		return
	}
	if req.Method == sip.OPTIONS && req.Recipient.User == "" { // a keep-alive to us
		_ = c.Reply(200, "OK")
		return
	}
	if req.Method != sip.INVITE { // MESSAGE, SUBSCRIBE…: balanced, not counted
		_ = b.d.Relay(c, b.cfg.Set)
		return
	}
	c.SetBranchTimeout(b.cfg.BranchTimeout)
	t, err := b.d.Select(c, b.cfg.Set)
	full := 0
	for err == nil {
		err = b.tracker.Track(c, b.options(t.URI))
		if !errors.Is(err, dialog.ErrLimit) {
			break
		}
		full++
		t, err = b.d.Next(c) // that destination is full: the next live one
	}
	switch {
	case errors.Is(err, dispatcher.ErrNoTarget) && full > 0:
		_ = c.Reply(503, "All Destinations Busy")
		return
	case errors.Is(err, dispatcher.ErrNoTarget):
		_ = c.Reply(503, "No Destination Available")
		return
	case err != nil: // over MaxDialogs, a spiral (ErrTracked)
		b.log.Warn("loadbalancer: call not tracked", "call_id", callID(req), "err", err)
		_ = c.Reply(503, "Service Unavailable")
		return
	}
	c.Set(ctxDst, t.URI)
	b.relay(c)
}

// options are the tracking options of a call to dst.
func (b *Balancer) options(dst string) dialog.Options {
	return dialog.Options{
		MaxDuration:  b.cfg.MaxDuration,
		PingInterval: b.cfg.PingInterval,
		Profiles:     []dialog.ProfileValue{{Profile: Profile, Value: dst, Limit: b.cfg.Limit}},
	}
}

// relay relays a tracked call to its destination, failing over when the
// relay fails at once for the destination's sake.
func (b *Balancer) relay(c *tm.Context) {
	for {
		err := c.Relay()
		if err == nil || !targetFault(err) {
			return // sent, or refused for the call's sake: tm answers
		}
		b.log.Info("loadbalancer: relay failed", "target", c.Destination(), "err", err)
		if !b.next(c) {
			return
		}
	}
}

// next moves a tracked call to the next live destination that is not
// full, counting it there instead; without one it answers 503.
func (b *Balancer) next(c *tm.Context) bool {
	from, _ := tm.Value[string](c, ctxDst)
	id := dialogID(c.Req())
	for {
		t, err := b.d.Next(c)
		if err != nil {
			_ = c.Reply(503, "No Destination Available")
			return false
		}
		if b.store.move(id, from, t.URI, b.cfg.Limit) {
			c.Set(ctxDst, t.URI)
			return true
		}
	}
}

func (b *Balancer) failure(c *tm.Context) {
	code := c.Resp.StatusCode
	if c.Cancelled() || (code != 408 && code < 500) || code >= 600 {
		return // busy, declined, cancelled: final for the caller
	}
	if code == 408 {
		b.d.Failed(c) // no answer: passive health check, as a failed probe
	}
	if _, tracked := c.Get(ctxDst); !tracked {
		_ = b.d.RelayNext(c)
		return
	}
	if b.next(c) {
		b.relay(c)
	}
}

// targetFault reports whether a Relay error is the destination's (another
// may do) rather than the call's.
func targetFault(err error) bool {
	return errors.Is(err, tm.ErrNoRoute) || errors.Is(err, tm.ErrNoTransport) || errors.Is(err, tm.ErrUnresolvable) ||
		errors.Is(err, tm.ErrLoop) || errors.Is(err, tm.ErrBadTarget)
}

func callID(req *sip.Request) string {
	if id := req.CallID(); id != nil {
		return string(*id)
	}
	return ""
}

// dialogID is the tracker's name of the call of req.
func dialogID(req *sip.Request) dialog.ID {
	tag, _ := req.From().Params.Get("tag")
	return dialog.ID{CallID: callID(req), CallerTag: tag}
}
