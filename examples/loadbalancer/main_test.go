package main

import (
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/asyncsip/asyncsip/modules/dialog"
	"github.com/asyncsip/asyncsip/modules/dispatcher"
	"github.com/asyncsip/asyncsip/siptest"
)

const (
	dstA = "sip:10.0.0.1:5060"
	dstB = "sip:10.0.0.2:5060"
	hopA = "10.0.0.1:5060"
	hopB = "10.0.0.2:5060"
)

// newLB returns a balancer over dstA and dstB (least-loaded, no limit,
// 2 s branch timeout, 127.0.0.1 trusted) changed by mod, in a harness.
func newLB(t *testing.T, mod func(*Config)) (*Balancer, *siptest.Harness) {
	t.Helper()
	cfg := Config{
		Sets: []dispatcher.SetConfig{{ID: "dst", Algorithm: dispatcher.LeastLoaded,
			Targets: []dispatcher.Target{{URI: dstA}, {URI: dstB}}}},
		BranchTimeout: 2 * time.Second,
		Trusted:       []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")},
		Logger:        slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	if mod != nil {
		mod(&cfg)
	}
	b, err := New(cfg)
	require.NoError(t, err)
	return b, siptest.NewHarness(t, b.Routes())
}

// call is one call placed through the harness.
type call struct {
	h   *siptest.Harness
	inv *sip.Request
	res *siptest.Result
	dlg *siptest.Dialog
}

func invite(h *siptest.Harness, opts ...siptest.MessageOption) *call {
	inv := siptest.NewRequest("INVITE", "sip:bob@example.com", opts...)
	return &call{h: h, inv: inv, res: h.Send(inv)}
}

// hop is where the call's last branch went.
func (c *call) hop(t *testing.T) string {
	t.Helper()
	br := c.res.Relayed()
	require.NotEmpty(t, br, "%s", c.res)
	return br[len(br)-1].Addr.String()
}

// answer makes the last branch answer 200 and the caller send its ACK.
func (c *call) answer(t *testing.T) {
	t.Helper()
	br := c.res.Relayed()
	require.NotEmpty(t, br, "%s", c.res)
	br[len(br)-1].Respond(180)
	br[len(br)-1].Respond(200)
	siptest.AssertReplied(t, c.res, 200)
	c.dlg = siptest.NewDialog(c.inv, c.res.LastReply().Response)
	c.h.Send(c.dlg.Ack())
}

// bye ends the call from the caller, answered 200 by the callee.
func (c *call) bye(t *testing.T) {
	t.Helper()
	res := c.h.Send(c.dlg.Bye())
	require.Len(t, res.Relayed(), 1, "%s", res)
	res.Branch(0).Respond(200)
	siptest.AssertReplied(t, res, 200)
}

func counts(b *Balancer) [2]int {
	p := b.Tracker().Profile(Profile)
	return [2]int{p.Count(dstA), p.Count(dstB)}
}

// Least-loaded: a call goes to the destination with the fewest calls in
// progress as the dialog profile counts them, in turn among equals.
func TestLeastLoadedFollowsCallsInProgress(t *testing.T) {
	b, h := newLB(t, nil)
	c1 := invite(h)
	c1.answer(t)
	c2 := invite(h)
	assert.NotEqual(t, c1.hop(t), c2.hop(t), "the idle destination")
	c2.answer(t)
	assert.Equal(t, [2]int{1, 1}, counts(b))

	c1.bye(t) // c1's destination is idle again
	c3 := invite(h)
	assert.Equal(t, c1.hop(t), c3.hop(t), "the destination whose call ended")
	c3.answer(t)

	// Four calls more while both hold one: even, in turn.
	got := map[string]int{}
	for i := 0; i < 4; i++ {
		c := invite(h)
		got[c.hop(t)]++
		c.answer(t)
	}
	assert.Equal(t, map[string]int{hopA: 2, hopB: 2}, got)
	assert.Equal(t, [2]int{3, 3}, counts(b))
}

func TestRoundRobinAlgorithm(t *testing.T) {
	_, h := newLB(t, func(c *Config) { c.Sets[0].Algorithm = dispatcher.RoundRobin })
	got := map[string]int{}
	for i := 0; i < 10; i++ {
		c := invite(h)
		got[c.hop(t)]++
		c.res.Branch(0).Respond(486) // busy: final, no failover
		siptest.AssertReplied(t, c.res, 486)
		assert.Len(t, c.res.Relayed(), 1)
	}
	assert.Equal(t, map[string]int{hopA: 5, hopB: 5}, got)
}

// A destination at its limit is skipped; when every one is, the caller
// gets 503 and nothing is relayed; a call that ends frees its place.
func TestLimitPerDestination503(t *testing.T) {
	b, h := newLB(t, func(c *Config) { c.Limit = 2 })
	var calls []*call
	got := map[string]int{}
	for i := 0; i < 4; i++ {
		c := invite(h)
		got[c.hop(t)]++
		c.answer(t)
		calls = append(calls, c)
	}
	assert.Equal(t, map[string]int{hopA: 2, hopB: 2}, got)

	full := invite(h)
	siptest.AssertNotRelayed(t, full.res)
	siptest.AssertReplied(t, full.res, 503)
	assert.Equal(t, "All Destinations Busy", full.res.Final().Reason)
	assert.Equal(t, uint64(2), b.Tracker().Stats().Limited, "refused at the chosen one, then at the other")

	calls[0].bye(t)
	c := invite(h)
	assert.Equal(t, calls[0].hop(t), c.hop(t), "the place freed")
	c.answer(t)
	assert.Equal(t, [2]int{2, 2}, counts(b))
}

// With round-robin the chosen destination may be the full one: the call
// goes to the next one that has room.
func TestFullDestinationSkipped(t *testing.T) {
	b, h := newLB(t, func(c *Config) { c.Limit = 1; c.Sets[0].Algorithm = dispatcher.RoundRobin })
	c1 := invite(h)
	c1.answer(t)
	c2 := invite(h) // round-robin's turn: the other, free
	c2.res.Branch(0).Respond(486)
	c3 := invite(h) // round-robin's turn: c1's, full → the other
	assert.NotEqual(t, c1.hop(t), c3.hop(t))
	c3.answer(t)
	assert.Equal(t, [2]int{1, 1}, counts(b))
}

// A destination that answers 5xx, or does not ring within the branch
// timeout, fails the call over to the next one; the call then counts
// there, not where it was first sent, until it ends.
func TestFailoverMovesTheCallsCount(t *testing.T) {
	b, h := newLB(t, nil)
	c := invite(h)
	first := c.hop(t)
	c.res.Branch(0).Respond(503)
	require.Len(t, c.res.Relayed(), 2, "%s", c.res)
	second := c.hop(t)
	assert.NotEqual(t, first, second)
	c.answer(t)
	p := b.Tracker().Profile(Profile)
	assert.Equal(t, 1, p.Count("sip:"+second))
	assert.Equal(t, 0, p.Count("sip:"+first))
	rec, ok := b.Tracker().Get(dialogID(c.inv))
	require.True(t, ok)
	assert.Equal(t, "sip:"+second, rec.Profiles[0].Value, "the record names where the call is")
	c.bye(t)
	assert.Equal(t, [2]int{0, 0}, counts(b))

	// No 180 within the branch timeout: 408, the other destination.
	c = invite(h)
	first = c.hop(t)
	h.Clock.Advance(2 * time.Second)
	require.Len(t, c.res.Relayed(), 2, "%s", c.res)
	assert.NotEqual(t, first, c.hop(t))
	c.answer(t)
	assert.Equal(t, 1, p.Count("sip:"+c.hop(t)))
	assert.Equal(t, 0, p.Count("sip:"+first))
	c.bye(t)
	assert.Equal(t, [2]int{0, 0}, counts(b))

	// Both fail: 503, nothing counted.
	c = invite(h)
	c.res.Branch(0).Respond(500)
	c.res.Branch(1).Respond(503)
	siptest.AssertReplied(t, c.res, 503)
	assert.Len(t, c.res.Relayed(), 2)
	assert.Equal(t, [2]int{0, 0}, counts(b))
	assert.Zero(t, b.Tracker().Active())
}

// A failover never goes to a full destination.
func TestFailoverSkipsFullDestination(t *testing.T) {
	b, h := newLB(t, func(c *Config) { c.Limit = 1 })
	c1 := invite(h)
	c1.answer(t)
	c2 := invite(h)
	assert.NotEqual(t, c1.hop(t), c2.hop(t))
	c2.res.Branch(0).Respond(503)
	assert.Len(t, c2.res.Relayed(), 1, "the other destination is full")
	siptest.AssertReplied(t, c2.res, 503)
	assert.Equal(t, 1, counts(b)[0]+counts(b)[1])
}

// Failover after the call was moved once: the count follows each move and
// is released once.
func TestFailoverOverThreeDestinations(t *testing.T) {
	b, h := newLB(t, func(c *Config) {
		c.Sets[0].Algorithm = dispatcher.Priority
		c.Sets[0].Targets = []dispatcher.Target{{URI: dstA}, {URI: dstB, Priority: 1}, {URI: "sip:10.0.0.3:5060", Priority: 2}}
	})
	c := invite(h)
	c.res.Branch(0).Respond(503)
	c.res.Branch(1).Respond(503)
	require.Len(t, c.res.Relayed(), 3)
	assert.Equal(t, "10.0.0.3:5060", c.hop(t))
	c.answer(t)
	p := b.Tracker().Profile(Profile)
	assert.Equal(t, map[string]int{"sip:10.0.0.3:5060": 1}, nonZero(p.Values()))
	c.bye(t)
	assert.Empty(t, nonZero(p.Values()))
}

func nonZero(m map[string]int) map[string]int {
	out := map[string]int{}
	for k, v := range m {
		if v != 0 {
			out[k] = v
		}
	}
	return out
}

// A busy callee (486) is final: no failover.
func TestBusyIsFinal(t *testing.T) {
	b, h := newLB(t, nil)
	c := invite(h)
	c.res.Branch(0).Respond(486)
	assert.Len(t, c.res.Relayed(), 1)
	siptest.AssertReplied(t, c.res, 486)
	assert.Equal(t, [2]int{0, 0}, counts(b))
}

// Every destination down (probing or by hand): 503.
func TestAllDestinationsDown503(t *testing.T) {
	b, h := newLB(t, nil)
	require.NoError(t, b.Dispatcher().MarkDown(dstA))
	require.NoError(t, b.Dispatcher().MarkDown(dstB))
	c := invite(h)
	siptest.AssertNotRelayed(t, c.res)
	siptest.AssertReplied(t, c.res, 503)
	assert.Equal(t, "No Destination Available", c.res.Final().Reason)
}

// A call longer than the maximum duration is ended with a BYE to each
// side, both answered; the destination's count is released.
func TestMaxDurationByesBothSides(t *testing.T) {
	b, h := newLB(t, func(c *Config) { c.MaxDuration = time.Minute })
	c := invite(h)
	callee := c.hop(t)
	c.answer(t)
	h.Clock.Advance(59 * time.Second)
	require.Empty(t, h.Originated())
	h.Clock.Advance(time.Second)
	orig := h.Originated()
	require.Len(t, orig, 2, "a BYE to each side")
	to := map[string]bool{}
	for _, o := range orig {
		assert.Equal(t, sip.BYE, o.Method)
		to[o.Addr.String()] = true
		o.Respond(200)
	}
	assert.Equal(t, map[string]bool{callee: true, siptest.DefaultUAC: true}, to)
	st := b.Tracker().Stats()
	assert.Equal(t, uint64(2), st.ByeSent)
	assert.Zero(t, st.ByeFailed)
	assert.Equal(t, uint64(1), st.ByReason[dialog.Timeout])
	assert.Equal(t, [2]int{0, 0}, counts(b))
}

// Only trusted sources place calls; in-dialog requests along our signed
// Record-Route pass from anywhere; a forged one is refused by tm.
func TestUntrustedSource403(t *testing.T) {
	b, h := newLB(t, nil)
	c := invite(h, siptest.WithSource("192.0.2.7:5060"))
	siptest.AssertNotRelayed(t, c.res)
	siptest.AssertReplied(t, c.res, 403)

	msg := h.Send(siptest.NewRequest("MESSAGE", "sip:bob@example.com", siptest.WithSource("192.0.2.7:5060")))
	siptest.AssertReplied(t, msg, 403)

	// The callee (any address) sends a BYE along our Record-Route.
	bye := h.Send(h.InDialog(siptest.NewBye("sip:alice@127.0.0.1:5061", siptest.WithSource("192.0.2.8:5060"))))
	siptest.AssertRelayedTo(t, bye, "sip:alice@127.0.0.1:5061")

	forged := h.Send(siptest.NewBye("sip:alice@127.0.0.1:5061", siptest.WithSource("192.0.2.8:5060"),
		siptest.WithRoute("<sip:127.0.0.1:5060;lr>")))
	siptest.AssertNotRelayed(t, forged)
	siptest.AssertReplied(t, forged, 403)

	// A trusted caller's preloaded Route does not choose the next hop.
	pre := invite(h, siptest.WithRoute("<sip:192.0.2.99;lr>"))
	siptest.AssertNotRelayed(t, pre.res)
	siptest.AssertReplied(t, pre.res, 403)
	assert.Zero(t, b.Tracker().Active(), "the refused call counts nowhere")
	assert.Equal(t, [2]int{0, 0}, counts(b))
}

// Other requests are balanced but not counted; OPTIONS to the balancer
// itself is a keep-alive.
func TestOtherRequests(t *testing.T) {
	b, h := newLB(t, nil)
	msg := h.Send(siptest.NewRequest("MESSAGE", "sip:bob@example.com"))
	require.Len(t, msg.Relayed(), 1)
	msg.Branch(0).Respond(503)
	require.Len(t, msg.Relayed(), 2, "failover")
	msg.Branch(1).Respond(200)
	siptest.AssertReplied(t, msg, 200)
	assert.Zero(t, b.Tracker().Stats().Created)

	ka := h.Send(siptest.NewRequest("OPTIONS", "sip:127.0.0.1:5060"))
	siptest.AssertNotRelayed(t, ka)
	siptest.AssertReplied(t, ka, 200)
}

// Probes answered 503 take a destination out; calls then go to the
// other; answered probes bring it back.
func TestProbingTakesDestinationOut(t *testing.T) {
	b, h := newLB(t, func(c *Config) {
		c.Probe = dispatcher.ProbeConfig{Interval: time.Second, Timeout: 500 * time.Millisecond, FailAfter: 2, RecoverAfter: 1, FailureCodes: []int{5}}
	})
	prober, err := b.Dispatcher().Start(h.Server, h.Group())
	require.NoError(t, err)
	defer prober.Stop()
	answered := 0
	probe := func(code func(hop string) int) {
		h.Clock.Advance(time.Second)
		orig := h.Originated()
		for _, o := range orig[answered:] {
			require.Equal(t, sip.OPTIONS, o.Method)
			o.Respond(code(o.Addr.String()))
		}
		answered = len(orig)
	}
	for i := 0; i < 3; i++ {
		probe(func(hop string) int {
			if hop == hopB {
				return 503
			}
			return 200
		})
	}
	require.False(t, b.Dispatcher().Up(dstB))
	for i := 0; i < 4; i++ {
		c := invite(h)
		assert.Equal(t, hopA, c.hop(t))
		c.res.Branch(0).Respond(486)
	}
	probe(func(string) int { return 200 })
	probe(func(string) int { return 200 })
	require.True(t, b.Dispatcher().Up(dstB))
}

// moveStore under concurrent calls that move and end: every count back
// to zero, never below a limit's guarantee.
func TestMoveStoreConcurrent(t *testing.T) {
	s := newMoveStore(dialog.NewMemoryStore())
	vals := []string{"a", "b", "c"}
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 500; i++ {
				id := dialog.ID{CallID: fmt.Sprintf("%d-%d", g, i), CallerTag: "t"}
				cur := vals[i%3]
				if _, ok := s.Join(Profile, cur, 0); !ok {
					t.Error("join without limit refused")
					return
				}
				s.Put(dialog.Record{ID: id, Profiles: []dialog.ProfileValue{{Profile: Profile, Value: cur}}})
				for m := 0; m < i%3; m++ {
					next := vals[(i+m+1)%3]
					if s.move(id, cur, next, 0) {
						cur = next
					}
				}
				if rec, ok := s.Get(id); !ok || rec.Profiles[0].Value != cur {
					t.Errorf("record of %v: %v, want %s", id, rec.Profiles, cur)
				}
				// What the tracker does when a call ends.
				if s.Delete(id) {
					s.Leave(Profile, vals[i%3])
				}
			}
		}()
	}
	wg.Wait()
	for _, v := range vals {
		assert.Zero(t, s.Count(Profile, v), v)
	}
	assert.Empty(t, s.moved)
	assert.Empty(t, s.skip)
}

