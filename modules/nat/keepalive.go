// Package nat serves UAs behind NATs: it tells a NATed request from its
// source address (Behind), rewrites its Contact to the NAT's public side for
// storage (FixContact), and pings NATed contacts with OPTIONS from timer
// jobs spread over the loops, to keep their NAT bindings open and to find
// the ones that are gone — what Kamailio's nathelper does with
// fix_nated_register and its "sipping".
//
// A registrar adds a binding when a UA behind a NAT registers, and removes
// it when the registration ends; the Pinger sends an OPTIONS to each
// binding once per interval, to the address the REGISTER came from, and
// after FailAfter unanswered pings in a row removes the binding and reports
// it (OnGone) so that the registrar drops the contact:
//
//	ka := nat.New(nat.Config{Interval: 20 * time.Second, OnGone: func(b nat.Binding) {
//		location.Remove(b.Key)
//	}})
//	job, _ := ka.Start(srv.Core(), srv.Group())
//	defer job.Stop()
//	// in the REGISTER route:
//	if nat.Behind(c.Req(), c.Source()) {
//		_ = ka.Add(nat.Binding{Key: aor + contact, Contact: contact, Addr: c.Source(), Expires: exp})
//	}
//
// Any response proves the UA there (most answer OPTIONS 200, some 404 or
// 405); only silence and unreachable next hops count as failures. A binding
// past its Expires is dropped without a ping. CRLF keep-alives (RFC 5626
// §4.4.1) are not sent: tm has no raw write to a transport yet.
package nat

import (
	"errors"
	"fmt"
	"hash/fnv"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/asyncsip/asyncsip/async"
	"github.com/asyncsip/asyncsip/reactor"
	"github.com/asyncsip/asyncsip/tm"
)

// ErrFull: Add was refused because MaxBindings are held.
var ErrFull = errors.New("nat: too many bindings")

// Defaults of Config.
const (
	DefaultInterval    = 20 * time.Second
	DefaultFailAfter   = 3
	DefaultMaxBindings = 100000
	DefaultMaxInFlight = 1000
	DefaultSlices      = 8
)

// Config configures a Pinger. The zero value pings every 20 s and drops a
// binding after 3 unanswered pings.
type Config struct {
	// Interval is the time between two pings of a binding (default 20 s,
	// below the 30 s many NATs keep a UDP binding).
	Interval time.Duration
	// Timeout bounds one ping (default the smaller of Interval/2 and 5 s;
	// at most 90 % of Interval, so that a ping ends before the next turn).
	Timeout time.Duration
	// FailAfter is the number of failed pings in a row that remove a
	// binding (default 3).
	FailAfter int
	// MaxBindings caps the bindings held (default 100,000).
	MaxBindings int
	// MaxInFlight caps the pings out at once; a binding whose turn comes
	// beyond it waits for its next turn (default 1000).
	MaxInFlight int
	// Slices is the number of ticks per interval the bindings are spread
	// over, each on the least busy loop (default 8).
	Slices int
	// From is the From URI of the pings (default the proxy's address).
	From string
	// OnGone, when set, is called (on a loop, must not block) with each
	// binding removed after FailAfter failures.
	OnGone func(Binding)
}

// Binding is a contact to keep alive.
type Binding struct {
	// Key identifies the binding (an AOR and contact, a registration id).
	Key string
	// Contact is the Request-URI of the pings: the registered Contact.
	Contact string
	// Addr is where the pings go: the source address of the REGISTER, the
	// NAT's public side.
	Addr netip.AddrPort
	// Expires is when the registration ends (zero: never); the binding is
	// dropped then, without a ping.
	Expires time.Time
}

// Stats are the Pinger's counters.
type Stats struct {
	// Sent counts pings sent; Failed those that failed; Skipped the turns
	// skipped (a ping still out, MaxInFlight, our side overloaded).
	Sent, Failed, Skipped uint64
	// Gone counts bindings removed after FailAfter failures; Expired those
	// dropped at their Expires.
	Gone, Expired uint64
	// Bindings is the number held now.
	Bindings int
}

type binding struct {
	Binding
	fails   int // in a row, under Pinger.mu
	pinging atomic.Bool
	removed atomic.Bool
}

// Pinger keeps bindings alive. Its methods are safe from any goroutine.
type Pinger struct {
	cfg    Config
	mu     sync.Mutex
	slices []map[string]*binding // by hash of the key
	n      int

	tick                                 atomic.Uint64
	inFlight                             atomic.Int64
	sent, failed, skipped, gone, expired atomic.Uint64
}

// New returns a Pinger with cfg, defaults filled.
func New(cfg Config) *Pinger {
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = min(cfg.Interval/2, 5*time.Second)
	}
	cfg.Timeout = min(cfg.Timeout, cfg.Interval*9/10)
	if cfg.FailAfter <= 0 {
		cfg.FailAfter = DefaultFailAfter
	}
	if cfg.MaxBindings <= 0 {
		cfg.MaxBindings = DefaultMaxBindings
	}
	if cfg.MaxInFlight <= 0 {
		cfg.MaxInFlight = DefaultMaxInFlight
	}
	if cfg.Slices <= 0 {
		cfg.Slices = DefaultSlices
	}
	cfg.Slices = max(1, min(cfg.Slices, 64, int(cfg.Interval/time.Millisecond)))
	p := &Pinger{cfg: cfg, slices: make([]map[string]*binding, cfg.Slices)}
	for i := range p.slices {
		p.slices[i] = map[string]*binding{}
	}
	return p
}

