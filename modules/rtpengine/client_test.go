package rtpengine_test

import (
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asyncsip/asyncsip/async"
	"github.com/asyncsip/asyncsip/internal/testenv"
	"github.com/asyncsip/asyncsip/modules/rtpengine"
	"github.com/asyncsip/asyncsip/modules/rtpengine/rtpenginetest"
)

const offerSDP = "v=0\r\no=- 1 1 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\nm=audio 49170 RTP/AVP 0\r\n"

// fast are client timings for tests against the fake server: short, but
// long enough for a loaded machine to answer over loopback.
func fast(addrs ...string) rtpengine.Config {
	cfg := rtpengine.Config{Timeout: 3 * time.Second, TryTimeout: time.Second, Retransmit: 50 * time.Millisecond}
	for _, a := range addrs {
		cfg.Instances = append(cfg.Instances, rtpengine.Instance{Addr: a})
	}
	return cfg
}

func TestClientCommandsAgainstFakeServer(t *testing.T) {
	t.Parallel()
	s := rtpenginetest.NewServer(t)
	g := newGroup(t, 1)
	c := newClient(t, fast(s.Addr))
	l := g.Loop(0)
	call := rtpengine.Call{CallID: "c1", FromTag: "f1"}
	flags := &rtpengine.Flags{ICE: rtpengine.ICERemove, TransportProtocol: rtpengine.RTPAVP, ReplaceOrigin: true,
		Direction: [2]string{"external", "internal"}, RecordCall: true, SDES: []string{"off"}, CodecStrip: []string{"PCMA"},
		Options: []string{"trust-address"}, Extra: map[string]any{"label": "caller"}}
	r, err := run(t, l, c.Offer(call, []byte(offerSDP), flags))
	if err != nil {
		t.Fatal(err)
	}
	if r.Result != "ok" || !strings.Contains(string(r.SDP), "c=IN IP4 127.0.0.1") || r.Instance == "" {
		t.Fatalf("offer response %+v, SDP %q", r, r.SDP)
	}
	d := s.Commands()[0].Dict
	for k, want := range map[string]string{
		"ICE": "remove", "transport-protocol": "RTP/AVP", "record call": "yes", "label": "caller", "from-tag": "f1", "call-id": "c1",
		"replace": "[origin]", "direction": "[external internal]", "SDES": "[off]", "codec": "map[strip:[PCMA]]", "flags": "[trust-address]",
	} {
		if got := fmt.Sprint(d[k]); got != want {
			t.Errorf("offer dict[%q] = %s, want %s", k, got, want)
		}
	}
	call.ToTag = "t1"
	if _, err := run(t, l, c.Answer(call, []byte(offerSDP), nil)); err != nil {
		t.Fatal(err)
	}
	q, err := run(t, l, c.Query(rtpengine.Call{CallID: "c1"}))
	if err != nil || len(q.Tags) != 2 || q.Created.IsZero() {
		t.Fatalf("query = %+v, %v", q, err)
	}
	if rtt, err := run(t, l, c.Ping(0)); err != nil || rtt <= 0 {
		t.Fatalf("ping = %v, %v", rtt, err)
	}
	if _, err := run(t, l, c.Delete(rtpengine.Call{CallID: "c1"}, nil)); err != nil {
		t.Fatal(err)
	}
	if _, ok := c.InstanceOf("c1"); ok {
		t.Fatal("a deleted call is still bound to an instance")
	}
	_, err = run(t, l, c.Delete(rtpengine.Call{CallID: "c1"}, nil))
	var re *rtpengine.Error
	if !errors.As(err, &re) || !errors.Is(err, rtpengine.ErrUnknownCall) || rtpengine.KindOf(err) != rtpengine.KindRefused {
		t.Fatalf("second delete: %v, want an *Error wrapping ErrUnknownCall", err)
	}
	st := c.Stats().Instances[0]
	if st.Requests != 6 || st.OK != 5 || st.Refused != 1 || !st.Up {
		t.Fatalf("stats %+v", st)
	}
}

func TestClientRetransmits(t *testing.T) {
	t.Parallel()
	s := rtpenginetest.NewServer(t)
	s.Ignore(2)
	g := newGroup(t, 1)
	c := newClient(t, fast(s.Addr))
	if _, err := run(t, g.Loop(0), c.Offer(rtpengine.Call{CallID: "rt", FromTag: "f"}, []byte(offerSDP), nil)); err != nil {
		t.Fatal(err)
	}
	st := c.Stats().Instances[0]
	if st.Retransmits < 2 || st.Requests != 1 || len(s.Commands()) != 1 {
		t.Fatalf("retransmits %d, tries %d, commands handled %d; want >= 2, 1, 1", st.Retransmits, st.Requests, len(s.Commands()))
	}
}

