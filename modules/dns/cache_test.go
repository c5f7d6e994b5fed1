package dns_test

import (
	"fmt"
	"github.com/asyncsip/asyncsip/internal/testenv"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/asyncsip/asyncsip/modules/dns"
	"github.com/asyncsip/asyncsip/tm"
)

func TestCacheHitIsSynchronousAndHonoursTTL(t *testing.T) {
	testenv.CheckFDs(t)
	z := newZone(t,
		"_sip._udp.ttl.test. 300 IN SRV 10 1 5060 h.ttl.test.",
		"h.ttl.test. 30 IN A 127.0.0.61",
	)
	clk := newFakeClock()
	r := newResolver(t, dns.Config{Servers: []string{serve(t, z)}, Now: clk.Now, IPv4Only: true})
	l := testenv.StartLoop(t)
	const uri = "sip:ttl.test;transport=udp"

	first := resolve(t, l, r, uri)
	require.NoError(t, first.err)
	require.False(t, first.sync, "a cold cache cannot answer synchronously")
	require.Equal(t, 30*time.Second, first.ts[0].TTL, "the target's TTL is the smallest along the chain")
	require.Equal(t, 1, z.count("h.ttl.test", "A"))

	clk.Advance(29 * time.Second)
	hit := resolve(t, l, r, uri)
	require.NoError(t, hit.err)
	require.True(t, hit.sync, "a cache hit completes without suspending")
	require.Equal(t, time.Second, hit.ts[0].TTL, "remaining TTL")
	require.Equal(t, 1, z.count("h.ttl.test", "A"))

	clk.Advance(time.Second) // the A record expires; the SRV does not
	again := resolve(t, l, r, uri)
	require.NoError(t, again.err)
	require.False(t, again.sync)
	require.Equal(t, 2, z.count("h.ttl.test", "A"))
	require.Equal(t, 1, z.count("_sip._udp.ttl.test", "SRV"))
}

func TestTTLClamp(t *testing.T) {
	z := newZone(t,
		"short.test. 1 IN A 127.0.0.62",
		"long.test. 86400 IN A 127.0.0.63",
	)
	clk := newFakeClock()
	r := newResolver(t, dns.Config{Servers: []string{serve(t, z)}, Now: clk.Now, IPv4Only: true,
		MinTTL: 10 * time.Second, MaxTTL: time.Minute})
	l := testenv.StartLoop(t)
	for _, h := range []string{"short.test", "long.test"} {
		require.NoError(t, resolve(t, l, r, "sip:"+h+":5060").err)
	}
	clk.Advance(9 * time.Second) // past the 1 s TTL, within MinTTL
	res := resolve(t, l, r, "sip:short.test:5060")
	require.True(t, res.sync, "MinTTL keeps a 1 s record")
	clk.Advance(52 * time.Second) // 61 s: past MaxTTL
	res = resolve(t, l, r, "sip:long.test:5060")
	require.NoError(t, res.err)
	require.False(t, res.sync, "MaxTTL caps a one-day record")
	require.Equal(t, 2, z.count("long.test", "A"))
}

func TestNegativeCache(t *testing.T) {
	z := newZone(t, "exists.test. 60 IN TXT \"x\"")
	clk := newFakeClock()
	r := newResolver(t, dns.Config{Servers: []string{serve(t, z)}, Now: clk.Now, IPv4Only: true,
		NegativeTTL: 20 * time.Second})
	l := testenv.StartLoop(t)

	res := resolve(t, l, r, "sip:missing.test:5060")
	require.ErrorIs(t, res.err, dns.ErrNXDomain)
	require.False(t, res.sync)
	res = resolve(t, l, r, "sip:exists.test:5060")
	require.ErrorIs(t, res.err, dns.ErrNoRecords)

	clk.Advance(19 * time.Second)
	res = resolve(t, l, r, "sip:missing.test:5060")
	require.ErrorIs(t, res.err, dns.ErrNXDomain)
	require.True(t, res.sync, "NXDOMAIN is cached")
	res = resolve(t, l, r, "sip:exists.test:5060")
	require.ErrorIs(t, res.err, dns.ErrNoRecords)
	require.True(t, res.sync, "NODATA is cached")
	require.Equal(t, 1, z.count("missing.test", "A"))

	clk.Advance(time.Second)
	res = resolve(t, l, r, "sip:missing.test:5060")
	require.ErrorIs(t, res.err, dns.ErrNXDomain)
	require.False(t, res.sync, "NegativeTTL expired")
	require.Equal(t, 2, z.count("missing.test", "A"))

	// The zone's SOA minimum shortens negative caching (RFC 2308).
	z.soaMin.Store(5)
	_, err := r.Lookup("missing2.test")
	require.ErrorIs(t, err, dns.ErrNotCached)
	require.ErrorIs(t, resolve(t, l, r, "sip:missing2.test:5060").err, dns.ErrNXDomain)
	clk.Advance(4 * time.Second)
	require.True(t, resolve(t, l, r, "sip:missing2.test:5060").sync)
	clk.Advance(time.Second)
	require.False(t, resolve(t, l, r, "sip:missing2.test:5060").sync)
}

