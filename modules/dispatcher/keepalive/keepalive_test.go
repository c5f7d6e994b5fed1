package keepalive_test

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/asyncsip/asyncsip"
	"github.com/asyncsip/asyncsip/modules/dispatcher/keepalive"
	"github.com/asyncsip/asyncsip/siptest"
	"github.com/asyncsip/asyncsip/tm"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const interval = 10 * time.Second

type goneList struct {
	mu   sync.Mutex
	keys []string
}

func (g *goneList) add(b keepalive.Binding) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.keys = append(g.keys, b.Key)
}

func (g *goneList) list() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]string(nil), g.keys...)
}

func pinger(t *testing.T, cfg keepalive.Config) (*keepalive.Pinger, *siptest.Harness, *goneList) {
	t.Helper()
	gone := &goneList{}
	cfg.Interval, cfg.Timeout, cfg.OnGone = interval, 2*time.Second, gone.add
	if cfg.Slices == 0 {
		cfg.Slices = 1
	}
	p := keepalive.New(cfg)
	h := siptest.NewHarness(t, func(c *tm.Context) { _ = c.Reply(404, "Not Found") })
	job, err := p.Start(h.Server, h.Group())
	require.NoError(t, err)
	t.Cleanup(job.Stop)
	return p, h, gone
}

func tick(h *siptest.Harness, d time.Duration) []*siptest.Originated {
	before := len(h.Originated())
	h.Clock.Advance(d)
	return h.Originated()[before:]
}

var alice = keepalive.Binding{
	Key: "alice", Contact: "sip:alice@192.168.1.10:5060", Addr: netip.MustParseAddrPort("203.0.113.5:40000"),
}

// The ping is an OPTIONS to the registered Contact, sent to the NAT's
// public address; answered, it keeps the binding.
func TestPingGoesToTheNATAddress(t *testing.T) {
	p, h, gone := pinger(t, keepalive.Config{FailAfter: 1})
	require.NoError(t, p.Add(alice))
	for i := 0; i < 3; i++ {
		pings := tick(h, interval)
		require.Len(t, pings, 1)
		assert.Equal(t, sip.OPTIONS, pings[0].Method)
		assert.Equal(t, "sip:alice@192.168.1.10:5060", pings[0].Recipient.String())
		assert.Equal(t, "203.0.113.5:40000", pings[0].Addr.String())
		pings[0].Respond(405) // any answer proves the UA there
	}
	assert.Empty(t, gone.list())
	assert.Equal(t, keepalive.Stats{Sent: 3, Bindings: 1}, p.Stats())
}

// FailAfter unanswered pings in a row remove the binding and report it; an
// answer in between starts the count again.
func TestUnansweredBindingIsRemoved(t *testing.T) {
	p, h, gone := pinger(t, keepalive.Config{FailAfter: 2})
	require.NoError(t, p.Add(alice))
	require.Len(t, tick(h, interval), 1) // unanswered: failure 1
	tick(h, interval)[0].Respond(200)    // failure 1 timed out meanwhile; reset
	require.Len(t, tick(h, interval), 1) // failure 1
	assert.Empty(t, gone.list())
	require.Len(t, tick(h, interval), 1) // failure 1 of the last times out: 2
	h.Clock.Advance(3 * time.Second)
	assert.Equal(t, []string{"alice"}, gone.list())
	assert.Empty(t, tick(h, interval), "no more pings")
	st := p.Stats()
	assert.Equal(t, uint64(1), st.Gone)
	assert.Equal(t, uint64(3), st.Failed)
	assert.Zero(t, st.Bindings)
}

// A binding past its Expires is dropped without a ping; a refresh (a
// re-REGISTER) moves Expires on.
func TestExpiredBindingIsDropped(t *testing.T) {
	p, h, gone := pinger(t, keepalive.Config{})
	b := alice
	b.Expires = h.Clock.Now().Add(15 * time.Second)
	require.NoError(t, p.Add(b))
	tick(h, interval)[0].Respond(200)
	assert.Empty(t, tick(h, interval), "expired at 15 s")
	assert.Equal(t, uint64(1), p.Stats().Expired)
	assert.Empty(t, gone.list(), "expiry is not a failure")

	b.Expires = h.Clock.Now().Add(15 * time.Second)
	require.NoError(t, p.Add(b))
	b.Expires = h.Clock.Now().Add(25 * time.Second)
	require.NoError(t, p.Add(b)) // refreshed
	tick(h, interval)[0].Respond(200)
	assert.Len(t, tick(h, interval), 1, "refreshed to 25 s")
	assert.Equal(t, 1, p.Stats().Bindings)
}