func TestClientTimeout(t *testing.T) {
	t.Parallel()
	s := rtpenginetest.NewServer(t)
	s.SetSilent(true)
	g := newGroup(t, 1)
	c := newClient(t, fast(s.Addr))
	_, err := run(t, g.Loop(0), c.Offer(rtpengine.Call{CallID: "to", FromTag: "f"}, []byte(offerSDP), nil))
	if !errors.Is(err, rtpengine.ErrTimeout) || !errors.Is(err, async.ErrTimeout) || rtpengine.KindOf(err) != rtpengine.KindTimeout {
		t.Fatalf("err = %v, want ErrTimeout", err)
	}
	st := c.Stats().Instances[0]
	if st.Up || st.Timeouts == 0 || st.Downs != 1 {
		t.Fatalf("stats after a timeout: %+v", st)
	}
}

func TestClientBadReply(t *testing.T) {
	t.Parallel()
	s := rtpenginetest.NewServer(t)
	s.Garbage(1)
	g := newGroup(t, 1)
	c := newClient(t, fast(s.Addr))
	_, err := run(t, g.Loop(0), c.Ping(0))
	if !errors.Is(err, rtpengine.ErrBadReply) {
		t.Fatalf("err = %v, want ErrBadReply", err)
	}
	if _, err := run(t, g.Loop(0), c.Ping(0)); err != nil {
		t.Fatalf("ping after a bad reply: %v", err)
	}
}

func TestClientRefusal(t *testing.T) {
	t.Parallel()
	s := rtpenginetest.NewServer(t)
	s.Refuse("offer", "Incomplete SDP specification")
	g := newGroup(t, 1)
	c := newClient(t, fast(s.Addr))
	_, err := run(t, g.Loop(0), c.Offer(rtpengine.Call{CallID: "x", FromTag: "f"}, []byte(offerSDP), nil))
	var re *rtpengine.Error
	if !errors.As(err, &re) || re.Reason != "Incomplete SDP specification" || re.Command != "offer" {
		t.Fatalf("err = %v, want rtpengine's refusal", err)
	}
	if _, ok := c.InstanceOf("x"); ok {
		t.Fatal("a refused offer bound the call")
	}
}

// TestClientAffinityAcrossLoops: the offer on one loop binds the call; the
// answer, query and delete made on other loops reach the same instance.
func TestClientAffinityAcrossLoops(t *testing.T) {
	t.Parallel()
	servers := []*rtpenginetest.Server{rtpenginetest.NewServer(t), rtpenginetest.NewServer(t), rtpenginetest.NewServer(t)}
	g := newGroup(t, 4)
	c := newClient(t, fast(servers[0].Addr, servers[1].Addr, servers[2].Addr))
	for i := range 30 {
		id := fmt.Sprintf("aff-%d", i)
		r, err := run(t, g.Loop(i%4), c.Offer(rtpengine.Call{CallID: id, FromTag: "f"}, []byte(offerSDP), nil))
		if err != nil {
			t.Fatal(err)
		}
		a, err := run(t, g.Loop((i+1)%4), c.Answer(rtpengine.Call{CallID: id, FromTag: "f", ToTag: "t"}, []byte(offerSDP), nil))
		if err != nil || a.Instance != r.Instance {
			t.Fatalf("answer on %v (%v), offer on %s", a, err, r.Instance)
		}
		q, err := run(t, g.Loop((i+2)%4), c.Query(rtpengine.Call{CallID: id}))
		if err != nil || q.Response.Instance != r.Instance {
			t.Fatalf("query: %v", err)
		}
		if _, err := run(t, g.Loop((i+3)%4), c.Delete(rtpengine.Call{CallID: id}, nil)); err != nil {
			t.Fatal(err)
		}
	}
	used := 0
	for _, s := range servers {
		if s.Live() != 0 {
			t.Fatalf("server %s still has %d calls", s.Addr, s.Live())
		}
		if len(s.Commands()) > 0 {
			used++
		}
	}
	if used < 2 {
		t.Fatalf("30 calls used %d of 3 instances", used)
	}
}

