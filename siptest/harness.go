package siptest

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/asyncsip/asyncsip/async"
	"github.com/asyncsip/asyncsip/reactor"
	"github.com/asyncsip/asyncsip/tm"
)

// Routing is what a Harness runs: a whole tm.Routes, or just a request
// route (the common case).
type Routing interface {
	tm.Routes | func(*tm.Context)
}

// Harness runs routes in the real transaction layer (tm.NewServer) on a
// manual event loop with a fake clock, over an in-memory transport that
// records everything the server sends. Nothing touches the network and
// nothing sleeps: Send, Respond, Complete and Clock.Advance run the loop
// until it is idle before they return. A Harness is used from the test's
// goroutine only.
type Harness struct {
	// Server is the transaction layer under test (for Stats, Drain…).
	Server *tm.Server
	// Clock is the harness's time: it only moves with Clock.Advance.
	Clock *Clock

	t        testing.TB
	loop     *reactor.Loop
	group    *reactor.Group
	tp4, tp6 *transport
	uac      netip.AddrPort

	results  map[string]*Result
	byCtx    map[*tm.Context]*Result
	outgoing map[string]*Relayed // by top Via branch + method
	awaits   []*Await
	wire     []Sent  // everything sent, in order
	stray    []event // sent messages no Result owns

	originated   []*Originated          // requests the proxy sent on its own (originated.go)
	originatedBy map[string]*Originated // by top Via branch + method

	fakes       []Fake
	passThrough []string
	realOps     []string
	realWait    time.Duration
	inFlight    int
	unreachable map[netip.AddrPort]bool
}

// HarnessOption configures NewHarness.
type HarnessOption func(*harnessConfig)

type harnessConfig struct {
	tm          tm.Config
	fakes       []Fake
	passThrough []string
	realOps     []string
	realWait    time.Duration
	proxy       string
}

// WithConfig sets the tm configuration (timers, limits, codes, Resolver,
// Logger…). Its Intercept is replaced by the harness's own.
func WithConfig(cfg tm.Config) HarnessOption { return func(c *harnessConfig) { c.tm = cfg } }

// WithFakes adds fakes that answer awaits from their tables, in order: the
// first fake with a matching rule answers.
func WithFakes(f ...Fake) HarnessOption {
	return func(c *harnessConfig) { c.fakes = append(c.fakes, f...) }
}

// WithPassThrough lets the ops that ops names run for real on the loop
// instead of being held; they must need no real poller (timers and
// synchronous ops). A name matches an await whose async.Name is it, whose
// description starts with it ("db.query"), or whose description's detail
// is it ("lcr" for async.Blocking(fn, async.Name("lcr")), described as
// "async.blocking: lcr"). "async.sleep", "async.done" and "tm.send" (a
// request the proxy originates, answered through Harness.Originated)
// always pass through.
func WithPassThrough(ops ...string) HarnessOption {
	return func(c *harnessConfig) { c.passThrough = append(c.passThrough, ops...) }
}

// WithRealOps runs the ops that ops names (as for WithPassThrough) for
// real, off the loop — async.Blocking on its pool, say: Send and the other
// drivers then wait for them to complete, in real time, at most
// 5 s (see WithRealOpWait); beyond it the test fails.
func WithRealOps(ops ...string) HarnessOption {
	return func(c *harnessConfig) { c.realOps = append(c.realOps, ops...) }
}

// defaultRealOpWait bounds the real-time wait for WithRealOps ops.
const defaultRealOpWait = 5 * time.Second

// WithRealOpWait changes how long the harness waits for real ops.
func WithRealOpWait(d time.Duration) HarnessOption { return func(c *harnessConfig) { c.realWait = d } }

// WithProxyAddr sets the proxy's own IPv4 address (default DefaultProxy),
// which its Via and Record-Route carry.
func WithProxyAddr(addr string) HarnessOption { return func(c *harnessConfig) { c.proxy = addr } }

