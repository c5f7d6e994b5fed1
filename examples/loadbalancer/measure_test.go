package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/asyncsip/asyncsip"
	"github.com/asyncsip/asyncsip/internal/sipp"
	"github.com/asyncsip/asyncsip/modules/dispatcher"
	"github.com/asyncsip/asyncsip/tm"
)

// cpuTime is the CPU (user + system) this process used so far: the
// balancer or relay under test runs in it, SIPp in other processes.
func cpuTime(t *testing.T) time.Duration {
	var ru syscall.Rusage
	require.NoError(t, syscall.Getrusage(syscall.RUSAGE_SELF, &ru))
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// CPU per call of the balancer next to a plain record-routing relay, in
// one run: SIPp places calls at a fixed rate for a fixed time through (a)
// the balancer (least-loaded over two SIPp UASes, every call tracked with
// a limit and a maximum duration, probing every 2 s) and (b) a route that
// relays every call to one of those UASes (c.Relay, record-routed, ACK and
// BYE along the Route: what every stateful example does), alternating
// twice. The figure is the CPU this process used during the run divided by
// the calls. Not a test of anything: run it by hand,
//
//	ASYNCSIP_MEASURE=1 go test -run TestMeasureCPUPerCall -v ./examples/loadbalancer
//
// ASYNCSIP_MEASURE_RATE (calls/s, default 200) and ASYNCSIP_MEASURE_SECONDS
// (default 20) change the load.
func TestMeasureCPUPerCall(t *testing.T) {
	if os.Getenv("ASYNCSIP_MEASURE") == "" {
		t.Skip("a measurement: set ASYNCSIP_MEASURE=1 to run it")
	}
	sipp.Path(t)
	rate, secs := envInt("ASYNCSIP_MEASURE_RATE", 200), envInt("ASYNCSIP_MEASURE_SECONDS", 20)
	calls := rate * secs
	timeout := time.Duration(secs)*time.Second + time.Minute
	uasA := sipp.Start(t, sipp.Config{Scenario: "sipp/uas.xml", Args: []string{"-aa"}, Timeout: 5 * timeout})
	uasB := sipp.Start(t, sipp.Config{Scenario: "sipp/uas.xml", Args: []string{"-aa"}, Timeout: 5 * timeout})
	uriA, uriB := fmt.Sprintf("sip:127.0.0.1:%d", uasA.Port()), fmt.Sprintf("sip:127.0.0.1:%d", uasB.Port())

	run := func(name string, routes tm.Routes, start func(*asyncsip.Server) func()) time.Duration {
		srv, err := asyncsip.New(asyncsip.Config{Listen: []string{"udp:127.0.0.1:0"}, Workers: 2,
			ReadBuffer: 4 << 20, WriteBuffer: 4 << 20})
		require.NoError(t, err)
		srv.SetRoutes(routes)
		require.NoError(t, srv.Start())
		stop := start(srv)
		c0 := cpuTime(t)
		res := sipp.Run(t, sipp.Config{Scenario: "sipp/uac.xml", Remote: srv.Addrs()[0].String(), Service: "bob",
			Calls: calls, Rate: float64(rate), Timeout: timeout, Args: []string{"-l", strconv.Itoa(rate * 5)}})
		cpu := cpuTime(t) - c0
		stop()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		require.NoError(t, srv.Shutdown(ctx))
		require.Equal(t, calls, res.Successful, "%s: %s", name, res)
		per := cpu / time.Duration(calls)
		t.Logf("%-14s %d calls at %d/s in %v: CPU %v, %v per call", name, calls, rate, res.Elapsed.Round(time.Millisecond),
			cpu.Round(time.Millisecond), per.Round(time.Microsecond))
		return per
	}
	balancer := func() time.Duration {
		b, err := New(Config{Sets: mustSets(t, uriA, uriB), Limit: 10 * rate, MaxDuration: time.Hour,
			BranchTimeout: 2 * time.Second, Trusted: loopback, Logger: quiet})
		require.NoError(t, err)
		return run("load balancer", b.Routes(), func(srv *asyncsip.Server) func() {
			p, err := b.Dispatcher().Start(srv.Core(), srv.Group())
			require.NoError(t, err)
			return p.Stop
		})
	}
	relay := func() time.Duration {
		return run("plain relay", tm.Routes{Request: func(c *tm.Context) {
			if c.InDialog() {
				_ = c.Relay()
				return
			}
			_ = c.Relay(uriA)
		}}, func(*asyncsip.Server) func() { return func() {} })
	}
	var lb, pr []time.Duration
	for i := 0; i < 2; i++ {
		lb = append(lb, balancer())
		pr = append(pr, relay())
	}
	avg := func(ds []time.Duration) time.Duration { return (ds[0] + ds[1]) / 2 }
	t.Logf("CPU per call at %d calls/s: load balancer %v, plain relay %v, ratio %.2f",
		rate, avg(lb).Round(time.Microsecond), avg(pr).Round(time.Microsecond), float64(avg(lb))/float64(avg(pr)))
}

var (
	loopback = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
	quiet    = slog.New(slog.NewTextHandler(io.Discard, nil))
)

// mustSets is one least-loaded set "dst" over uris.
func mustSets(t *testing.T, uris ...string) []dispatcher.SetConfig {
	t.Helper()
	set := dispatcher.SetConfig{ID: "dst", Algorithm: dispatcher.LeastLoaded}
	for _, u := range uris {
		set.Targets = append(set.Targets, dispatcher.Target{URI: u})
	}
	return []dispatcher.SetConfig{set}
}