// TestClientFailover: offers of new calls avoid a silent instance after
// its first timeout; an offer for a call bound to it moves the call to
// another instance, and the call's later commands follow it there.
func TestClientFailover(t *testing.T) {
	t.Parallel()
	a, b := rtpenginetest.NewServer(t), rtpenginetest.NewServer(t)
	g := newGroup(t, 2)
	cfg := fast(a.Addr, b.Addr)
	cfg.DisableFor = time.Minute
	c := newClient(t, cfg)
	// Bind calls to both instances while both answer.
	var onA []string
	for i := 0; len(onA) < 3 && i < 200; i++ {
		id := fmt.Sprintf("fo-%d", i)
		r, err := run(t, g.Loop(i%2), c.Offer(rtpengine.Call{CallID: id, FromTag: "f"}, []byte(offerSDP), nil))
		if err != nil {
			t.Fatal(err)
		}
		if "udp:"+r.Instance == a.Addr {
			onA = append(onA, id)
		}
	}
	if len(onA) < 3 {
		t.Fatal("no calls landed on instance A")
	}
	a.SetSilent(true)
	// A re-offer of a call of A moves it to B, and it stays there.
	r, err := run(t, g.Loop(0), c.Offer(rtpengine.Call{CallID: onA[0], FromTag: "f"}, []byte(offerSDP), nil))
	if err != nil || "udp:"+r.Instance != b.Addr {
		t.Fatalf("re-offer after A died: %v, %v", r, err)
	}
	if inst, _ := c.InstanceOf(onA[0]); "udp:"+inst != b.Addr {
		t.Fatalf("call bound to %s after failover, want B", inst)
	}
	if _, err := run(t, g.Loop(1), c.Answer(rtpengine.Call{CallID: onA[0], FromTag: "f", ToTag: "t"}, []byte(offerSDP), nil)); err != nil {
		t.Fatalf("answer after failover: %v", err)
	}
	// A is down now: new calls go to B at once, without waiting for A.
	for i := range 10 {
		r, err := run(t, g.Loop(i%2), c.Offer(rtpengine.Call{CallID: fmt.Sprintf("new-%d", i), FromTag: "f"}, []byte(offerSDP), nil))
		if err != nil || "udp:"+r.Instance != b.Addr {
			t.Fatalf("new call after A died: %v, %v", r, err)
		}
	}
	// An answer for a call still on A is not moved: it times out.
	_, err = run(t, g.Loop(0), c.Answer(rtpengine.Call{CallID: onA[1], FromTag: "f", ToTag: "t"}, []byte(offerSDP), nil))
	if !errors.Is(err, rtpengine.ErrTimeout) {
		t.Fatalf("answer on dead A: %v, want a timeout", err)
	}
	st := c.Stats()
	if st.Instances[0].Up || st.Instances[0].Failovers != 1 || !st.Instances[1].Up {
		t.Fatalf("stats %+v", st.Instances)
	}
}

func TestClientHealthPings(t *testing.T) {
	t.Parallel()
	s := rtpenginetest.NewServer(t)
	s.SetSilent(true)
	g := newGroup(t, 2)
	cfg := fast(s.Addr)
	cfg.PingInterval = 100 * time.Millisecond
	cfg.TryTimeout = 200 * time.Millisecond
	cfg.DisableFor = time.Hour
	c := newClient(t, cfg)
	job, err := c.StartHealth(g)
	if err != nil {
		t.Fatal(err)
	}
	defer job.Stop()
	testenv.Eventually(t, 10*time.Second, "instance marked down by pings", func() bool { return !c.Stats().Instances[0].Up })
	s.SetSilent(false)
	testenv.Eventually(t, 10*time.Second, "instance back up after a ping", func() bool { return c.Stats().Instances[0].Up })
}

func TestClientWeights(t *testing.T) {
	t.Parallel()
	a, b := rtpenginetest.NewServer(t), rtpenginetest.NewServer(t)
	g := newGroup(t, 1)
	cfg := fast(a.Addr, b.Addr)
	cfg.Instances[0].Weight = 9
	c := newClient(t, cfg)
	const n = 500
	for i := range n {
		if _, err := run(t, g.Loop(0), c.Offer(rtpengine.Call{CallID: fmt.Sprintf("w-%d", i), FromTag: "f"}, []byte(offerSDP), nil)); err != nil {
			t.Fatal(err)
		}
	}
	// 9:1 of 500: A's expected share is 450 (sd 6.7); 400..490 is over 7 sd.
	if na := a.Live(); na < 400 || na > 490 {
		t.Fatalf("instance A (weight 9) got %d of %d calls", na, n)
	}
}

