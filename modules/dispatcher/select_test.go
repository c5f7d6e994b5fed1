package dispatcher_test

import (
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/asyncsip/asyncsip/modules/dispatcher"
	"github.com/asyncsip/asyncsip/siptest"
	"github.com/asyncsip/asyncsip/tm"
)

// targets returns n targets sip:10.0.0.<i>:5060, i from 1, with weights.
func targets(weights ...int) []dispatcher.Target {
	ts := make([]dispatcher.Target, len(weights))
	for i, w := range weights {
		ts[i] = dispatcher.Target{URI: fmt.Sprintf("sip:10.0.0.%d:5060", i+1), Weight: w}
	}
	return ts
}

func newDispatcher(t testing.TB, sets ...dispatcher.SetConfig) *dispatcher.Dispatcher {
	t.Helper()
	d, err := dispatcher.New(dispatcher.Config{Sets: sets})
	require.NoError(t, err)
	return d
}

// relayRoutes relays through set "gw" and fails over on 408 and 5xx.
func relayRoutes(d *dispatcher.Dispatcher) tm.Routes {
	return tm.Routes{
		Request: func(c *tm.Context) { _ = d.Relay(c, "gw") },
		Failure: func(c *tm.Context) {
			if code := c.Resp.StatusCode; code == 408 || code >= 500 {
				_ = d.RelayNext(c)
			}
		},
	}
}

// route sends n requests (Call-ID call-<i>, From user user-<i%users>) and
// counts the next hops they were relayed to, answering each 200.
func route(t *testing.T, h *siptest.Harness, n, users int) map[string]int {
	t.Helper()
	got := map[string]int{}
	for i := 0; i < n; i++ {
		res := h.Send(siptest.NewRequest("MESSAGE", "sip:svc@example.com",
			siptest.WithCallID(fmt.Sprintf("call-%d", i)), siptest.WithFrom(fmt.Sprintf("sip:user-%d@example.com", i%max(users, 1)))))
		require.Len(t, res.Relayed(), 1, "request %d: %s", i, res)
		got[res.Branch(0).Addr.String()]++
		res.Branch(0).Respond(200)
	}
	return got
}

func TestRoundRobinSpreadsEvenly(t *testing.T) {
	d := newDispatcher(t, dispatcher.SetConfig{ID: "gw", Targets: targets(1, 1, 1)})
	h := siptest.NewHarness(t, relayRoutes(d))
	assert.Equal(t, map[string]int{"10.0.0.1:5060": 100, "10.0.0.2:5060": 100, "10.0.0.3:5060": 100}, route(t, h, 300, 0))

	require.NoError(t, d.MarkDown("sip:10.0.0.2:5060"))
	assert.Equal(t, map[string]int{"10.0.0.1:5060": 50, "10.0.0.3:5060": 50}, route(t, h, 100, 0),
		"a down target's share goes evenly to the others")
	assert.Equal(t, uint64(400), d.Stats().Selected)
}

func TestWeightedShares(t *testing.T) {
	d := newDispatcher(t, dispatcher.SetConfig{ID: "gw", Algorithm: dispatcher.Weighted, Targets: targets(3, 2, 1)})
	h := siptest.NewHarness(t, relayRoutes(d))
	assert.Equal(t, map[string]int{"10.0.0.1:5060": 300, "10.0.0.2:5060": 200, "10.0.0.3:5060": 100}, route(t, h, 600, 0))

	// Interleaved, not in blocks: smooth weighted round-robin.
	var seq []string
	for i := 0; i < 6; i++ {
		res := h.Send(siptest.NewRequest("MESSAGE", "sip:svc@example.com"))
		seq = append(seq, res.Branch(0).Addr.Addr().String())
		res.Branch(0).Respond(200)
	}
	assert.Equal(t, []string{"10.0.0.1", "10.0.0.2", "10.0.0.1", "10.0.0.3", "10.0.0.2", "10.0.0.1"}, seq)

	require.NoError(t, d.MarkDown("10.0.0.2:5060"))
	got := route(t, h, 400, 0)
	assert.Equal(t, map[string]int{"10.0.0.1:5060": 300, "10.0.0.3:5060": 100}, got, "weights of the live targets")
}