// The README's go run line spells out the defaults: `go run
// ./examples/loadbalancer` alone does the same.
func TestDefaultsMatchReadme(t *testing.T) {
	def, err := parseFlags(nil, io.Discard)
	require.NoError(t, err)
	run := readmeGoLine(t)
	o, err := parseFlags(run.Args[2:], io.Discard)
	require.NoError(t, err)
	o.metrics = "" // the README adds the metrics, off by default
	assert.Equal(t, def, o)
	cfg, err := def.config(nil)
	require.NoError(t, err)
	assert.Equal(t, []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}, cfg.Trusted)
	require.Len(t, cfg.Sets, 1)
	assert.Equal(t, dispatcher.LeastLoaded, cfg.Sets[0].Algorithm)
	assert.Equal(t, []dispatcher.Target{{URI: "sip:127.0.0.1:5070"}, {URI: "sip:127.0.0.1:5071"}}, cfg.Sets[0].Targets)

	_, err = parseFlags([]string{"-trusted", "10.0.0.0/8,192.0.2.1"}, io.Discard)
	require.NoError(t, err)
	o.trusted = "10.0.0.0/8, 192.0.2.1"
	cfg, err = o.config(nil)
	require.NoError(t, err)
	assert.Equal(t, []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("192.0.2.1/32")}, cfg.Trusted)
	o.trusted = "nonsense"
	_, err = o.config(nil)
	assert.ErrorContains(t, err, "-trusted")
	o.trusted, o.algorithm = "127.0.0.1", "fastest"
	_, err = o.config(nil)
	assert.ErrorContains(t, err, "-algorithm")
}