// NewHarness returns a harness running routes, a tm.Routes or a request
// route:
//
//	h := siptest.NewHarness(t, route)
//	h := siptest.NewHarness(t, tm.Routes{Request: route, Failure: failover})
//
// Bad options (an address that does not parse) fail the test at once. The
// server is closed when the test ends.
func NewHarness[R Routing](t testing.TB, routes R, opts ...HarnessOption) *Harness {
	t.Helper()
	var r tm.Routes
	switch v := any(routes).(type) {
	case tm.Routes:
		r = v
	case func(*tm.Context):
		r = tm.Routes{Request: v}
	}
	cfg := harnessConfig{realWait: defaultRealOpWait, proxy: DefaultProxy}
	for _, o := range opts {
		o(&cfg)
	}
	uac := netip.MustParseAddrPort(DefaultUAC)
	proxy, err := netip.ParseAddrPort(cfg.proxy)
	if err != nil || !proxy.Addr().Is4() {
		t.Fatalf("siptest: WithProxyAddr(%q): want an IPv4 ip:port (%v)", cfg.proxy, err)
	}
	fc := reactor.NewFakeClock(time.Unix(1_700_000_000, 0))
	g := reactor.NewManualGroup(1, fc)
	h := &Harness{
		t: t, loop: g.Loop(0), group: g, uac: uac, originatedBy: map[string]*Originated{},
		results: map[string]*Result{}, byCtx: map[*tm.Context]*Result{}, outgoing: map[string]*Relayed{},
		fakes: cfg.fakes, passThrough: append([]string{"async.sleep", "async.done", "tm.send"}, cfg.passThrough...),
		realOps: cfg.realOps, realWait: cfg.realWait, unreachable: map[netip.AddrPort]bool{},
	}
	h.Clock = &Clock{h: h, fc: fc}
	h.tp4 = &transport{h: h, local: proxy}
	h.tp6 = &transport{h: h, local: netip.AddrPortFrom(netip.IPv6Loopback(), proxy.Port())}
	tc := cfg.tm
	tc.Intercept = h.intercept
	if tc.Logger == nil {
		tc.Logger = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	h.Server = tm.NewServer(g.Loops(), tc, h.wrap(r))
	h.Server.AddTransport(h.tp4)
	h.Server.AddTransport(h.tp6)
	t.Cleanup(h.close)
	return h
}

// Send delivers req to the proxy, from its source (see WithSource), and
// runs the loop until it is idle. It returns the Result of req's
// transaction, which keeps recording what happens to it afterwards. A
// retransmission (same branch and method) returns the same Result.
func (h *Harness) Send(req *sip.Request) *Result {
	h.t.Helper()
	key := requestKey(req)
	res := h.results[key]
	if res == nil {
		res = &Result{Req: req, h: h}
		h.results[key] = res
	}
	src := h.uac
	if s := req.MessageData.Source(); s != "" {
		ap, err := netip.ParseAddrPort(s)
		if err != nil {
			h.t.Fatalf("siptest: Send: request source %q: %v", s, err)
		}
		src = ap
	}
	res.add(event{dir: dirIn, msg: req, addr: src})
	h.receive([]byte(req.String()), src)
	return res
}

// Unreachable makes sends to addrs ("ip:port") fail, as an ICMP error or a
// full socket would: tm then fails the branch (503 upstream, or the failure
// route runs).
func (h *Harness) Unreachable(addrs ...string) {
	h.t.Helper()
	for _, a := range addrs {
		ap, err := netip.ParseAddrPort(a)
		if err != nil {
			h.t.Fatalf("siptest: Unreachable(%q): %v", a, err)
		}
		h.unreachable[ap] = true
	}
}

// Awaits returns every await made so far, over all transactions.
func (h *Harness) Awaits() []*Await { return h.awaits }

// Sent is a message the server handed to its transport.
type Sent struct {
	// Msg is the message, parsed from the bytes sent.
	Msg sip.Message
	// To is where it was sent.
	To netip.AddrPort
}

// Sent returns every message the server sent, over all transactions, in
// order: retransmissions, hop-by-hop ACKs and CANCELs included.
func (h *Harness) Sent() []Sent { return h.wire }

// Stray returns, as text, the messages the server sent that belong to no
// request sent with Send (responses forwarded statelessly to other Vias).
func (h *Harness) Stray() []string {
	var out []string
	for _, e := range h.stray {
		out = append(out, e.String())
	}
	return out
}

// receive hands data to the server and runs the loop until idle.
func (h *Harness) receive(data []byte, from netip.AddrPort) {
	tp := h.tp4
	if !from.Addr().Unmap().Is4() {
		tp = h.tp6
	}
	h.Server.Receive(h.loop, data, from, tp)
	h.settle()
}

// settle runs the loop until nothing is due, waiting (bounded, in real
// time) for real ops that are still running.
func (h *Harness) settle() {
	h.t.Helper()
	h.loop.RunPending()
	if h.inFlight == 0 {
		return
	}
	deadline := time.Now().Add(h.realWait)
	for h.inFlight > 0 {
		if h.loop.Pending() == 0 {
			if time.Now().After(deadline) {
				h.t.Errorf("siptest: %d real op(s) still running after %v: %s", h.inFlight, h.realWait, h.running())
				return
			}
			time.Sleep(time.Millisecond)
		}
		h.loop.RunPending()
	}
}

func (h *Harness) running() string {
	var s []string
	for _, w := range h.awaits {
		if w.real && w.state == AwaitRunning {
			s = append(s, w.String())
		}
	}
	return strings.Join(s, "; ")
}

// close ends every transaction (suspended ones get 503) and waits for real
// ops, so that nothing is left running after the test.
func (h *Harness) close() {
	h.Server.Close()
	h.settle()
	for _, w := range h.awaits {
		w.timer.Stop()
	}
}

// wrap binds each transaction's Context to its Result before the user's
// request route runs.
func (h *Harness) wrap(r tm.Routes) tm.Routes {
	user := r.Request
	r.Request = func(c *tm.Context) {
		h.bind(c)
		if user != nil {
			user(c)
		}
	}
	return r
}

func (h *Harness) bind(c *tm.Context) {
	key := requestKey(c.Req())
	res := h.results[key]
	if res == nil { // not sent by Send: should not happen, but keep it visible
		res = &Result{Req: c.Req(), h: h}
		h.results[key] = res
	}
	res.ctx = c
	h.byCtx[c] = res
}

// Clock is the harness's fake time.
type Clock struct {
	h  *Harness
	fc *reactor.FakeClock
}

// Now returns the current fake time.
func (c *Clock) Now() time.Time { return c.fc.Now() }

// Advance moves time forward by d, firing every timer that falls due on
// the way (transaction timers, await timeouts, delayed fake answers) at its
// own deadline, and runs the loop until idle.
func (c *Clock) Advance(d time.Duration) {
	c.h.loop.Advance(d)
	c.h.settle()
}

// transport is the in-memory tm.Transport: it records what tm sends.
type transport struct {
	h     *Harness
	local netip.AddrPort
}

// errUnreachable is what the in-memory transport returns for a destination
// made Unreachable.
var errUnreachable = errors.New("siptest: destination unreachable")

func (tp *transport) Send(_ *reactor.Loop, b []byte, to netip.AddrPort) error {
	return tp.h.sent(b, to)
}

func (tp *transport) Protocol() string { return "UDP" }

func (tp *transport) Advertised() (string, int) {
	return tp.local.Addr().String(), int(tp.local.Port())
}

func (tp *transport) LocalAddr() netip.AddrPort { return tp.local }

// testWriter sends tm's logs (warnings and errors: a panic in a route, an
// expired suspension) to the test log.
type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Logf("tm: %s", strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// intercept is the harness's async.Interceptor: it records every await and
// decides who completes it.
func (h *Harness) intercept(a *async.Intercepted) (handled bool) {
	w := &Await{Name: a.Name, Desc: a.Desc, Type: a.Type, Timeout: a.Timeout, Index: len(h.awaits), a: a, h: h}
	if c, ok := a.Context.(*tm.Context); ok {
		w.res = h.byCtx[c]
	}
	h.awaits = append(h.awaits, w)
	a.OnFinish(w.finish)
	var ans Answer
	answered := false
	switch {
	case matchAny(w, h.realOps):
		w.state, w.by, w.real = AwaitRunning, "real op", true
		h.inFlight++
	case matchAny(w, h.passThrough):
		w.state, w.by = AwaitRunning, "pass-through"
	default:
		w.state, handled = AwaitPending, true
		for _, f := range h.fakes {
			if ans, answered = f.Answer(w); answered {
				w.by = ans.By
				if w.by == "" {
					w.by = fmt.Sprint(f)
				}
				break
			}
		}
	}
	if w.res != nil {
		w.res.awaits = append(w.res.awaits, w)
		w.res.add(event{dir: dirAwait, note: w.String()})
	}
	if answered {
		h.schedule(w, ans)
	}
	return handled
}

// matchAny reports whether w matches one of patterns (see matchOp).
func matchAny(w *Await, patterns []string) bool {
	for _, p := range patterns {
		if matchOp(w, p) {
			return true
		}
	}
	return false
}

// matchOp reports whether p names w: w's await Name is p, its description
// starts with p ("db.query", "async.blocking"), or the detail of its
// description is p (the Name given to async.Blocking: "async.blocking: p").
func matchOp(w *Await, p string) bool {
	if p == "" {
		return false
	}
	if w.Name == p || strings.HasPrefix(w.Desc, p) {
		return true
	}
	_, detail, ok := strings.Cut(w.Desc, ": ")
	return ok && detail == p
}

// schedule makes a fake's answer complete w: at once (as a completion
// posted to the loop, like a real op's), after Delay on the clock, or never.
func (h *Harness) schedule(w *Await, ans Answer) {
	if ans.Never {
		return
	}
	deliver := func() {
		if !w.a.Pending() {
			return // timed out or aborted meanwhile
		}
		if err := w.complete(ans.Value, ans.Err); err != nil {
			h.t.Errorf("siptest: %s answered %s badly: %v", w.by, w.label(), err)
		}
	}
	if ans.Delay > 0 {
		w.timer = h.loop.AfterFunc(ans.Delay, deliver)
		return
	}
	if err := h.loop.PostUrgent(deliver); err != nil {
		h.t.Errorf("siptest: posting a fake answer: %v", err)
	}
}