func TestHashAffinity(t *testing.T) {
	for _, alg := range []dispatcher.Algorithm{dispatcher.HashCallID, dispatcher.HashFromUser, dispatcher.HashRURIUser} {
		t.Run(alg.String(), func(t *testing.T) {
			d := newDispatcher(t, dispatcher.SetConfig{ID: "gw", Algorithm: alg, Targets: targets(1, 1, 1)})
			h := siptest.NewHarness(t, relayRoutes(d))
			const users = 30
			first := map[string]string{} // key → target
			spread := map[string]int{}
			for i := 0; i < 300; i++ {
				callID, user := fmt.Sprintf("call-%d", i%users), fmt.Sprintf("user-%d", i%users)
				if alg != dispatcher.HashCallID {
					callID = fmt.Sprintf("call-%d", i) // a new call each time, same caller and callee
				}
				ruri := "sip:svc@example.com"
				if alg == dispatcher.HashRURIUser {
					ruri = "sip:" + user + "@example.com"
				}
				res := h.Send(siptest.NewRequest("MESSAGE", ruri,
					siptest.WithCallID(callID), siptest.WithFrom("sip:"+user+"@example.com")))
				require.Len(t, res.Relayed(), 1)
				to := res.Branch(0).Addr.String()
				res.Branch(0).Respond(200)
				if prev, ok := first[user]; ok {
					assert.Equal(t, prev, to, "request %d of %s moved", i, user)
				} else {
					first[user] = to
					spread[to]++
				}
			}
			assert.Len(t, spread, 3, "30 keys reach every target: %v", spread)

			// Rendezvous hashing: removing a target moves only its keys.
			require.NoError(t, d.RemoveTarget("gw", "sip:10.0.0.2:5060"))
			for u := 0; u < users; u++ {
				user := fmt.Sprintf("user-%d", u)
				res := h.Send(siptest.NewRequest("MESSAGE", "sip:"+user+"@example.com",
					siptest.WithCallID(fmt.Sprintf("call-%d", u)), siptest.WithFrom("sip:"+user+"@example.com")))
				to := res.Branch(0).Addr.String()
				res.Branch(0).Respond(200)
				assert.NotEqual(t, "10.0.0.2:5060", to)
				if first[user] != "10.0.0.2:5060" {
					assert.Equal(t, first[user], to, "%s was not on the removed target and must stay", user)
				}
			}
		})
	}
}

func TestPriorityGroups(t *testing.T) {
	ts := targets(1, 1, 1)
	ts[0].Priority, ts[1].Priority, ts[2].Priority = 2, 1, 1 // 10.0.0.1 is the backup
	d := newDispatcher(t, dispatcher.SetConfig{ID: "gw", Algorithm: dispatcher.Priority, Targets: ts})
	h := siptest.NewHarness(t, relayRoutes(d))
	assert.Equal(t, map[string]int{"10.0.0.2:5060": 50, "10.0.0.3:5060": 50}, route(t, h, 100, 0), "in turn among the best priority")

	require.NoError(t, d.MarkDown("10.0.0.2:5060"))
	assert.Equal(t, map[string]int{"10.0.0.3:5060": 20}, route(t, h, 20, 0))
	require.NoError(t, d.MarkDown("10.0.0.3:5060"))
	assert.Equal(t, map[string]int{"10.0.0.1:5060": 20}, route(t, h, 20, 0), "the backup when the primaries are down")
	require.NoError(t, d.MarkUp("10.0.0.2:5060"))
	assert.Equal(t, map[string]int{"10.0.0.2:5060": 20}, route(t, h, 20, 0), "back to the primary")
}

// A branch that fails 503 or times out moves the call to the next live
// target not tried yet; when none is left the caller gets 503.
func TestFailoverFromFailureRoute(t *testing.T) {
	ts := targets(1, 1, 1, 1)
	for i := range ts {
		ts[i].Priority = i
	}
	d := newDispatcher(t, dispatcher.SetConfig{ID: "gw", Algorithm: dispatcher.Priority, Targets: ts})
	require.NoError(t, d.MarkDown("10.0.0.3:5060")) // skipped by failover too
	h := siptest.NewHarness(t, relayRoutes(d))

	res := h.Send(siptest.NewRequest("INVITE", "sip:+15551234@example.com"))
	require.Len(t, res.Relayed(), 1)
	assert.Equal(t, "10.0.0.1:5060", res.Branch(0).Addr.String())
	assert.Equal(t, "sip:+15551234@example.com", res.Branch(0).Recipient.String(), "the Request-URI stays")

	res.Branch(0).Respond(503)
	require.Len(t, res.Relayed(), 2)
	assert.Equal(t, "10.0.0.2:5060", res.Branch(1).Addr.String())

	res.Branch(1).Respond(500)
	require.Len(t, res.Relayed(), 3)
	assert.Equal(t, "10.0.0.4:5060", res.Branch(2).Addr.String(), "the down target is skipped")

	res.Branch(2).Respond(503)
	assert.Len(t, res.Relayed(), 3, "nothing left to try")
	siptest.AssertReplied(t, res, 503)
	_, tried := d.Selected(res.Context())
	assert.Equal(t, 3, tried)

	// A busy callee is not a failed target: no failover.
	res = h.Send(siptest.NewRequest("INVITE", "sip:+15550000@example.com"))
	res.Branch(0).Respond(486)
	assert.Len(t, res.Relayed(), 1)
	siptest.AssertReplied(t, res, 486)
}

