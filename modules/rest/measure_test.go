package rest_test

// Measurement, not a test: run with
//
//	ASYNCSIP_MEASURE=1 go test -run TestMeasureLookupRate -v -timeout 30m ./modules/rest
//
// (ASYNCSIP_MEASURE_MODES=relay,async,blocking picks the runs; the default
// is async,blocking; relay is the ceiling: the same calls relayed with no
// lookup.) It finds, for a proxy with 4 workers whose request route looks the
// target up over HTTP (a server in a separate process answering after
// 20 ms) and relays, the highest SIPp call rate with no failed call: once
// with the lookup awaited through this package, once with http.Get done
// blocking inside the route.

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/asyncsip/asyncsip"
	"github.com/asyncsip/asyncsip/async"
	"github.com/asyncsip/asyncsip/internal/sipp"
	"github.com/asyncsip/asyncsip/internal/testenv"
	"github.com/asyncsip/asyncsip/modules/rest"
	"github.com/asyncsip/asyncsip/tm"
)

// delayServerEnv makes the test binary serve HTTP instead of running tests
// (see TestMain): its value is "delay target", e.g. "20ms 127.0.0.1:5090".
const delayServerEnv = "ASYNCSIP_REST_DELAY_SERVER"

// serveDelay is the child process: an HTTP server on 127.0.0.1 answering
// GET /target with the target after the delay. It prints its address and
// serves until its stdin is closed (the parent ended), at most 30 minutes.
func serveDelay(spec string) int {
	delay, target, ok := strings.Cut(spec, " ")
	d, err := time.ParseDuration(delay)
	if !ok || err != nil {
		fmt.Fprintf(os.Stderr, "%s: want \"delay target\", got %q\n", delayServerEnv, spec)
		return 2
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Printf("ADDR %s\n", ln.Addr())
	go func() {
		io.Copy(io.Discard, os.Stdin)
		ln.Close()
	}()
	go func() {
		time.Sleep(30 * time.Minute)
		ln.Close()
	}()
	_ = http.Serve(ln, targetHandler(target, d, nil))
	return 0
}

// startDelayServer runs serveDelay in a child process and returns its
// base URL; the child ends with the test.
func startDelayServer(t *testing.T, delay time.Duration, target string) string {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), delayServerEnv+"="+delay.String()+" "+target)
	stdin, err := cmd.StdinPipe()
	require.NoError(t, err)
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	cmd.Stderr = os.Stderr
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		stdin.Close()
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	require.NoError(t, err)
	addr, ok := strings.CutPrefix(strings.TrimSpace(line), "ADDR ")
	require.True(t, ok, "child said %q", line)
	return "http://" + addr
}

// step is one SIPp run at a fixed rate.
type step struct {
	rate, calls, ok, failed int
	elapsed, cpu            time.Duration
	load                    string // 1-minute load average at the end
	pass                    bool
}

func (s step) String() string {
	verdict := "ok"
	if !s.pass {
		verdict = "FAIL"
	}
	return fmt.Sprintf("rate %5d/s: %6d calls, %6d ok, %4d failed, %6.1fs, proxy CPU %4.0f µs/call, load %s  %s",
		s.rate, s.calls, s.ok, s.failed, s.elapsed.Seconds(), float64(s.cpu.Microseconds())/float64(max(s.ok, 1)),
		s.load, verdict)
}

// loadAverage returns the 1-minute load average: the machine is shared, and
// a figure measured under load says so.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return "?"
	}
	return f[0]
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// runStep sends rate calls/s for seconds through the proxy at remote and
// judges the run: every call successful, and SIPp kept the pace.
func runStep(t *testing.T, srv *asyncsip.Server, rate int, seconds float64) step {
	calls := int(float64(rate) * seconds)
	cpu0 := cpuTime()
	res := sipp.Run(t, sipp.Config{Scenario: sipp.UAC, Remote: srv.Addrs()[0].String(),
		Service: "bob", Calls: calls, Rate: float64(rate), Timeout: time.Duration(seconds*3+30) * time.Second,
		Args: []string{"-recv_timeout", "5000"}})
	s := step{rate: rate, calls: calls, ok: res.Successful, failed: res.Failed, elapsed: res.Elapsed,
		cpu: cpuTime() - cpu0, load: loadAverage()}
	paced := res.Elapsed <= time.Duration(seconds*1.25*float64(time.Second))+2*time.Second
	s.pass = res.ExitCode == 0 && res.Failed == 0 && res.Successful == calls && paced
	if !s.pass {
		t.Logf("rate %d: exit %d, elapsed %v; SIPp errors:\n%s", rate, res.ExitCode, res.Elapsed, failures(res.Errors, 6))
	}
	// Let the transactions of this step end before the next one.
	deadline := time.Now().Add(30 * time.Second)
	for srv.Stats().InProgress > 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(time.Second)
	return s
}

// search doubles the rate from start until a step fails, then bisects
// between the last passing and the first failing rate. It returns the
// highest passing rate.
func search(t *testing.T, srv *asyncsip.Server, start int, seconds float64) int {
	best, bad := 0, 0
	for rate := start; bad == 0; rate *= 2 {
		s := runStep(t, srv, rate, seconds)
		t.Log(s)
		if s.pass {
			best = rate
		} else {
			bad = rate
		}
		if rate >= 64000 {
			break
		}
	}
	for bad-best > max(best/16, 10) {
		rate := (best + bad) / 2
		s := runStep(t, srv, rate, seconds)
		t.Log(s)
		if s.pass {
			best = rate
		} else {
			bad = rate
		}
	}
	return best
}