func TestSetsFromJSONFile(t *testing.T) {
	f := t.TempDir() + "/sets.json"
	require.NoError(t, writeFile(f, `[{"id": "gw", "algorithm": "weighted", "targets": [
		{"uri": "sip:10.0.0.1:5060", "weight": 2}, {"uri": "sip:10.0.0.2:5060"}]}]`))
	o, err := parseFlags([]string{"-sets", f}, io.Discard)
	require.NoError(t, err)
	cfg, err := o.config(nil)
	require.NoError(t, err)
	b, err := New(cfg)
	require.NoError(t, err)
	assert.Equal(t, "gw", b.cfg.Set)
	assert.Equal(t, dispatcher.Weighted, b.Dispatcher().Sets()[0].Algorithm)

	o.set = "nope"
	cfg, err = o.config(nil)
	require.NoError(t, err)
	_, err = New(cfg)
	assert.ErrorIs(t, err, dispatcher.ErrUnknownSet)
	assert.True(t, strings.Contains(err.Error(), "nope"))
}

// Reload swaps the sets while calls are in progress: a removed
// destination gets no new call, a kept one keeps its calls' count, a bad
// file changes nothing.
func TestReloadSets(t *testing.T) {
	f := t.TempDir() + "/sets.json"
	require.NoError(t, writeFile(f, `[{"id": "dst", "targets": [{"uri": "sip:10.0.0.1:5060"}, {"uri": "sip:10.0.0.2:5060"}]}]`))
	o, err := parseFlags([]string{"-sets", f}, io.Discard)
	require.NoError(t, err)
	cfg, err := o.config(slog.New(slog.NewTextHandler(io.Discard, nil)))
	require.NoError(t, err)
	cfg.Trusted = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
	b, err := New(cfg)
	require.NoError(t, err)
	h := siptest.NewHarness(t, b.Routes())
	c1 := invite(h)
	c1.answer(t)
	kept := c1.hop(t)

	require.NoError(t, writeFile(f, `[{"id": "dst", "targets": [{"uri": "sip:`+kept+`"}, {"uri": "sip:10.0.0.3:5060"}]}]`))
	require.NoError(t, b.Reload(f))
	got := map[string]int{}
	for i := 0; i < 4; i++ {
		c := invite(h)
		got[c.hop(t)]++
		c.res.Branch(0).Respond(486)
	}
	assert.Equal(t, map[string]int{kept: 2, "10.0.0.3:5060": 2}, got)
	assert.Equal(t, 1, b.Tracker().Profile(Profile).Count("sip:"+kept), "the call in progress still counts")
	c1.bye(t)

	require.NoError(t, writeFile(f, `[{"id": "other", "targets": [{"uri": "sip:10.0.0.9:5060"}]}]`))
	assert.ErrorIs(t, b.Reload(f), dispatcher.ErrUnknownSet)
	require.NoError(t, writeFile(f, `[{"id": "dst", "targets": [{"uri": "not a uri ::"}]}]`))
	assert.Error(t, b.Reload(f))
	assert.Len(t, b.Dispatcher().Sets()[0].Targets, 2, "a bad file changes nothing")
}
