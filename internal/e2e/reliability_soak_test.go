package e2e

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/asyncsip/asyncsip"
	"github.com/asyncsip/asyncsip/async"
	"github.com/asyncsip/asyncsip/internal/sipp"
	"github.com/asyncsip/asyncsip/internal/testenv"
	"github.com/asyncsip/asyncsip/tm"
)

// TestReliabilitySoak runs mixed traffic at a steady rate through the real
// server for SOAK_DURATION (default 10m) — `make soak`, not `make test`:
// it runs only with ASYNCSIP_SOAK=1. The mix, each stream its own SIPp:
//
//	calls    20/s  INVITE → await 10 ms → relay → 200, ACK, BYE
//	failures  5/s  INVITE → 486 → failure route forks serially → 200
//	cancels   5/s  INVITE → 180 → CANCEL → 487
//	awaits    5/s  INVITE → await that times out → 503 Retry-After
//	timeouts  2/s  INVITE → UAS that never answers → Timer B → 408
//
// Every call must end as its scenario expects. Afterwards transactions,
// suspensions, goroutines, descriptors and the heap must come back to
// where they were before the traffic.
func TestReliabilitySoak(t *testing.T) {
	if os.Getenv("ASYNCSIP_SOAK") != "1" {
		t.Skip("soak test: run with make soak (ASYNCSIP_SOAK=1, SOAK_DURATION=10m)")
	}
	dur := 10 * time.Minute
	if s := os.Getenv("SOAK_DURATION"); s != "" {
		d, err := time.ParseDuration(s)
		require.NoError(t, err, "SOAK_DURATION")
		dur = d
	}
	sipp.Path(t)
	timers := tm.Timers{T1: 50 * time.Millisecond, T2: 400 * time.Millisecond, T4: 500 * time.Millisecond}
	margin := 2 * time.Minute
	g0, f0 := runtime.NumGoroutine(), testenv.CountFDs()
	uasRR, rrPort := startUAS(t, sipp.UAS, dur+margin, nil)
	uasFork, forkPort := startUAS(t, sipp.UAS, dur+margin, nil)
	uasBusy, busyPort := startUAS(t, "uas_busy.xml", dur+margin, nil)
	uasCancel, cancelPort := startUAS(t, "uas_cancel.xml", dur+margin, nil)
	uasSilent, silentPort := startUAS(t, "uas_silent.xml", dur+margin, nil)
	// What the five SIPp UAS processes hold in this process (the goroutines
	// and pipes of their exec.Cmd): gone once they are stopped.
	uasG, uasF := runtime.NumGoroutine()-g0, testenv.CountFDs()-f0

	p := startProxy(t, asyncsip.Config{Workers: 2, Core: tm.Config{Timers: timers}}, tm.Routes{
		Request: func(c *tm.Context) {
			if c.LooseRouted() {
				_ = c.Relay()
				return
			}
			switch c.Recipient().User {
			case "bob":
				async.Await(c, async.Sleep(10*time.Millisecond), func(struct{}, error) {
					_ = c.Relay(uri("bob", rrPort))
				}, async.Timeout(time.Second))
			case "busy":
				_ = c.Relay(uri("bob", busyPort))
			case "cancel":
				_ = c.Relay(uri("bob", cancelPort))
			case "silent":
				_ = c.Relay(uri("bob", silentPort))
			case "await":
				async.Await(c, async.Sleep(2*time.Second), func(_ struct{}, err error) {
					if errors.Is(err, async.ErrTimeout) {
						_ = c.Reply(503, "Service Unavailable", retryAfter("5"))
						return
					}
					_ = c.Reply(500, "Server Internal Error")
				}, async.Timeout(100*time.Millisecond))
			default:
				_ = c.Reply(404, "Not Found")
			}
		},
		Failure: func(c *tm.Context) {
			if c.Resp.StatusCode == 486 && len(c.Branches()) == 1 {
				_ = c.Relay(uri("bob", forkPort))
			}
		},
	})
	base := soakSample(p)
	base.goroutines -= uasG
	base.fds -= uasF
	t.Logf("baseline (proxy only): %s", base)

	streams := []struct {
		name, scenario, user string
		rate                 float64
	}{
		{"calls", sipp.UAC, "bob", 20},
		{"failures", sipp.UAC, "busy", 5},
		{"cancels", "uac_cancel.xml", "cancel", 5},
		{"awaits", "uac_503.xml", "await", 5},
		{"timeouts", "uac_408.xml", "silent", 2},
	}
	results := make([]sipp.Result, len(streams))
	var wg sync.WaitGroup
	for i, s := range streams {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = sipp.Run(t, sipp.Config{Scenario: scenario(s.scenario), Remote: p.addr, Service: s.user,
				Calls: int(s.rate * dur.Seconds()), Rate: s.rate, Timeout: dur + margin})
		}()
	}
	stop := make(chan struct{})
	var peak soakFigures
	var swg sync.WaitGroup
	swg.Add(1)
	go func() {
		defer swg.Done()
		tick := time.NewTicker(min(30*time.Second, dur/4))
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				s := soakSample(p)
				peak = peak.max(s)
				t.Logf("during: %s", s)
			}
		}
	}()
	wg.Wait()
	close(stop)
	swg.Wait()

	total := 0
	for i, s := range streams {
		calls := int(s.rate * dur.Seconds())
		requireAllOK(t, results[i], calls)
		total += calls
		t.Logf("%-8s %5d calls at %v/s: %s", s.name, calls, s.rate, results[i].String())
	}
	requireUASOK(t, uasRR, int(streams[0].rate*dur.Seconds()))
	requireUASOK(t, uasFork, int(streams[1].rate*dur.Seconds()))
	requireUASOK(t, uasBusy, int(streams[1].rate*dur.Seconds()))
	requireUASOK(t, uasCancel, int(streams[2].rate*dur.Seconds()))
	uasSilent.Stop()

	// Back to the baseline: every transaction ended (Timer J, L, ... are
	// 64*T1 = 3.2 s here), the pools' idle workers gone.
	// (Polled here rather than with assert.Eventually, whose own goroutine
	// would be counted.)
	var end soakFigures
	ok := false
	for deadline := time.Now().Add(30 * time.Second); !ok && time.Now().Before(deadline); {
		end = soakSample(p)
		ok = end.serverTx == 0 && end.clientTx == 0 && end.inProgress == 0 && end.suspended == 0 &&
			end.goroutines <= base.goroutines && end.fds <= base.fds
		if !ok {
			time.Sleep(100 * time.Millisecond)
		}
	}
	t.Logf("%d calls in %v; peak %s", total, dur, peak)
	t.Logf("after: %s (baseline %s)", end, base)
	if !ok {
		buf := make([]byte, 1<<20)
		t.Logf("goroutines:\n%s", buf[:runtime.Stack(buf, true)])
	}
	require.True(t, ok, "not back to the baseline: %s, baseline %s", end, base)
	assert.LessOrEqual(t, end.heapMiB, base.heapMiB+8, "heap back near the baseline")
	st := p.srv.Stats()
	assert.Zero(t, st.Panics)
	assert.Zero(t, st.Abandoned)
}

