package rtpengine_test

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/asyncsip/asyncsip/async"
	"github.com/asyncsip/asyncsip/internal/testenv"
	"github.com/asyncsip/asyncsip/modules/rtpengine"
	"github.com/asyncsip/asyncsip/modules/rtpengine/rtpenginetest"
)

func TestParseInstances(t *testing.T) {
	t.Parallel()
	cases := []struct {
		in   string
		want []rtpengine.Instance
		bad  bool
	}{
		{in: "udp:127.0.0.1:2223", want: []rtpengine.Instance{{Addr: "udp:127.0.0.1:2223"}}},
		{in: "udp:127.0.0.1:2223=2, 127.0.0.1:2224", want: []rtpengine.Instance{{Addr: "udp:127.0.0.1:2223", Weight: 2}, {Addr: "127.0.0.1:2224"}}},
		{in: "udp:[::1]:2223=3", want: []rtpengine.Instance{{Addr: "udp:[::1]:2223", Weight: 3}}},
		{in: "", bad: true},
		{in: "udp:127.0.0.1:2223=0", bad: true},
		{in: "udp:127.0.0.1:2223=x", bad: true},
		{in: "udp:127.0.0.1", bad: true},
	}
	for _, tc := range cases {
		got, err := rtpengine.ParseInstances(tc.in)
		if tc.bad {
			if err == nil {
				t.Errorf("ParseInstances(%q) = %v, want an error", tc.in, got)
			}
			continue
		}
		if err != nil || fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("ParseInstances(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
	if _, err := rtpengine.New(rtpengine.Config{}); !errors.Is(err, rtpengine.ErrNoInstances) {
		t.Errorf("New without instances: %v", err)
	}
	many := make([]rtpengine.Instance, rtpengine.MaxInstances+1)
	for i := range many {
		many[i].Addr = fmt.Sprintf("127.0.0.1:%d", 2000+i)
	}
	if _, err := rtpengine.New(rtpengine.Config{Instances: many}); err == nil {
		t.Error("New accepted more than MaxInstances")
	}
}

func TestKindOf(t *testing.T) {
	t.Parallel()
	cases := map[error]rtpengine.Kind{
		nil:                   rtpengine.KindOK,
		&rtpengine.Error{}:    rtpengine.KindRefused,
		rtpengine.ErrTimeout:  rtpengine.KindTimeout,
		async.ErrTimeout:      rtpengine.KindTimeout,
		rtpengine.ErrBadReply: rtpengine.KindBadReply,
		errors.New("other"):   rtpengine.KindOther,
		fmt.Errorf("x: %w", &rtpengine.Error{Reason: "Unknown call-ID"}): rtpengine.KindRefused,
	}
	for err, want := range cases {
		if got := rtpengine.KindOf(err); got != want {
			t.Errorf("KindOf(%v) = %v, want %v", err, got, want)
		}
	}
}

// recorder is an Observer that records what it is told.
type recorder struct {
	mu     sync.Mutex
	tries  map[string]int // "command/kind"
	retx   int
	states []bool
}

func (r *recorder) CommandFinished(_, command string, kind rtpengine.Kind, _ time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.tries[command+"/"+kind.String()]++
}

func (r *recorder) Retransmitted(string, string) { r.mu.Lock(); r.retx++; r.mu.Unlock() }

func (r *recorder) InstanceState(_ string, up bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.states = append(r.states, up)
}

func TestObserver(t *testing.T) {
	t.Parallel()
	s := rtpenginetest.NewServer(t)
	g := newGroup(t, 1)
	rec := &recorder{tries: map[string]int{}}
	cfg := fast(s.Addr)
	cfg.Observer = rec
	c := newClient(t, cfg)
	l := g.Loop(0)
	if _, err := run(t, l, c.Offer(rtpengine.Call{CallID: "o", FromTag: "f"}, []byte(offerSDP), nil)); err != nil {
		t.Fatal(err)
	}
	s.Refuse("answer", "Unknown call-id")
	_, _ = run(t, l, c.Answer(rtpengine.Call{CallID: "o", FromTag: "f", ToTag: "t"}, []byte(offerSDP), nil))
	s.SetSilent(true)
	_, _ = run(t, l, c.Ping(0))
	s.SetSilent(false)
	if _, err := run(t, l, c.Ping(0)); err != nil {
		t.Fatal(err)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	want := map[string]int{"offer/ok": 1, "answer/refused": 1, "ping/timeout": 1, "ping/ok": 1}
	if fmt.Sprint(rec.tries) != fmt.Sprint(want) || rec.retx == 0 || fmt.Sprint(rec.states) != "[false true]" {
		t.Fatalf("observer saw tries %v (want %v), %d retransmissions, states %v", rec.tries, want, rec.retx, rec.states)
	}
}

func TestClientIPv6(t *testing.T) {
	t.Parallel()
	pc, err := net.ListenPacket("udp6", "[::1]:0")
	if err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	}
	defer pc.Close()
	go func() { // a minimal ng responder: pong to every ping
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			for i := range n {
				if buf[i] == ' ' {
					_, _ = pc.WriteTo(append(buf[:i:i], " d6:result4:ponge"...), from)
					break
				}
			}
		}
	}()
	g := newGroup(t, 1)
	c := newClient(t, fast("udp:"+pc.LocalAddr().String()))
	if _, err := run(t, g.Loop(0), c.Ping(0)); err != nil {
		t.Fatalf("ping over IPv6: %v", err)
	}
}

func TestClientCloseFailsCommandsInFlight(t *testing.T) {
	t.Parallel()
	s := rtpenginetest.NewServer(t)
	s.SetSilent(true)
	g := newGroup(t, 1)
	cfg := fast(s.Addr)
	cfg.Timeout, cfg.TryTimeout = 10*time.Second, 10*time.Second
	c, err := rtpengine.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	l := g.Loop(0)
	errc := make(chan error, 1)
	_ = l.Post(func() {
		async.Launch(l, c.Offer(rtpengine.Call{CallID: "cl", FromTag: "f"}, []byte(offerSDP), nil),
			func(_ *rtpengine.Response, err error) { errc <- err }, async.Timeout(20*time.Second))
	})
	testenv.Eventually(t, 10*time.Second, "offer sent", func() bool { return s.Received() > 0 })
	_ = c.Close()
	select {
	case err := <-errc:
		if !errors.Is(err, rtpengine.ErrClosed) {
			t.Fatalf("in flight at Close: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not end the command in flight")
	}
	if _, err := run(t, l, c.Ping(0)); !errors.Is(err, rtpengine.ErrClosed) {
		t.Fatalf("after Close: %v", err)
	}
}

func TestClientMaxInFlight(t *testing.T) {
	t.Parallel()
	s := rtpenginetest.NewServer(t)
	s.SetSilent(true)
	g := newGroup(t, 1)
	cfg := fast(s.Addr)
	cfg.MaxInFlight = 3
	cfg.Timeout, cfg.TryTimeout = 300*time.Millisecond, 300*time.Millisecond
	c := newClient(t, cfg)
	l := g.Loop(0)
	errs := make(chan error, 5)
	_ = l.Post(func() {
		for range 5 {
			async.Launch(l, c.Ping(0), func(_ time.Duration, err error) { errs <- err }, async.Timeout(5*time.Second))
		}
	})
	var overloaded, timedOut int
	for range 5 {
		err := testenv.Wait(t, 10*time.Second, errs, "ping outcome")
		switch {
		case errors.Is(err, async.ErrOverloaded):
			overloaded++
		case errors.Is(err, rtpengine.ErrTimeout):
			timedOut++
		default:
			t.Fatalf("unexpected outcome %v", err)
		}
	}
	st := c.Stats()
	if overloaded != 2 || timedOut != 3 || st.Overloaded != 2 || st.InFlight != 0 {
		t.Fatalf("%d overloaded, %d timed out; stats %+v", overloaded, timedOut, st)
	}
	s.SetSilent(false)
	if _, err := run(t, l, c.Ping(0)); err != nil {
		t.Fatalf("a ping after the others ended: %v", err)
	}
}

func TestAffinityExpires(t *testing.T) {
	t.Parallel()
	s := rtpenginetest.NewServer(t)
	g := newGroup(t, 1)
	cfg := fast(s.Addr)
	cfg.AffinityTTL = 50 * time.Millisecond
	c := newClient(t, cfg)
	if _, err := run(t, g.Loop(0), c.Offer(rtpengine.Call{CallID: "ttl", FromTag: "f"}, []byte(offerSDP), nil)); err != nil {
		t.Fatal(err)
	}
	if _, ok := c.InstanceOf("ttl"); !ok {
		t.Fatal("offer did not bind the call")
	}
	testenv.Eventually(t, 10*time.Second, "binding expired", func() bool { _, ok := c.InstanceOf("ttl"); return !ok })
	if st := c.Stats(); st.Calls != 0 {
		t.Fatalf("%d calls remembered after expiry", st.Calls)
	}
}

// TestInstanceBackAfterDisableFor: a down instance is back in the choice
// once DisableFor has passed, without health pings.
func TestInstanceBackAfterDisableFor(t *testing.T) {
	t.Parallel()
	s := rtpenginetest.NewServer(t)
	s.SetSilent(true)
	g := newGroup(t, 1)
	cfg := fast(s.Addr)
	cfg.DisableFor = 200 * time.Millisecond
	c := newClient(t, cfg)
	if _, err := run(t, g.Loop(0), c.Ping(0)); !errors.Is(err, rtpengine.ErrTimeout) {
		t.Fatalf("ping a silent instance: %v", err)
	}
	if c.Stats().Instances[0].Up {
		t.Fatal("instance up after a timeout")
	}
	testenv.Eventually(t, 10*time.Second, "instance back after DisableFor", func() bool { return c.Stats().Instances[0].Up })
	if _, err := run(t, g.Loop(0), c.Ping(0)); !errors.Is(err, rtpengine.ErrTimeout) {
		t.Fatalf("ping a silent instance: %v", err)
	}
	if st := c.Stats().Instances[0]; st.Up || st.Downs != 2 {
		t.Fatalf("after a second timeout: %+v, want down twice", st)
	}
	s.SetSilent(false)
	testenv.Eventually(t, 10*time.Second, "instance back after DisableFor", func() bool { return c.Stats().Instances[0].Up })
	if _, err := run(t, g.Loop(0), c.Offer(rtpengine.Call{CallID: "back", FromTag: "f"}, []byte(offerSDP), nil)); err != nil {
		t.Fatal(err)
	}
}
