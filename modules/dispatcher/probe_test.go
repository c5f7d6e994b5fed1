package dispatcher_test

import (
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/asyncsip/asyncsip/modules/dispatcher"
	"github.com/asyncsip/asyncsip/siptest"
	"github.com/asyncsip/asyncsip/tm"
)

// observer records what the dispatcher reports.
type observer struct {
	mu      sync.Mutex
	changes []dispatcher.Change
	probes  map[string][]bool
}

func (o *observer) Probed(uri string, ok bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.probes == nil {
		o.probes = map[string][]bool{}
	}
	o.probes[uri] = append(o.probes[uri], ok)
}

func (o *observer) StateChanged(c dispatcher.Change) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.changes = append(o.changes, c)
}

func (o *observer) Changes() []dispatcher.Change {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]dispatcher.Change(nil), o.changes...)
}

const interval = 10 * time.Second

// probing returns a harness relaying through set "gw" of n targets, probed
// every 10 s (2 s timeout, one slice) with pc's other fields.
func probing(t *testing.T, n int, pc dispatcher.ProbeConfig) (*dispatcher.Dispatcher, *siptest.Harness, *observer) {
	t.Helper()
	pc.Interval, pc.Timeout = interval, 2*time.Second
	if pc.Slices == 0 {
		pc.Slices = 1
	}
	obs := &observer{}
	ws := make([]int, n)
	d, err := dispatcher.New(dispatcher.Config{
		Sets:     []dispatcher.SetConfig{{ID: "gw", Targets: targets(ws...)}},
		Probe:    pc,
		Observer: obs,
	})
	require.NoError(t, err)
	h := siptest.NewHarness(t, relayRoutes(d))
	p, err := d.Start(h.Server, h.Group())
	require.NoError(t, err)
	t.Cleanup(p.Stop)
	return d, h, obs
}

// tick advances the clock by d and returns the probes sent meanwhile, by
// target host.
func tick(t *testing.T, h *siptest.Harness, d time.Duration) map[string]*siptest.Originated {
	t.Helper()
	before := len(h.Originated())
	h.Clock.Advance(d)
	out := map[string]*siptest.Originated{}
	for _, o := range h.Originated()[before:] {
		require.Equal(t, sip.OPTIONS, o.Method)
		_, dup := out[o.Recipient.Host]
		require.False(t, dup, "%s probed twice in one tick", o.Recipient.Host)
		out[o.Recipient.Host] = o
	}
	return out
}

// A target is taken down after FailAfter failures in a row (a 5xx when 5
// is a failure code, a timeout), gets no call while down, and comes back
// after RecoverAfter answers — any code not configured as a failure.
func TestProbeDownAfterFailuresUpAfterSuccesses(t *testing.T) {
	d, h, obs := probing(t, 2, dispatcher.ProbeConfig{FailAfter: 2, RecoverAfter: 2, FailureCodes: []int{5}})

	p := tick(t, h, interval)
	require.Len(t, p, 2)
	p["10.0.0.1"].Respond(200)
	p["10.0.0.2"].Respond(200)

	p = tick(t, h, interval)
	p["10.0.0.1"].Respond(200)
	p["10.0.0.2"].Respond(503) // failure 1
	assert.True(t, d.Up("10.0.0.2:5060"), "one failure is not enough")

	p = tick(t, h, interval)
	p["10.0.0.1"].Respond(200)
	// 10.0.0.2 does not answer: the probe times out (2 s) — failure 2.
	h.Clock.Advance(3 * time.Second)
	assert.False(t, d.Up("10.0.0.2:5060"))
	require.Len(t, obs.Changes(), 1)
	assert.Equal(t, "sip:10.0.0.2:5060", obs.Changes()[0].URI)
	assert.False(t, obs.Changes()[0].Up)
	assert.Contains(t, obs.Changes()[0].Reason, "2 probes failed")

	assert.Equal(t, map[string]int{"10.0.0.1:5060": 10}, route(t, h, 10, 0), "a down target gets no call")

	p = tick(t, h, interval-3*time.Second)
	require.Len(t, p, 2, "a down target is still probed")
	p["10.0.0.1"].Respond(200)
	p["10.0.0.2"].Respond(200) // success 1
	assert.False(t, d.Up("10.0.0.2:5060"))
	p = tick(t, h, interval)
	p["10.0.0.1"].Respond(200)
	p["10.0.0.2"].Respond(404) // any answer proves it alive: success 2
	assert.True(t, d.Up("10.0.0.2:5060"))
	require.Len(t, obs.Changes(), 2)
	assert.True(t, obs.Changes()[1].Up)
	assert.Equal(t, map[string]int{"10.0.0.1:5060": 5, "10.0.0.2:5060": 5}, route(t, h, 10, 0))

	st := d.Stats()
	assert.Equal(t, uint64(10), st.ProbesSent)
	assert.Equal(t, uint64(2), st.ProbesFailed)
	assert.Equal(t, uint64(1), st.Downs)
	assert.Equal(t, uint64(1), st.Ups)
	assert.Zero(t, st.TargetsDown)
	for _, ts := range d.Targets() {
		if ts.URI == "sip:10.0.0.2:5060" {
			assert.Equal(t, uint64(5), ts.Probes)
			assert.Equal(t, uint64(2), ts.ProbesFailed)
			assert.Equal(t, 404, ts.LastCode)
			assert.Equal(t, h.Clock.Now(), ts.Since, "the change time is the loop's")
		}
	}
}

