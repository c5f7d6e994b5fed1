package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/asyncsip/asyncsip"
	"github.com/asyncsip/asyncsip/internal/sipp"
	"github.com/asyncsip/asyncsip/internal/testenv"
	"github.com/asyncsip/asyncsip/modules/dialog"
	"github.com/asyncsip/asyncsip/modules/dispatcher"
)

// startLB runs a balancer over uris on a real server on 127.0.0.1 with
// probing started; it stops at the end of the test.
func startLB(t *testing.T, cfg Config, uris ...string) (*Balancer, string) {
	t.Helper()
	set := dispatcher.SetConfig{ID: "dst", Algorithm: dispatcher.LeastLoaded}
	for _, u := range uris {
		set.Targets = append(set.Targets, dispatcher.Target{URI: u})
	}
	cfg.Sets = []dispatcher.SetConfig{set}
	cfg.Trusted = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	b, err := New(cfg)
	require.NoError(t, err)
	srv, err := asyncsip.New(asyncsip.Config{Listen: []string{"udp:127.0.0.1:0"}, Workers: 2, Logger: cfg.Logger})
	require.NoError(t, err)
	srv.SetRoutes(b.Routes())
	require.NoError(t, srv.Start())
	prober, err := b.Dispatcher().Start(srv.Core(), srv.Group())
	require.NoError(t, err)
	t.Cleanup(func() {
		prober.Stop()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		assert.NoError(t, srv.Shutdown(ctx))
	})
	return b, srv.Addrs()[0].String()
}

// SIPp calls at 20/s through the balancer to two SIPp UASes; one UAS is
// killed mid-run. Every call succeeds: those sent to the dead UAS before
// probing noticed fail over after the 1 s branch timeout; probing takes it
// out, and the calls after all go to the live UAS at once.
func TestSIPpKilledUASCallsKeepSucceeding(t *testing.T) {
	sipp.Path(t) // skips without SIPp (fails under CI=true)
	uasA := sipp.Start(t, sipp.Config{Scenario: "sipp/uas.xml", Args: []string{"-aa"}, Timeout: 90 * time.Second})
	uasB := sipp.Start(t, sipp.Config{Scenario: "sipp/uas.xml", Args: []string{"-aa"}, Timeout: 90 * time.Second})
	uriA, uriB := fmt.Sprintf("sip:127.0.0.1:%d", uasA.Port()), fmt.Sprintf("sip:127.0.0.1:%d", uasB.Port())
	b, proxy := startLB(t, Config{
		Limit: 50, BranchTimeout: time.Second,
		Probe: dispatcher.ProbeConfig{Interval: 300 * time.Millisecond, Timeout: 200 * time.Millisecond,
			FailAfter: 3, RecoverAfter: 2, FailureCodes: []int{5}},
	}, uriA, uriB)
	d := b.Dispatcher()
	require.True(t, testenv.Poll(5*time.Second, func() bool { return d.Stats().ProbesSent >= 4 }))

	const calls = 200 // 10 s at 20 calls/s
	uac := sipp.Start(t, sipp.Config{Scenario: "sipp/uac.xml", Remote: proxy, Service: "bob",
		Calls: calls, Rate: 20, Timeout: 60 * time.Second})

	// B had calls; then it is killed (it finishes the calls in progress).
	require.True(t, testenv.Poll(10*time.Second, func() bool { return selected(d, uriB) >= 20 }),
		"B gets calls: %+v", d.Targets())
	resB := uasB.Stop()
	require.Positive(t, resB.Successful)
	testenv.Eventually(t, 10*time.Second, "probing takes the dead UAS out", func() bool { return !d.Up(uriB) })
	b0 := selected(d, uriB)

	res := uac.Wait(60 * time.Second)
	assert.Equal(t, calls, res.Successful, "every call succeeds: %s", res)
	assert.Zero(t, res.Failed, "%s", res)
	assert.Equal(t, b0, selected(d, uriB), "no call tried on the dead UAS once it is out")
	assert.False(t, d.Up(uriB))
	resA := uasA.Stop()
	assert.Equal(t, calls-resB.Successful, resA.Successful, "the calls B did not end, A did: A %s\nB %s", resA, resB)
	assert.Equal(t, [2]int{0, 0}, [2]int{b.Tracker().Profile(Profile).Count(uriA), b.Tracker().Profile(Profile).Count(uriB)},
		"every count released")
	assert.Zero(t, b.Tracker().Active())
}

// Calls the caller never hangs up are ended by the balancer after
// -max-duration: a BYE to each SIPp side, both answered 200; both sides
// count a successful call, and every count is released.
func TestSIPpMaxDurationEndsCalls(t *testing.T) {
	sipp.Path(t) // skips without SIPp (fails under CI=true)
	uasA := sipp.Start(t, sipp.Config{Scenario: "sipp/uas.xml", Args: []string{"-aa"}, Timeout: 60 * time.Second})
	uasB := sipp.Start(t, sipp.Config{Scenario: "sipp/uas.xml", Args: []string{"-aa"}, Timeout: 60 * time.Second})
	uriA, uriB := fmt.Sprintf("sip:127.0.0.1:%d", uasA.Port()), fmt.Sprintf("sip:127.0.0.1:%d", uasB.Port())
	b, proxy := startLB(t, Config{MaxDuration: time.Second, BranchTimeout: 2 * time.Second}, uriA, uriB)

	const calls = 6
	res := sipp.Run(t, sipp.Config{Scenario: "sipp/uac_held.xml", Remote: proxy, Service: "bob",
		Calls: calls, Rate: 10, Timeout: 30 * time.Second})
	require.Equal(t, calls, res.Successful, "every caller got the balancer's BYE: %s", res)
	testenv.Eventually(t, 5*time.Second, "both BYEs of every call answered", func() bool {
		return b.Tracker().Stats().ByeSent == 2*calls && b.Tracker().Active() == 0
	})
	st := b.Tracker().Stats()
	assert.Zero(t, st.ByeFailed, "the proxy sees a 200 for every BYE")
	assert.Equal(t, uint64(calls), st.ByReason[dialog.Timeout])
	ra, rb := uasA.Stop(), uasB.Stop()
	assert.Equal(t, calls, ra.Successful+rb.Successful, "every callee got its BYE: A %s\nB %s", ra, rb)
	assert.Zero(t, ra.Failed+rb.Failed)
	assert.Equal(t, [2]int{0, 0}, [2]int{b.Tracker().Profile(Profile).Count(uriA), b.Tracker().Profile(Profile).Count(uriB)})
}

func selected(d *dispatcher.Dispatcher, uri string) uint64 {
	for _, t := range d.Targets() {
		if t.URI == uri {
			return t.Selected
		}
	}
	return 0
}