func TestClientAffinityBounded(t *testing.T) {
	t.Parallel()
	s := rtpenginetest.NewServer(t)
	g := newGroup(t, 1)
	cfg := fast(s.Addr)
	cfg.MaxCalls = 64 // one per shard
	c := newClient(t, cfg)
	for i := range 300 {
		if _, err := run(t, g.Loop(0), c.Offer(rtpengine.Call{CallID: fmt.Sprintf("b-%d", i), FromTag: "f"}, []byte(offerSDP), nil)); err != nil {
			t.Fatal(err)
		}
	}
	st := c.Stats()
	if st.Calls > 64 || st.Evicted < 300-64 {
		t.Fatalf("affinity holds %d calls, evicted %d; want <= 64 and >= %d", st.Calls, st.Evicted, 300-64)
	}
}

// TestClientNoGoroutinePerCommand: 300 commands in flight add no
// goroutine (the loop's fd watcher reads the replies).
func TestClientNoGoroutinePerCommand(t *testing.T) {
	s := rtpenginetest.NewServer(t)
	s.SetSilent(true)
	g := newGroup(t, 2)
	cfg := fast(s.Addr)
	cfg.Timeout, cfg.TryTimeout = 5*time.Second, 5*time.Second
	c := newClient(t, cfg)
	var finished atomic.Int64
	start := func(n int) {
		for i := range n {
			l := g.Loop(i % 2)
			_ = l.Post(func() {
				async.Launch(l, c.Offer(rtpengine.Call{CallID: fmt.Sprintf("g-%d", i), FromTag: "f"}, []byte(offerSDP), nil),
					func(*rtpengine.Response, error) { finished.Add(1) }, async.Timeout(10*time.Second))
			})
		}
	}
	start(2) // open the sockets first
	testenv.Eventually(t, 10*time.Second, "first sends", func() bool { return s.Received() >= 2 })
	before := runtime.NumGoroutine()
	start(300)
	testenv.Eventually(t, 10*time.Second, "300 commands sent", func() bool { return s.Received() >= 302 })
	during := runtime.NumGoroutine()
	t.Logf("goroutines before %d, with 300 commands in flight %d", before, during)
	if during > before {
		t.Fatalf("%d goroutines for 300 commands in flight", during-before)
	}
	_ = c.Close()
	testenv.Eventually(t, 10*time.Second, "commands failed by Close", func() bool { return finished.Load() == 302 })
}

// TestClientCookiesUniqueAcrossGroups: loops of two groups share IDs; the
// cookies of one client must still differ (rtpengine answers a repeated
// cookie from its cache: the second command would get the first's reply).
func TestClientCookiesUniqueAcrossGroups(t *testing.T) {
	t.Parallel()
	s := rtpenginetest.NewServer(t)
	g1, g2 := newGroup(t, 1), newGroup(t, 1)
	c := newClient(t, fast(s.Addr))
	if _, err := run(t, g1.Loop(0), c.Offer(rtpengine.Call{CallID: "u", FromTag: "f"}, []byte(offerSDP), nil)); err != nil {
		t.Fatal(err)
	}
	r, err := run(t, g2.Loop(0), c.Delete(rtpengine.Call{CallID: "u"}, nil))
	if err != nil || r.SDP != nil || len(s.Commands()) != 2 {
		t.Fatalf("delete from another group: %+v, %v; server handled %d commands", r, err, len(s.Commands()))
	}
}

// TestClientSameInstanceAcrossProxies: a client that did not see a call's
// offer (another proxy of a cluster, or this one after a restart) sends
// the call's commands to the instance that took the offer.
func TestClientSameInstanceAcrossProxies(t *testing.T) {
	t.Parallel()
	servers := []*rtpenginetest.Server{rtpenginetest.NewServer(t), rtpenginetest.NewServer(t), rtpenginetest.NewServer(t)}
	g := newGroup(t, 1)
	cfg := fast(servers[0].Addr, servers[1].Addr, servers[2].Addr)
	cfg.Instances[2].Weight = 2
	proxyA, proxyB := newClient(t, cfg), newClient(t, cfg)
	for i := range 40 {
		id := fmt.Sprintf("x-%d", i)
		r, err := run(t, g.Loop(0), proxyA.Offer(rtpengine.Call{CallID: id, FromTag: "f"}, []byte(offerSDP), nil))
		if err != nil {
			t.Fatal(err)
		}
		a, err := run(t, g.Loop(0), proxyB.Answer(rtpengine.Call{CallID: id, FromTag: "f", ToTag: "t"}, []byte(offerSDP), nil))
		if err != nil || a.Instance != r.Instance {
			t.Fatalf("call %s: offer on %s through A, answer through B: %v, %v", id, r.Instance, a, err)
		}
	}
	for _, s := range servers {
		if s.Live() == 0 {
			t.Fatalf("40 calls left %s unused", s.Addr)
		}
	}
}