// Without failure codes every response counts as alive, even a 503; only
// silence takes a target down.
func TestProbeAnyResponseIsAliveByDefault(t *testing.T) {
	d, h, _ := probing(t, 1, dispatcher.ProbeConfig{FailAfter: 1})
	for i := 0; i < 3; i++ {
		tick(t, h, interval)["10.0.0.1"].Respond(503)
	}
	assert.True(t, d.Up("10.0.0.1:5060"))
	tick(t, h, interval)
	h.Clock.Advance(3 * time.Second)
	assert.False(t, d.Up("10.0.0.1:5060"))
	siptest.AssertReplied(t, h.Send(siptest.NewRequest("INVITE", "sip:bob@example.com")), 503)
}

// MaxInFlight caps the probes out at once; the others wait for their next
// turn. A target whose last probe is still out is not probed again.
func TestProbeInFlightCap(t *testing.T) {
	d, h, _ := probing(t, 5, dispatcher.ProbeConfig{MaxInFlight: 2})
	p := tick(t, h, interval)
	assert.Len(t, p, 2)
	assert.Equal(t, uint64(3), d.Stats().ProbesSkipped)
	assert.Equal(t, uint64(2), d.Stats().ProbesSent)
	for _, o := range p {
		o.Respond(200)
	}
	p2 := tick(t, h, interval)
	assert.Len(t, p2, 2)
}

// With four slices a tick probes a quarter of the targets, and every target
// is probed exactly once per interval.
func TestProbesSpreadOverSlices(t *testing.T) {
	d, h, _ := probing(t, 16, dispatcher.ProbeConfig{Slices: 4})
	seen := map[string]int{}
	var perTick []int
	for i := 0; i < 4; i++ {
		p := tick(t, h, interval/4)
		perTick = append(perTick, len(p))
		for host, o := range p {
			seen[host]++
			o.Respond(200)
		}
	}
	assert.Len(t, seen, 16)
	for host, n := range seen {
		assert.Equal(t, 1, n, host)
	}
	sort.Ints(perTick)
	assert.Less(t, perTick[3], 16, "not all in one tick: %v", perTick)
	assert.Equal(t, uint64(16), d.Stats().ProbesSent)
}

// A target removed while its probe is out is not judged by it and not
// probed again; re-added, it starts up with fresh counters.
func TestProbeOfRemovedTarget(t *testing.T) {
	d, h, obs := probing(t, 2, dispatcher.ProbeConfig{FailAfter: 1})
	tick(t, h, interval)["10.0.0.1"].Respond(200)
	require.NoError(t, d.RemoveTarget("gw", "sip:10.0.0.2:5060"))
	h.Clock.Advance(3 * time.Second) // its probe times out
	assert.Empty(t, obs.Changes())
	p := tick(t, h, interval-3*time.Second)
	assert.Len(t, p, 1)
	assert.Contains(t, p, "10.0.0.1")
	require.NoError(t, d.AddTarget("gw", dispatcher.Target{URI: "sip:10.0.0.2:5060"}))
	assert.True(t, d.Up("10.0.0.2:5060"))
	assert.Len(t, d.Targets(), 2)
	for _, ts := range d.Targets() {
		if ts.URI == "sip:10.0.0.2:5060" {
			assert.Zero(t, ts.Probes, "fresh state: %+v", ts)
		}
	}
}