func TestAllDownIs503(t *testing.T) {
	d := newDispatcher(t, dispatcher.SetConfig{ID: "gw", Targets: targets(1, 1)})
	require.NoError(t, d.MarkDown("10.0.0.1:5060"))
	require.NoError(t, d.MarkDown("10.0.0.2:5060"))
	var selErr error
	h := siptest.NewHarness(t, func(c *tm.Context) { selErr = d.Relay(c, "gw") })
	res := h.Send(siptest.NewRequest("INVITE", "sip:bob@example.com"))
	siptest.AssertNotRelayed(t, res)
	siptest.AssertReplied(t, res, 503)
	assert.ErrorIs(t, selErr, dispatcher.ErrNoTarget)
	assert.Equal(t, uint64(1), d.Stats().NoTarget)

	h2 := siptest.NewHarness(t, func(c *tm.Context) { selErr = d.Relay(c, "nope") })
	siptest.AssertReplied(t, h2.Send(siptest.NewRequest("INVITE", "sip:bob@example.com")), 503)
	assert.ErrorIs(t, selErr, dispatcher.ErrUnknownSet)
}

func TestNextWithoutSelect(t *testing.T) {
	d := newDispatcher(t, dispatcher.SetConfig{ID: "gw", Targets: targets(1)})
	var err error
	h := siptest.NewHarness(t, func(c *tm.Context) {
		_, err = d.Next(c)
		_ = c.Reply(500, "x")
	})
	h.Send(siptest.NewRequest("MESSAGE", "sip:bob@example.com"))
	assert.True(t, errors.Is(err, dispatcher.ErrNoSelection), "%v", err)
}

// Set changes in the middle of a call's failover: a target removed after
// Select is not chosen by Next, one added is.
func TestFailoverSeesRuntimeChanges(t *testing.T) {
	ts := targets(1, 1)
	ts[1].Priority = 1
	d := newDispatcher(t, dispatcher.SetConfig{ID: "gw", Algorithm: dispatcher.Priority, Targets: ts})
	h := siptest.NewHarness(t, relayRoutes(d))
	res := h.Send(siptest.NewRequest("INVITE", "sip:bob@example.com"))
	assert.Equal(t, "10.0.0.1:5060", res.Branch(0).Addr.String())

	require.NoError(t, d.RemoveTarget("gw", "10.0.0.2:5060"))
	require.NoError(t, d.AddTarget("gw", dispatcher.Target{URI: "sip:10.0.0.9:5070", Priority: 5}))
	res.Branch(0).Respond(503)
	require.Len(t, res.Relayed(), 2)
	assert.Equal(t, "10.0.0.9:5070", res.Branch(1).Addr.String())
}