type soakFigures struct {
	goroutines, fds       int
	serverTx, clientTx    int
	inProgress, suspended int64
	heapMiB               float64
}

func (f soakFigures) String() string {
	return fmt.Sprintf("goroutines %d, fds %d, server tx %d, client tx %d, in progress %d, suspended %d, heap %.1f MiB",
		f.goroutines, f.fds, f.serverTx, f.clientTx, f.inProgress, f.suspended, f.heapMiB)
}

func (f soakFigures) max(o soakFigures) soakFigures {
	return soakFigures{goroutines: max(f.goroutines, o.goroutines), fds: max(f.fds, o.fds),
		serverTx: max(f.serverTx, o.serverTx), clientTx: max(f.clientTx, o.clientTx),
		inProgress: max(f.inProgress, o.inProgress), suspended: max(f.suspended, o.suspended),
		heapMiB: max(f.heapMiB, o.heapMiB)}
}

// soakSample reads the figures of p now (transaction tables summed over the
// loops, read on each loop).
func soakSample(p *proxy) soakFigures {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	f := soakFigures{goroutines: runtime.NumGoroutine(), fds: testenv.CountFDs(), heapMiB: float64(ms.HeapAlloc) / (1 << 20)}
	st := p.srv.Stats()
	f.inProgress, f.suspended = st.InProgress, st.Suspended
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, l := range p.srv.Group().Loops() {
		wg.Add(1)
		if err := l.Post(func() {
			defer wg.Done()
			s, c := p.srv.Core().Tables(l)
			mu.Lock()
			f.serverTx += s
			f.clientTx += c
			mu.Unlock()
		}); err != nil {
			wg.Done()
		}
	}
	wg.Wait()
	return f
}
