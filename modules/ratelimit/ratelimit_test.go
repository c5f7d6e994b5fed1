package ratelimit

import (
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// clock is a fake clock for the tests.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func newClock() *clock { return &clock{now: time.Unix(1_700_000_000, 0)} }

var ip1 = netip.MustParseAddr("192.0.2.1")

func TestBurstThenBan(t *testing.T) {
	clk := newClock()
	obs := &recorder{}
	l := New(Config{Rate: 2, Burst: 5, BanFor: 10 * time.Second, Now: clk.Now, Observer: obs})
	for i := 0; i < 5; i++ {
		require.True(t, l.Allow(ip1), "request %d within the burst", i)
	}
	assert.False(t, l.Allow(ip1), "the sixth at once goes over")
	assert.True(t, l.Banned(ip1))
	assert.Equal(t, []string{"ban 192.0.2.1 10s"}, obs.take())

	clk.add(5 * time.Second) // tokens refilled, but still banned
	assert.False(t, l.Allow(ip1))
	assert.Equal(t, []string{"refuse 192.0.2.1"}, obs.take())

	clk.add(5 * time.Second) // ban over, bucket full again
	for i := 0; i < 5; i++ {
		assert.True(t, l.Allow(ip1), "after the ban, request %d", i)
	}
	assert.False(t, l.Allow(ip1), "flooding again: banned again")

	st := l.Stats()
	assert.Equal(t, Stats{Allowed: 10, Refused: 2 + 1, Bans: 2, Tracked: 1}, st)
}

func TestSustainedRateIsAllowed(t *testing.T) {
	clk := newClock()
	l := New(Config{Rate: 10, Burst: 1, Now: clk.Now})
	for i := 0; i < 1000; i++ {
		require.True(t, l.Allow(ip1), "request %d at exactly the rate", i)
		clk.add(100 * time.Millisecond)
	}
	assert.Zero(t, l.Stats().Bans)
}

func TestSourcesAreIndependentAndMappedAddressesAreOne(t *testing.T) {
	clk := newClock()
	l := New(Config{Rate: 1, Burst: 1, Now: clk.Now})
	assert.True(t, l.Allow(ip1))
	assert.False(t, l.Allow(netip.MustParseAddr("::ffff:192.0.2.1")), "the same source as an IPv4-mapped address")
	assert.True(t, l.Allow(netip.MustParseAddr("192.0.2.2")))
	assert.True(t, l.Allow(netip.MustParseAddr("2001:db8::1")))
}

func TestExempt(t *testing.T) {
	l := New(Config{Rate: 1, Burst: 1, Exempt: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}})
	for i := 0; i < 100; i++ {
		require.True(t, l.Allow(ip1))
	}
	assert.Zero(t, l.Stats().Tracked, "exempt sources are not tracked")
}

// A flood of distinct (spoofed) sources never makes the table grow past
// MaxTracked, and the bans of real offenders survive it while another entry
// can go.
func TestMemoryBoundedUnderSpoofedFlood(t *testing.T) {
	clk := newClock()
	l := New(Config{Rate: 1, Burst: 1, MaxTracked: 640, BanFor: time.Hour, Now: clk.Now})
	l.Allow(ip1)
	require.False(t, l.Allow(ip1))
	for i := 0; i < 200000; i++ {
		a := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		l.Allow(a)
	}
	st := l.Stats()
	assert.LessOrEqual(t, st.Tracked, int64(640))
	assert.GreaterOrEqual(t, st.Evicted, uint64(200000-640))
	assert.True(t, l.Banned(ip1), "the banned source was kept")
	n := 0
	for i := range l.shards {
		n += len(l.shards[i].index)
		assert.LessOrEqual(t, len(l.shards[i].ents), l.shards[i].limit)
	}
	assert.EqualValues(t, st.Tracked, n)
}

func TestSweepForgetsIdleSources(t *testing.T) {
	clk := newClock()
	l := New(Config{Rate: 1, Burst: 1, BanFor: time.Minute, Window: 2 * time.Minute, Now: clk.Now})
	l.Allow(ip1)
	l.Allow(ip1) // banned for a minute
	for i := 0; i < 100; i++ {
		l.Allow(netip.AddrFrom4([4]byte{10, 0, 0, byte(i)}))
	}
	clk.add(90 * time.Second)
	assert.Zero(t, l.Sweep(), "nothing idle for 2 minutes yet")
	clk.add(31 * time.Second)
	assert.Equal(t, 101, l.Sweep())
	assert.Zero(t, l.Stats().Tracked)
	assert.True(t, l.Allow(ip1), "forgotten: a fresh bucket")
	for i := 0; i < 100; i++ {
		l.Allow(netip.AddrFrom4([4]byte{10, 0, 1, byte(i)}))
	}
	assert.EqualValues(t, 101, l.Stats().Tracked)
}

func TestConcurrentLoops(t *testing.T) {
	l := New(Config{Rate: 1e6, Burst: 1e6, MaxTracked: 1000})
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 20000; i++ {
				l.Allow(netip.AddrFrom4([4]byte{10, byte(g), byte(i >> 8), byte(i)}))
				if i%1000 == 0 {
					l.Sweep()
				}
			}
		}(g)
	}
	wg.Wait()
	st := l.Stats()
	assert.EqualValues(t, 8*20000, st.Allowed)
	assert.LessOrEqual(t, st.Tracked, int64(1000))
}

func TestIsScanner(t *testing.T) {
	cases := map[string]bool{
		"friendly-scanner":             true,
		"sipvicious":                   true,
		"SIPVicious 0.3.4":             true,
		"sipcli/v1.8":                  true,
		"VaxSIPUserAgent/3.1":          true,
		"Friendly-Request":             true,
		"Asterisk PBX 20.5.0":          false,
		"Linphone/5.2 (belle-sip)":     false,
		"Grandstream GXP2170 1.0.11.6": false,
	}
	for ua, want := range cases {
		req := sip.NewRequest(sip.OPTIONS, sip.Uri{Scheme: "sip", Host: "example.com"})
		req.AppendHeader(sip.NewHeader("User-Agent", ua))
		assert.Equal(t, want, IsScanner(req), ua)
	}
	assert.False(t, IsScanner(sip.NewRequest(sip.OPTIONS, sip.Uri{Scheme: "sip", Host: "example.com"})), "no User-Agent")
}

func BenchmarkAllow(b *testing.B) {
	l := New(Config{Rate: 1e9, Burst: 1e9})
	ips := make([]netip.Addr, 1024)
	for i := range ips {
		ips[i] = netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)})
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			l.Allow(ips[i&1023])
			i++
		}
	})
}

type recorder struct {
	mu  sync.Mutex
	evs []string
}

func (r *recorder) Ban(ip netip.Addr, until time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.evs = append(r.evs, fmt.Sprintf("ban %s %s", ip, until.Sub(time.Unix(1_700_000_000, 0))))
}

func (r *recorder) Refuse(ip netip.Addr) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.evs = append(r.evs, "refuse "+ip.String())
}

func (r *recorder) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.evs
	r.evs = nil
	return out
}
