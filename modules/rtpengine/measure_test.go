package rtpengine_test

// Measurements, run by hand (they only log):
//
//	ASYNCSIP_MEASURE=1 go test -run TestMeasure -v ./modules/rtpengine

import (
	"fmt"
	"net"
	"os"
	"runtime"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asyncsip/asyncsip/async"
	"github.com/asyncsip/asyncsip/internal/testenv"
	"github.com/asyncsip/asyncsip/modules/rtpengine"
	"github.com/asyncsip/asyncsip/modules/rtpengine/rtpenginetest"
	"github.com/asyncsip/asyncsip/reactor"
)

func measuring(t *testing.T) {
	if os.Getenv("ASYNCSIP_MEASURE") != "1" {
		t.Skip("a measurement: set ASYNCSIP_MEASURE=1 to run it")
	}
}

func percentiles(d []time.Duration) (p50, p99 time.Duration) {
	slices.Sort(d)
	return d[len(d)/2], d[len(d)*99/100]
}

// TestMeasureRoundTrip: an ng ping through the async op (started on the
// loop, completed by the loop's fd watcher) against the same exchange on a
// blocking UDP socket, sequentially, against a real rtpengine.
func TestMeasureRoundTrip(t *testing.T) {
	measuring(t)
	p := testenv.StartRTPEngine(t)
	g := newGroup(t, 1)
	c := newClient(t, rtpengine.Config{Instances: []rtpengine.Instance{{Addr: p.Addr}}})
	const n = 5000
	l := g.Loop(0)
	lat := make([]time.Duration, 0, n)
	done := make(chan struct{})
	var next func()
	next = func() {
		if len(lat) == n {
			close(done)
			return
		}
		start := time.Now()
		async.Launch(l, c.Ping(0), func(_ time.Duration, err error) {
			if err != nil {
				t.Error(err)
			}
			lat = append(lat, time.Since(start))
			next()
		}, async.Timeout(5*time.Second))
	}
	_ = l.Post(next)
	testenv.Wait(t, 60*time.Second, done, "pings")
	a50, a99 := percentiles(lat)

	conn, err := net.Dial("udp", p.NG)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	buf := make([]byte, 512)
	blat := make([]time.Duration, 0, n)
	for i := range n {
		msg := fmt.Sprintf("blk%d d7:command4:pinge", i)
		start := time.Now()
		_, _ = conn.Write([]byte(msg))
		_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := conn.Read(buf); err != nil {
			t.Fatal(err)
		}
		blat = append(blat, time.Since(start))
	}
	b50, b99 := percentiles(blat)
	t.Logf("ng ping round trip, %d sequential, rtpengine %s on 127.0.0.1:", n, p.NG)
	t.Logf("  async op on the loop: p50 %v  p99 %v", a50, a99)
	t.Logf("  blocking UDP socket:  p50 %v  p99 %v", b50, b99)
}

// TestMeasureCallRate: calls per second with offer + answer + delete per
// call, on one loop with GOMAXPROCS=1 (one core for the proxy side), 64
// calls in flight, against a real rtpengine; failures are counted.
func TestMeasureCallRate(t *testing.T) {
	measuring(t)
	p := testenv.StartRTPEngine(t)
	prev := runtime.GOMAXPROCS(1)
	defer runtime.GOMAXPROCS(prev)
	g := newGroup(t, 1)
	c := newClient(t, rtpengine.Config{Instances: []rtpengine.Instance{{Addr: p.Addr}}})
	offer, answer := readSDP(t, "audio.sdp"), readSDP(t, "answer.sdp")
	const total, inFlight = 4000, 64
	l := g.Loop(0)
	var started, finished, failed atomic.Int64
	done := make(chan struct{})
	var call func()
	call = func() {
		i := started.Add(1)
		if i > total {
			return
		}
		id := fmt.Sprintf("rate-%d", i)
		end := func(err error) {
			if err != nil {
				failed.Add(1)
			}
			if finished.Add(1) == total {
				close(done)
				return
			}
			call()
		}
		async.Launch(l, c.Offer(rtpengine.Call{CallID: id, FromTag: "a"}, offer, nil), func(_ *rtpengine.Response, err error) {
			if err != nil {
				end(err)
				return
			}
			async.Launch(l, c.Answer(rtpengine.Call{CallID: id, FromTag: "a", ToTag: "b"}, answer, nil), func(_ *rtpengine.Response, err error) {
				if err != nil {
					end(err)
					return
				}
				async.Launch(l, c.Delete(rtpengine.Call{CallID: id}, nil), func(_ *rtpengine.Response, err error) { end(err) }, async.Timeout(10*time.Second))
			}, async.Timeout(10*time.Second))
		}, async.Timeout(10*time.Second))
	}
	start := time.Now()
	_ = l.Post(func() {
		for range inFlight {
			call()
		}
	})
	testenv.Wait(t, 5*time.Minute, done, "calls")
	el := time.Since(start)
	st := c.Stats().Instances[0]
	t.Logf("%d calls (offer+answer+delete), %d in flight, one loop, GOMAXPROCS=1: %v, %.0f calls/s, %d failed, %d retransmissions",
		total, inFlight, el.Round(time.Millisecond), float64(total)/el.Seconds(), failed.Load(), st.Retransmits)
}

// TestMeasureGoroutinesPerCommand: goroutines added by commands in flight
// (a silent fake server keeps them in flight).
func TestMeasureGoroutinesPerCommand(t *testing.T) {
	measuring(t)
	s := rtpenginetest.NewServer(t)
	s.SetSilent(true)
	g := newGroup(t, 2)
	cfg := fast(s.Addr)
	cfg.Timeout, cfg.TryTimeout = 10*time.Second, 10*time.Second
	c := newClient(t, cfg)
	launch := func(l *reactor.Loop, n int) {
		_ = l.Post(func() {
			for i := range n {
				async.Launch(l, c.Query(rtpengine.Call{CallID: fmt.Sprint(i)}), func(*rtpengine.QueryResult, error) {}, async.Timeout(20*time.Second))
			}
		})
	}
	launch(g.Loop(0), 1)
	launch(g.Loop(1), 1)
	testenv.Eventually(t, 10*time.Second, "sockets open", func() bool { return s.Received() >= 2 })
	before := runtime.NumGoroutine()
	launch(g.Loop(0), 5000)
	launch(g.Loop(1), 5000)
	testenv.Eventually(t, 30*time.Second, "10000 commands sent", func() bool { return s.Received() >= 10002 })
	t.Logf("goroutines: %d before, %d with 10000 commands in flight: %.4f per command",
		before, runtime.NumGoroutine(), float64(runtime.NumGoroutine()-before)/10000)
}