func TestProbeConfigDefaults(t *testing.T) {
	d, err := dispatcher.New(dispatcher.Config{Probe: dispatcher.ProbeConfig{Interval: time.Second}})
	require.NoError(t, err)
	h := siptest.NewHarness(t, relayRoutes(d))
	p, err := d.Start(h.Server, h.Group())
	require.NoError(t, err)
	defer p.Stop()
	c := p.Config()
	assert.Equal(t, 500*time.Millisecond, c.Timeout, "half the interval")
	assert.Equal(t, dispatcher.DefaultFailAfter, c.FailAfter)
	assert.Equal(t, dispatcher.DefaultRecoverAfter, c.RecoverAfter)
	assert.Equal(t, 1, c.Slices, "one per loop")

	d2, err := dispatcher.New(dispatcher.Config{Probe: dispatcher.ProbeConfig{Interval: time.Second, Timeout: time.Hour}})
	require.NoError(t, err)
	p2, err := d2.Start(h.Server, h.Group())
	require.NoError(t, err)
	defer p2.Stop()
	assert.Equal(t, 900*time.Millisecond, p2.Config().Timeout, "ends before the next turn")

	bad, err := dispatcher.New(dispatcher.Config{Probe: dispatcher.ProbeConfig{From: "sip:\r\nx"}})
	require.NoError(t, err)
	_, err = bad.Start(h.Server, h.Group())
	assert.Error(t, err, fmt.Sprint("a From that does not parse"))
}

// Failed in the failure route counts failed calls like failed probes:
// FailAfter of them in a row take the target down before its next probe;
// probing brings it back.
func TestFailedCallsTakeTargetDown(t *testing.T) {
	obs := &observer{}
	d, err := dispatcher.New(dispatcher.Config{
		Sets:     []dispatcher.SetConfig{{ID: "gw", Targets: targets(1, 1)}},
		Probe:    dispatcher.ProbeConfig{Interval: interval, Timeout: 2 * time.Second, FailAfter: 2, RecoverAfter: 1, Slices: 1},
		Observer: obs,
	})
	require.NoError(t, err)
	h := siptest.NewHarness(t, tm.Routes{
		Request: func(c *tm.Context) { _ = d.Relay(c, "gw") },
		Failure: func(c *tm.Context) {
			if code := c.Resp.StatusCode; code == 408 || code >= 500 {
				d.Failed(c)
				_ = d.RelayNext(c)
			}
		},
	})
	p, err := d.Start(h.Server, h.Group())
	require.NoError(t, err)
	defer p.Stop()

	for i := 0; i < 4; i++ { // calls alternate; 10.0.0.2 fails its two
		res := h.Send(siptest.NewRequest("INVITE", "sip:bob@example.com"))
		if res.Branch(0).Addr.String() == "10.0.0.2:5060" {
			res.Branch(0).Respond(503)
			require.Len(t, res.Relayed(), 2)
			assert.Equal(t, "10.0.0.1:5060", res.Branch(1).Addr.String(), "failed over")
			res.Branch(1).Respond(200)
		} else {
			res.Branch(0).Respond(200)
		}
	}
	assert.False(t, d.Up("10.0.0.2:5060"))
	require.Len(t, obs.Changes(), 1)
	assert.Contains(t, obs.Changes()[0].Reason, "2 failures in a row, last: a call answered 503")
	assert.Equal(t, uint64(2), d.Stats().CallFailures)
	assert.Equal(t, map[string]int{"10.0.0.1:5060": 6}, route(t, h, 6, 0))

	for _, o := range tick(t, h, interval) {
		o.Respond(200)
	}
	assert.True(t, d.Up("10.0.0.2:5060"), "an answered probe brings it back")
}

// A probe that cannot be sent (the transport refuses the address) is a
// failure at once.
func TestProbeUnreachableTarget(t *testing.T) {
	d, h, obs := probing(t, 2, dispatcher.ProbeConfig{FailAfter: 2})
	h.Unreachable("10.0.0.2:5060")
	for i := 0; i < 2; i++ {
		p := tick(t, h, interval)
		require.Len(t, p, 1, "the unreachable one is not listed: it never left")
		p["10.0.0.1"].Respond(200)
	}
	assert.False(t, d.Up("10.0.0.2:5060"))
	require.Len(t, obs.Changes(), 1)
	assert.Contains(t, obs.Changes()[0].Reason, "could not be sent")
	assert.Equal(t, uint64(4), d.Stats().ProbesSent)
}