// Add adds or refreshes a binding (a re-REGISTER refreshes Expires and
// Addr, and clears its failures).
func (p *Pinger) Add(b Binding) error {
	if b.Key == "" || !b.Addr.IsValid() {
		return fmt.Errorf("nat: binding needs a key and an address")
	}
	var u sip.Uri
	if err := sip.ParseUri(b.Contact, &u); err != nil || u.Host == "" {
		return fmt.Errorf("nat: contact %q: %v", b.Contact, err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	m := p.slices[p.slice(b.Key)]
	if old := m[b.Key]; old != nil {
		old.removed.Store(true) // its ping in flight reports to nobody
	} else if p.n >= p.cfg.MaxBindings {
		return fmt.Errorf("%w (%d)", ErrFull, p.cfg.MaxBindings)
	} else {
		p.n++
	}
	m[b.Key] = &binding{Binding: b}
	return nil
}

// Remove removes a binding (the registration ended); it reports whether
// there was one.
func (p *Pinger) Remove(key string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.removeLocked(key, nil)
}

func (p *Pinger) removeLocked(key string, only *binding) bool {
	m := p.slices[p.slice(key)]
	b := m[key]
	if b == nil || (only != nil && b != only) {
		return false
	}
	b.removed.Store(true)
	delete(m, key)
	p.n--
	return true
}

// Stats returns the counters.
func (p *Pinger) Stats() Stats {
	p.mu.Lock()
	n := p.n
	p.mu.Unlock()
	return Stats{Sent: p.sent.Load(), Failed: p.failed.Load(), Skipped: p.skipped.Load(),
		Gone: p.gone.Load(), Expired: p.expired.Load(), Bindings: n}
}

func (p *Pinger) slice(key string) int {
	h := fnv.New32a()
	_, _ = h.Write([]byte(key))
	return int(h.Sum32() % uint32(len(p.slices)))
}

// Start pings the bindings with OPTIONS sent by srv from a timer job of g
// that ticks Slices times per interval, each tick on the least busy loop
// and for the bindings of one slice. Stop the job before the server shuts
// down.
func (p *Pinger) Start(srv *tm.Server, g *reactor.Group) (*reactor.Job, error) {
	if p.cfg.From != "" {
		if _, err := srv.NewRequest(tm.OutOfDialog{Method: sip.OPTIONS, Target: "sip:check.invalid", From: p.cfg.From}); err != nil {
			return nil, fmt.Errorf("nat: From: %w", err)
		}
	}
	return g.Every(p.cfg.Interval/time.Duration(p.cfg.Slices), func(l *reactor.Loop) { p.run(srv, l) }, reactor.Skip)
}

// run is one tick: the bindings of the next slice, expired ones dropped.
func (p *Pinger) run(srv *tm.Server, l *reactor.Loop) {
	now := l.Now()
	i := int((p.tick.Add(1) - 1) % uint64(len(p.slices)))
	var due []*binding
	p.mu.Lock()
	for key, b := range p.slices[i] {
		if !b.Expires.IsZero() && !now.Before(b.Expires) {
			p.removeLocked(key, b)
			p.expired.Add(1)
			continue
		}
		due = append(due, b)
	}
	p.mu.Unlock()
	for _, b := range due {
		p.ping(srv, l, b)
	}
}

func (p *Pinger) ping(srv *tm.Server, l *reactor.Loop, b *binding) {
	if !b.pinging.CompareAndSwap(false, true) {
		p.skipped.Add(1)
		return
	}
	if p.inFlight.Add(1) > int64(p.cfg.MaxInFlight) {
		p.inFlight.Add(-1)
		b.pinging.Store(false)
		p.skipped.Add(1)
		return
	}
	req, err := srv.NewRequest(tm.OutOfDialog{Method: sip.OPTIONS, Target: b.Contact, From: p.cfg.From})
	if err != nil {
		p.report(b, err)
		return
	}
	p.sent.Add(1)
	srv.Originate(l, req, tm.SendOptions{Destination: b.Addr.String(), Timeout: p.cfg.Timeout},
		func(_ *sip.Response, err error) { p.report(b, err) })
}

// report counts a ping's outcome: any response is alive; FailAfter
// failures in a row remove the binding.
func (p *Pinger) report(b *binding, err error) {
	defer func() {
		p.inFlight.Add(-1)
		b.pinging.Store(false)
	}()
	if err != nil && (errors.Is(err, async.ErrOverloaded) || errors.Is(err, tm.ErrClosed)) {
		p.skipped.Add(1)
		return
	}
	if err != nil {
		p.failed.Add(1)
	}
	p.mu.Lock()
	if b.removed.Load() {
		p.mu.Unlock()
		return
	}
	gone := false
	if err == nil {
		b.fails = 0
	} else if b.fails++; b.fails >= p.cfg.FailAfter {
		gone = p.removeLocked(b.Key, b)
	}
	p.mu.Unlock()
	if gone {
		p.gone.Add(1)
		if p.cfg.OnGone != nil {
			p.cfg.OnGone(b.Binding)
		}
	}
}

// Behind reports whether the UA that sent req from src is behind a NAT:
// its first Contact (or, without one, its top Via's sent-by) does not
// name src — another address or another port than the one the request
// came from (see FixContact for the rule). A registrar then stores the
// fixed contact and adds it to the Pinger.
func Behind(req *sip.Request, src netip.AddrPort) bool {
	if c := req.Contact(); c != nil {
		return !c.Address.Wildcard && differs(c.Address.Host, uriPort(&c.Address), src)
	}
	if v := req.Via(); v != nil {
		port := v.Port
		if port == 0 {
			port = 5060
		}
		return differs(v.Host, port, src)
	}
	return false
}

func trimBrackets(h string) string {
	if len(h) > 1 && h[0] == '[' && h[len(h)-1] == ']' {
		return h[1 : len(h)-1]
	}
	return h
}