func TestNegativeCacheDisabled(t *testing.T) {
	z := newZone(t)
	r := newResolver(t, dns.Config{Servers: []string{serve(t, z)}, IPv4Only: true, NegativeTTL: -1})
	l := testenv.StartLoop(t)
	for range 2 {
		res := resolve(t, l, r, "sip:missing.test:5060")
		require.ErrorIs(t, res.err, dns.ErrNXDomain)
		require.False(t, res.sync)
	}
	require.Equal(t, 2, z.count("missing.test", "A"))
}

func TestCacheBound(t *testing.T) {
	var recs []string
	for i := range 20 {
		recs = append(recs, fmt.Sprintf("h%d.test. 600 IN A 127.0.1.%d", i, i))
	}
	z := newZone(t, recs...)
	r := newResolver(t, dns.Config{Servers: []string{serve(t, z)}, IPv4Only: true, CacheSize: 8})
	l := testenv.StartLoop(t)
	for i := range 20 {
		require.NoError(t, resolve(t, l, r, fmt.Sprintf("sip:h%d.test:5060", i)).err)
		require.LessOrEqual(t, r.Stats().CacheEntries, 8)
	}
	require.Equal(t, 8, r.Stats().CacheEntries)
	// The most recent names are cached, the first ones were evicted.
	require.True(t, resolve(t, l, r, "sip:h19.test:5060").sync)
	res := resolve(t, l, r, "sip:h0.test:5060")
	require.NoError(t, res.err)
	require.False(t, res.sync, "h0 should have been evicted")
	require.Equal(t, 2, z.count("h0.test", "A"))

	// Recently used entries survive: touch h13, then add 7 new names.
	require.True(t, resolve(t, l, r, "sip:h13.test:5060").sync)
	for i := 1; i <= 7; i++ {
		require.NoError(t, resolve(t, l, r, fmt.Sprintf("sip:h%d.test:5060", i)).err)
	}
	require.True(t, resolve(t, l, r, "sip:h13.test:5060").sync, "LRU evicted a recently used entry")
}

func TestCacheDisabled(t *testing.T) {
	z := newZone(t, "h.test. 600 IN A 127.0.0.64")
	r := newResolver(t, dns.Config{Servers: []string{serve(t, z)}, IPv4Only: true, CacheSize: -1})
	l := testenv.StartLoop(t)
	for range 3 {
		res := resolve(t, l, r, "sip:h.test:5060")
		require.NoError(t, res.err)
		require.False(t, res.sync)
	}
	require.Equal(t, 3, z.count("h.test", "A"))
	require.Zero(t, r.Stats().CacheEntries)
}

func TestLookup(t *testing.T) {
	z := newZone(t, "gw.test. 60 IN A 127.0.0.65", "v6.test. 60 IN AAAA ::1")
	clk := newFakeClock()
	r := newResolver(t, dns.Config{Servers: []string{serve(t, z)}, Now: clk.Now})
	l := testenv.StartLoop(t)

	for host, want := range map[string]string{"127.0.0.9": "127.0.0.9", "[::1]": "::1", "localhost": "127.0.0.1"} {
		a, err := r.Lookup(host)
		require.NoError(t, err)
		require.Equal(t, netip.MustParseAddr(want), a)
	}
	_, err := r.Lookup("gw.test")
	require.ErrorIs(t, err, dns.ErrNotCached)
	require.ErrorIs(t, err, tm.ErrNoRoute, "tm answers an uncached name 503")
	require.Zero(t, z.total.Load(), "Lookup queried the server")

	require.NoError(t, resolve(t, l, r, "sip:gw.test:5060").err)
	require.NoError(t, resolve(t, l, r, "sip:v6.test:5060").err)
	require.ErrorIs(t, resolve(t, l, r, "sip:none.test:5060").err, dns.ErrNXDomain)
	a, err := r.Lookup("GW.test.")
	require.NoError(t, err)
	require.Equal(t, netip.MustParseAddr("127.0.0.65"), a)
	a, err = r.Lookup("v6.test")
	require.NoError(t, err)
	require.Equal(t, netip.MustParseAddr("::1"), a)
	_, err = r.Lookup("none.test")
	require.ErrorIs(t, err, dns.ErrNXDomain)

	clk.Advance(time.Minute)
	_, err = r.Lookup("gw.test")
	require.ErrorIs(t, err, dns.ErrNotCached, "expired")
}
