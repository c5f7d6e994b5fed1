package e2e

import (
	"context"
	"fmt"
	"github.com/asyncsip/asyncsip/internal/testenv"
	"os"
	"regexp"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asyncsip/asyncsip"
	"github.com/asyncsip/asyncsip/internal/sipp"
	"github.com/asyncsip/asyncsip/tm"
)

// TestMeasureMaxCallRate finds, step by step, the highest call rate at
// which every SIPp call through the proxy succeeds (the record-routed
// INVITE/180/200/ACK/BYE/200 call of TestInteropCallRecordRoute). It is a
// measurement, not a test of correctness, and runs only with
// ASYNCSIP_MEASURE=1:
//
//	ASYNCSIP_MEASURE=1 go test -run TestMeasureMaxCallRate -v -timeout 30m .
//
// Proxies measured: plain relay on 2 workers; Await(Sleep(20ms)) then relay
// on 4 workers; time.Sleep(20ms) (blocking the worker) then relay on 4
// workers, whose ceiling is 4/20ms = 200 INVITEs/s. SIPp UAC and UAS run on
// the same machine and share its CPUs with the proxy. Each step lasts
// ASYNCSIP_MEASURE_STEP (default 6s); the search stops at the first step
// with a failed call, or whose calls took more than 1.1× the step + 1 s to
// complete (SIPp, or the proxy, could not hold the rate).
func TestMeasureMaxCallRate(t *testing.T) {
	if os.Getenv("ASYNCSIP_MEASURE") != "1" {
		t.Skip("measurement: set ASYNCSIP_MEASURE=1 to run")
	}
	step := 6 * time.Second
	if d, err := time.ParseDuration(os.Getenv("ASYNCSIP_MEASURE_STEP")); err == nil && d > 0 {
		step = d
	}
	blocking := func(target string) func(c *tm.Context) {
		return func(c *tm.Context) {
			if c.LooseRouted() || c.Method() != "INVITE" {
				_ = c.Relay()
				return
			}
			time.Sleep(20 * time.Millisecond) // what a blocking lookup does to a worker
			_ = c.Relay(target)
		}
	}
	var resumed, peak atomic.Int64
	var summary []string
	for _, tc := range []struct {
		name    string
		workers int
		route   func(target string) func(c *tm.Context)
		rates   []int
	}{
		{"relay", 2, relayTo, []int{200, 400, 800, 1200, 1600, 2000, 2400, 2800, 3200, 4000}},
		{"await Sleep(20ms)", 4, func(target string) func(c *tm.Context) {
			return awaitRoute(target, 20*time.Millisecond, &resumed, &peak)
		}, []int{100, 200, 400, 800, 1200, 1600, 2000, 2400, 2800, 3200}},
		{"blocking time.Sleep(20ms)", 4, blocking, []int{50, 100, 125, 150, 175, 200, 250}},
	} {
		t.Run(strings.Fields(tc.name)[0], func(t *testing.T) {
			uas, uasPort := startUAS(t, sipp.UAS, time.Hour, nil)
			p := startProxy(t, asyncsip.Config{Workers: tc.workers, ReadBuffer: 8 << 20, WriteBuffer: 8 << 20},
				tm.Routes{Request: tc.route(uri("bob", uasPort))})
			best := 0
			for _, rate := range tc.rates {
				calls := rate * int(step/time.Second)
				res := runUAC(t, sipp.Config{Scenario: sipp.UAC, Remote: p.addr, Service: "bob",
					Calls: calls, Rate: float64(rate), Timeout: step + 60*time.Second})
				ok := res.ExitCode == 0 && res.Failed == 0 && res.Successful == calls &&
					res.Elapsed < step*11/10+time.Second
				t.Logf("%s, %d workers: %5d calls/s × %v: successful %d, failed %d, took %v, exit %d",
					tc.name, tc.workers, rate, step, res.Successful, res.Failed,
					res.Elapsed.Round(10*time.Millisecond), res.ExitCode)
				if !ok {
					t.Logf("UAC's SIPp errors:\n%s\nproxy: %+v", errorSummary(res.Errors), p.srv.Stats())
					break
				}
				best = rate
				// Let the last calls' transactions end before the next step.
				testenv.Poll(5*time.Second, func() bool { return p.srv.Stats().InProgress == 0 })
			}
			// A failed step can leave transactions waiting for their timers:
			// drain for longer than the tests do, and only report a late one.
			ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
			if err := p.srv.Shutdown(ctx); err != nil {
				t.Logf("shutdown after the last step: %v (%+v)", err, p.srv.Stats())
			}
			cancel()
			if ur := uas.Stop(); ur.Failed > 0 {
				t.Logf("UAS: %d calls failed; SIPp errors:\n%s", ur.Failed, errorSummary(ur.Errors))
			}
			line := fmt.Sprintf("%-26s %d workers: max %d calls/s with 0 failed", tc.name, tc.workers, best)
			summary = append(summary, line)
			t.Log(line)
		})
	}
	t.Logf("summary (step %v):\n%s", step, strings.Join(summary, "\n"))
}

var sippAbort = regexp.MustCompile(`Aborting call on (an unexpected [A-Z]+) for call|` +
	`Aborting call on ([^']*?) for Call-I[dD] '[^']*'(?:: (while [^(]*)\([^)]*\), received '([^\r\n']*))?`)

// errorSummary counts the reasons in SIPp's error log: why calls were
// aborted (and on which message), plus late or stray messages.
func errorSummary(log string) string {
	counts := map[string]int{}
	for _, m := range sippAbort.FindAllStringSubmatch(log, -1) {
		counts[strings.Join(strings.Fields(strings.Join(m[1:], " ")), " ")]++
	}
	counts["dead call got a message"] = strings.Count(log, "Dead call")
	counts["message for no known call"] = strings.Count(log, "can't be mapped to a known SIPp call")
	var lines []string
	for k, n := range counts {
		if n > 0 {
			lines = append(lines, fmt.Sprintf("%6d  %s", n, k))
		}
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}