func TestMeasureLookupRate(t *testing.T) {
	if os.Getenv("ASYNCSIP_MEASURE") != "1" {
		t.Skip("a measurement, minutes long: set ASYNCSIP_MEASURE=1 to run it")
	}
	testenv.SIPp(t)
	const workers, delay, seconds = 4, 20 * time.Millisecond, 5.0
	uasPort := sipp.Start(t, sipp.Config{Scenario: sipp.UAS, Timeout: 30 * time.Minute}).Port()
	base := startDelayServer(t, delay, "127.0.0.1:"+strconv.Itoa(uasPort))
	t.Logf("HTTP lookup server %s (separate process) answers after %v; proxy: %d workers, GOMAXPROCS %d",
		base, delay, workers, runtimeProcs())

	results := map[string]int{}
	modes := os.Getenv("ASYNCSIP_MEASURE_MODES")
	if modes == "" {
		modes = "async,blocking"
	}
	want := func(mode string) bool { return strings.Contains(","+modes+",", ","+mode+",") }
	if want("relay") {
		// The ceiling: the same calls relayed with no lookup at all.
		t.Run("relay", func(t *testing.T) {
			srv := runProxy(t, workers, func(c *tm.Context) {
				if c.InDialog() {
					_ = c.Relay()
					return
				}
				_ = c.Relay("sip:" + c.Recipient().User + "@127.0.0.1:" + strconv.Itoa(uasPort))
			}, false)
			results["relay"] = search(t, srv, 400, seconds)
		})
	}
	if want("async") {
		t.Run("async", func(t *testing.T) {
			client := newClient(t, rest.Config{BaseURL: base, Timeout: 2 * time.Second})
			srv := runProxy(t, workers, lookupRoute(client), false)
			results["async"] = search(t, srv, 400, seconds)
			t.Logf("client: %+v", client.Stats())
		})
	}
	if want("blocking") {
		t.Run("blocking", func(t *testing.T) {
			hc := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 2 * workers}}
			defer hc.CloseIdleConnections()
			srv := runProxy(t, workers, blockingLookupRoute(hc, base), false)
			results["blocking"] = search(t, srv, 25, seconds)
		})
	}
	t.Logf("max calls/s with 0 failed: async REST lookup %d, blocking http.Get in the route %d (relay without lookup: %d)",
		results["async"], results["blocking"], results["relay"])
}

func runtimeProcs() int { return runtime.GOMAXPROCS(0) }

// failures returns up to n lines of a SIPp error log that say why a call
// failed, skipping the "Dead call" lines (late retransmissions answered
// after a call ended, which fail nothing).
func failures(log string, n int) string {
	var out []string
	for _, line := range strings.Split(log, "\n") {
		if strings.Contains(line, ": ") && strings.HasPrefix(line, "20") && !strings.Contains(line, "Dead call") {
			out = append(out, line)
			if len(out) == n {
				break
			}
		}
	}
	return strings.Join(out, "\n")
}

// TestMeasureClientCPU measures what a request costs this process in CPU
// time (user+system, from getrusage), the HTTP server being in another
// process: through the client (loop → pool → net/http → loop), and with
// net/http called directly from goroutines. 64 requests in flight.
func TestMeasureClientCPU(t *testing.T) {
	if os.Getenv("ASYNCSIP_MEASURE") != "1" {
		t.Skip("a measurement: set ASYNCSIP_MEASURE=1 to run it")
	}
	const n, inFlight = 20000, 64
	base := startDelayServer(t, 0, "127.0.0.1:5060")
	l := testenv.StartLoop(t)
	c := newClient(t, rest.Config{BaseURL: base})
	op := c.Get("/target?user=bob")

	measure := func(name string, run func()) {
		run() // warm up: connections, pool workers
		cpu0, t0 := cpuTime(), time.Now()
		run()
		cpu, wall := cpuTime()-cpu0, time.Since(t0)
		t.Logf("%-28s %6.1f µs CPU/request, %7.0f requests/s, load %s", name,
			float64(cpu.Nanoseconds())/1e3/n, n/wall.Seconds(), loadAverage())
	}
	measure("rest.Client (64 in flight)", func() {
		done := make(chan error, 1)
		left, pending := n, 0
		var next func()
		report := func(_ rest.Result, err error) {
			pending--
			if err != nil {
				done <- err
				return
			}
			next()
			if pending == 0 {
				done <- nil
			}
		}
		next = func() {
			if left > 0 {
				left--
				pending++
				async.Launch(l, op, report, async.Timeout(10*time.Second))
			}
		}
		l.Post(func() {
			for range inFlight {
				next()
			}
		})
		require.NoError(t, testenv.Wait(t, 15*time.Second, done, "requests"))
	})
	tr := &http.Transport{MaxIdleConnsPerHost: 256}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr}
	measure("net/http from goroutines", func() {
		var next atomic.Int64
		var wg sync.WaitGroup
		for range inFlight {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for next.Add(1) <= n {
					resp, err := hc.Get(base + "/target?user=bob")
					if err != nil {
						t.Error(err)
						return
					}
					io.ReadAll(resp.Body)
					resp.Body.Close()
				}
			}()
		}
		wg.Wait()
	})
}