func TestBindingsCapped(t *testing.T) {
	p := keepalive.New(keepalive.Config{MaxBindings: 2})
	for i := 0; i < 2; i++ {
		b := alice
		b.Key = fmt.Sprint(i)
		require.NoError(t, p.Add(b))
	}
	b := alice
	b.Key = "x"
	assert.ErrorIs(t, p.Add(b), keepalive.ErrFull)
	b.Key = "1"
	assert.NoError(t, p.Add(b), "a refresh is not a new binding")
	assert.True(t, p.Remove("0"))
	assert.False(t, p.Remove("0"))
	b.Key = "x"
	assert.NoError(t, p.Add(b))
	assert.Error(t, p.Add(keepalive.Binding{Key: "y", Contact: "sip:a@b"}), "no address")
	assert.Error(t, p.Add(keepalive.Binding{Key: "y", Contact: "nonsense", Addr: alice.Addr}))
}

// Bindings spread over slices: each pinged once per interval.
func TestPingsSpreadOverSlices(t *testing.T) {
	p, h, _ := pinger(t, keepalive.Config{Slices: 4})
	for i := 0; i < 40; i++ {
		b := alice
		b.Key = fmt.Sprint(i)
		b.Addr = netip.AddrPortFrom(netip.MustParseAddr("203.0.113.5"), uint16(40000+i))
		require.NoError(t, p.Add(b))
	}
	seen := map[string]int{}
	for i := 0; i < 4; i++ {
		pings := tick(h, interval/4)
		assert.Less(t, len(pings), 40, "tick %d: not all at once", i)
		for _, o := range pings {
			seen[o.Addr.String()]++
			o.Respond(200)
		}
	}
	assert.Len(t, seen, 40)
	for a, n := range seen {
		assert.Equal(t, 1, n, a)
	}
}

func TestBehind(t *testing.T) {
	src := netip.MustParseAddrPort("203.0.113.5:40000")
	for name, c := range map[string]struct {
		contact string
		want    bool
	}{
		"private contact":      {"sip:alice@192.168.1.10:5060", true},
		"public, other port":   {"sip:alice@203.0.113.5:5060", true},
		"public, same port":    {"sip:alice@203.0.113.5:40000", false},
		"host name":            {"sip:alice@pc.example.com", false},
		"default port differs": {"sip:alice@203.0.113.5", true},
	} {
		t.Run(name, func(t *testing.T) {
			req := siptest.NewRequest("REGISTER", "sip:example.com", siptest.WithHeader("Contact", "<"+c.contact+">"))
			assert.Equal(t, c.want, keepalive.Behind(req, src))
		})
	}
}

// The real server on loopback pings a UA "behind a NAT" (its Contact names
// a private address; it sits on 127.0.0.4): the pings reach it; when it
// stops answering, the binding is removed.
func TestRealServerPingsAndDropsSilentUA(t *testing.T) {
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP("127.0.0.4")})
	if err != nil {
		t.Skipf("cannot bind 127.0.0.4: %v", err)
	}
	var pings atomic.Int64
	var silent atomic.Bool
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 65535)
		for {
			n, from, err := conn.ReadFromUDP(buf)
			if err != nil {
				return
			}
			msg, err := sip.ParseMessage(append([]byte(nil), buf[:n]...))
			req, ok := msg.(*sip.Request)
			if err != nil || !ok || req.Method != sip.OPTIONS {
				continue
			}
			pings.Add(1)
			if !silent.Load() {
				_, _ = conn.WriteToUDP([]byte(sip.NewResponseFromRequest(req, 200, "OK", nil).String()), from)
			}
		}
	}()
	defer func() { _ = conn.Close(); <-done }()

	gone := &goneList{}
	p := keepalive.New(keepalive.Config{Interval: 200 * time.Millisecond, Timeout: 180 * time.Millisecond, FailAfter: 2, OnGone: gone.add})
	srv, err := asyncsip.New(asyncsip.Config{Listen: []string{"udp:127.0.0.1:0"}, Workers: 2})
	require.NoError(t, err)
	require.NoError(t, srv.Start())
	job, err := p.Start(srv.Core(), srv.Group())
	require.NoError(t, err)
	defer func() {
		job.Stop()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		require.NoError(t, srv.Shutdown(ctx))
	}()
	require.NoError(t, p.Add(keepalive.Binding{Key: "ua", Contact: "sip:ua@192.168.1.10:5060",
		Addr: netip.MustParseAddrPort(conn.LocalAddr().String())}))

	eventually(t, 5*time.Second, func() bool { return pings.Load() >= 3 }, "pings reach the UA")
	assert.Empty(t, gone.list())
	silent.Store(true)
	eventually(t, 5*time.Second, func() bool { return len(gone.list()) == 1 }, "the silent UA's binding removed")
	assert.Equal(t, []string{"ua"}, gone.list())
	assert.Zero(t, p.Stats().Bindings)
}

func eventually(t *testing.T, limit time.Duration, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", limit, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