func TestBadConfigRefused(t *testing.T) {
	for name, s := range map[string]dispatcher.SetConfig{
		"no id":          {Targets: targets(1)},
		"bad uri":        {ID: "gw", Targets: []dispatcher.Target{{URI: "sip:"}}},
		"duplicate":      {ID: "gw", Targets: []dispatcher.Target{{URI: "10.0.0.1"}, {URI: "sip:10.0.0.1"}}},
		"weight":         {ID: "gw", Targets: []dispatcher.Target{{URI: "10.0.0.1", Weight: -1}}},
		"heavy":          {ID: "gw", Targets: []dispatcher.Target{{URI: "10.0.0.1", Weight: dispatcher.MaxWeight + 1}}},
		"algorithm":      {ID: "gw", Algorithm: 99, Targets: targets(1)},
		"header smuggle": {ID: "gw", Targets: []dispatcher.Target{{URI: "10.0.0.1\r\nX: y"}}},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := dispatcher.New(dispatcher.Config{Sets: []dispatcher.SetConfig{s}})
			assert.Error(t, err)
		})
	}
	d := newDispatcher(t, dispatcher.SetConfig{ID: "gw", Targets: targets(1)})
	assert.Error(t, d.AddTarget("gw", dispatcher.Target{URI: "sip:10.0.0.1:5060"}), "already there")
	assert.ErrorIs(t, d.RemoveTarget("gw", "10.0.0.7"), dispatcher.ErrBadTarget)
	assert.ErrorIs(t, d.RemoveTarget("nope", "10.0.0.1"), dispatcher.ErrUnknownSet)
	assert.ErrorIs(t, d.DeleteSet("nope"), dispatcher.ErrUnknownSet)
	assert.Len(t, d.Targets(), 1, "a refused change changes nothing")
}

// A target the relay refuses at once (it is this proxy; a host name with
// no resolver) is skipped for the next; with none left the caller gets 503.
func TestRelaySkipsTargetsThatCannotBeReached(t *testing.T) {
	ts := []dispatcher.Target{{URI: "sip:" + siptest.DefaultProxy, Priority: 1}, {URI: "sip:gw.example.invalid", Priority: 2}, {URI: "sip:10.0.0.3:5060", Priority: 3}}
	d := newDispatcher(t, dispatcher.SetConfig{ID: "gw", Algorithm: dispatcher.Priority, Targets: ts})
	h := siptest.NewHarness(t, relayRoutes(d))
	res := h.Send(siptest.NewRequest("INVITE", "sip:bob@example.com"))
	require.Len(t, res.Relayed(), 1, "%s", res)
	assert.Equal(t, "10.0.0.3:5060", res.Branch(0).Addr.String())
	_, tried := d.Selected(res.Context())
	assert.Equal(t, 3, tried)

	require.NoError(t, d.RemoveTarget("gw", "sip:10.0.0.3:5060"))
	res = h.Send(siptest.NewRequest("INVITE", "sip:bob@example.com"))
	siptest.AssertNotRelayed(t, res)
	siptest.AssertReplied(t, res, 503)
}

// LeastLoaded follows Config.Load (a dialog profile's counts, here a map):
// the least loaded live target, in turn among equals.
func TestLeastLoaded(t *testing.T) {
	var mu sync.Mutex
	load := map[string]int{"sip:10.0.0.1:5060": 5, "sip:10.0.0.2:5060": 2, "sip:10.0.0.3:5060": 2}
	set := func(uri string, n int) {
		mu.Lock()
		defer mu.Unlock()
		load[uri] = n
	}
	d, err := dispatcher.New(dispatcher.Config{
		Sets: []dispatcher.SetConfig{{ID: "gw", Algorithm: dispatcher.LeastLoaded, Targets: targets(1, 1, 1)}},
		Load: func(t dispatcher.Target) int {
			mu.Lock()
			defer mu.Unlock()
			return load[t.URI]
		},
	})
	require.NoError(t, err)
	h := siptest.NewHarness(t, relayRoutes(d))
	assert.Equal(t, map[string]int{"10.0.0.2:5060": 5, "10.0.0.3:5060": 5}, route(t, h, 10, 0), "in turn among the least loaded")
	set("sip:10.0.0.3:5060", 9)
	assert.Equal(t, map[string]int{"10.0.0.2:5060": 4}, route(t, h, 4, 0))
	require.NoError(t, d.MarkDown("10.0.0.2:5060"))
	assert.Equal(t, map[string]int{"10.0.0.1:5060": 4}, route(t, h, 4, 0), "the least loaded of the live ones")

	// Failover goes to the next least loaded.
	res := h.Send(siptest.NewRequest("INVITE", "sip:bob@example.com"))
	res.Branch(0).Respond(503)
	require.Len(t, res.Relayed(), 2)
	assert.Equal(t, "10.0.0.3:5060", res.Branch(1).Addr.String())

	_, err = dispatcher.New(dispatcher.Config{Sets: []dispatcher.SetConfig{{ID: "gw", Algorithm: dispatcher.LeastLoaded, Targets: targets(1)}}})
	assert.ErrorIs(t, err, dispatcher.ErrBadTarget, "least-loaded without Load")
}
