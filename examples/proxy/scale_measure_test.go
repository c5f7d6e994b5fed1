package main

// Figures for docs/SCALING.md (they only log):
//
//	ASYNCSIP_MEASURE=1 go test -run TestMeasureScale -v ./examples/proxy

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/asyncsip/asyncsip/internal/sipp"
	"github.com/asyncsip/asyncsip/internal/testenv"
)

func needMeasure(t *testing.T) {
	if os.Getenv("ASYNCSIP_MEASURE") != "1" {
		t.Skip("a measurement: set ASYNCSIP_MEASURE=1 to run it")
	}
}

// measureCalls registers bob at a SIPp UAS through procs[0], then runs one
// SIPp UAC per instance calling bob (trusted, so no challenge) and returns
// the calls that succeeded, the wall time and the CPU the instances used.
func measureCalls(t *testing.T, procs []*proxyProc, perProc int, rate float64) (ok, failed int, wall, cpu time.Duration) {
	t.Helper()
	uas := sipp.Start(t, sipp.Config{Scenario: sipp.UAS, Timeout: 5 * time.Minute})
	bob := newUA(t, "bob", procs[0].addr)
	require.Equal(t, 200, registerAt(t, bob, "bobpw", fmt.Sprintf("sip:bob@127.0.0.1:%d", uas.Port())).StatusCode)
	var before time.Duration
	for _, p := range procs {
		before += usageOf(t, p.cmd.Process.Pid).cpu
	}
	start := time.Now()
	var ps []*sipp.Process
	for _, p := range procs {
		ps = append(ps, sipp.Start(t, sipp.Config{Scenario: sipp.UAC, Remote: p.addr.String(), Service: "bob",
			Calls: perProc, Rate: rate, Limit: 200, Timeout: 5 * time.Minute}))
	}
	for _, p := range ps {
		r := p.Wait(5 * time.Minute)
		ok += r.Successful
		failed += r.Failed
	}
	wall = time.Since(start)
	for _, p := range procs {
		cpu += usageOf(t, p.cmd.Process.Pid).cpu
	}
	return ok, failed, wall, cpu - before
}

// CPU per call of one flagship instance with its bindings in SQLite and in
// Redis, and calls/s of three instances sharing Redis against one.
func TestMeasureScale(t *testing.T) {
	needMeasure(t)
	testenv.SIPp(t)
	const calls, rate = 3000, 600
	for _, loc := range []string{"sqlite", "redis"} {
		t.Run("cpu-per-call-"+loc, func(t *testing.T) {
			c := newCluster(t, func(d string) { cli(t, "-data", d, "user", "add", "bob", "bobpw") })
			flags := []string{"-trusted", "127.0.0.1", "-rate", "0"}
			var p *proxyProc
			if loc == "redis" {
				p = c.start(t, "one", flags...)
			} else {
				p = startProxy(t, append([]string{"-db", filepath.Join(c.data, "proxy.db"), "-data", t.TempDir()}, flags...)...)
			}
			ok, _, wall, cpu := measureCalls(t, []*proxyProc{p}, calls, rate)
			t.Logf("location %s: %d/%d calls in %v, proxy CPU %v: %.0f µs per call", loc, ok, calls,
				wall.Round(time.Millisecond), cpu, float64(cpu.Microseconds())/float64(max(ok, 1)))
		})
	}
	// The same load offered in all, split over the instances: the CPU per
	// call says what sharing costs, calls/s what they carried (on a
	// machine with fewer cores than instances they compete for the same
	// cores).
	for _, offered := range []float64{600, 1200} {
		for _, n := range []int{1, 3} {
			t.Run(fmt.Sprintf("instances-%d-at-%.0f", n, offered), func(t *testing.T) {
				c := newCluster(t, func(d string) { cli(t, "-data", d, "user", "add", "bob", "bobpw") })
				var procs []*proxyProc
				for i := range n {
					procs = append(procs, c.start(t, fmt.Sprintf("i%d", i), "-trusted", "127.0.0.1", "-rate", "0", "-workers", "1"))
				}
				ok, failed, wall, cpu := measureCalls(t, procs, calls/n, offered/float64(n))
				t.Logf("%d instance(s) of 1 worker, %.0f calls/s offered: %d answered, %d failed in %v: %.0f calls/s, %.0f µs CPU per call",
					n, offered, ok, failed, wall.Round(time.Millisecond), float64(ok)/wall.Seconds(), float64(cpu.Microseconds())/float64(max(ok, 1)))
			})
		}
	}
}
