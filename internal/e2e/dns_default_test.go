package e2e

// The facade resolves next-hop host names by default (Config.DNS): RFC 3263
// through internal/sipdns, against a DNS server the test runs on 127.0.0.1
// (the machine's resolver is never used: every server sets DNS.Servers).

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
	"github.com/stretchr/testify/require"

	"github.com/asyncsip/asyncsip"
	"github.com/asyncsip/asyncsip/async"
	"github.com/asyncsip/asyncsip/internal/e2e/e2etest"
	"github.com/asyncsip/asyncsip/modules/dns"
	"github.com/asyncsip/asyncsip/tm"
)

// dnsZone answers from records in zone-file syntax and counts the queries;
// a name it has no record under is NXDOMAIN.
type dnsZone struct {
	mu      sync.Mutex
	records []mdns.RR
	queries map[string]int // "name. TYPE" → count
	total   atomic.Int64
}

func newDNSZone(t *testing.T, lines ...string) *dnsZone {
	t.Helper()
	z := &dnsZone{queries: map[string]int{}}
	for _, l := range lines {
		rr, err := mdns.NewRR(l)
		require.NoError(t, err, l)
		z.records = append(z.records, rr)
	}
	return z
}

func (z *dnsZone) count(name, qtype string) int {
	z.mu.Lock()
	defer z.mu.Unlock()
	return z.queries[mdns.CanonicalName(name)+" "+qtype]
}

func (z *dnsZone) ServeDNS(w mdns.ResponseWriter, req *mdns.Msg) {
	m := new(mdns.Msg)
	m.SetReply(req)
	if len(req.Question) != 1 {
		m.Rcode = mdns.RcodeFormatError
		_ = w.WriteMsg(m)
		return
	}
	q := req.Question[0]
	name := mdns.CanonicalName(q.Name)
	z.total.Add(1)
	z.mu.Lock()
	z.queries[name+" "+mdns.TypeToString[q.Qtype]]++
	z.mu.Unlock()
	exists := false
	for _, rr := range z.records {
		owner := mdns.CanonicalName(rr.Header().Name)
		if owner == name || strings.HasSuffix(owner, "."+name) {
			exists = true
		}
		if owner == name && rr.Header().Rrtype == q.Qtype {
			m.Answer = append(m.Answer, mdns.Copy(rr))
		}
	}
	if len(m.Answer) == 0 && !exists {
		m.Rcode = mdns.RcodeNameError
	}
	_ = w.WriteMsg(m)
}

// serveDNS runs a UDP DNS server for h on 127.0.0.1 until the test ends.
func serveDNS(t *testing.T, h mdns.Handler) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	require.NoError(t, err)
	started := make(chan struct{})
	srv := &mdns.Server{PacketConn: pc, Handler: h, NotifyStartedFunc: func() { close(started) }}
	served := make(chan error, 1)
	go func() { served <- srv.ActivateAndServe() }()
	select {
	case <-started:
	case err := <-served:
		t.Fatalf("dns server: %v", err)
	case <-time.After(5 * time.Second):
		t.Fatal("dns server did not start")
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		require.NoError(t, srv.ShutdownContext(ctx))
		<-served
	})
	return pc.LocalAddr().String()
}

// silentDNS is a UDP socket that never answers, and counts what it gets.
func silentDNS(t *testing.T) (string, *atomic.Int64) {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	require.NoError(t, err)
	var got atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 4096)
		for {
			if _, _, err := pc.ReadFrom(buf); err != nil {
				return
			}
			got.Add(1)
		}
	}()
	t.Cleanup(func() { _ = pc.Close(); <-done })
	return pc.LocalAddr().String(), &got
}

// dnsUAS answers every request but ACK with 200 on 127.0.0.1 and counts them.
func dnsUAS(t *testing.T) (port int, got *atomic.Int64) {
	t.Helper()
	p := e2etest.NewUDPPeer(t)
	got = new(atomic.Int64)
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 65535)
		for {
			n, from, err := p.Conn().ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			req := string(buf[:n])
			if strings.HasPrefix(req, "SIP/2.0 ") || strings.HasPrefix(req, "ACK ") {
				continue
			}
			got.Add(1)
			_, _ = p.Conn().WriteToUDPAddrPort([]byte(e2etest.Answer(req, 200, "OK")), from)
		}
	}()
	t.Cleanup(func() { _ = p.Conn().Close(); <-done })
	return p.Port(), got
}

// callThrough sends an OPTIONS for ruri to srv and returns the final
// response (bounded wait).
func callThrough(t *testing.T, srv *asyncsip.Server, ruri, callID string) string {
	t.Helper()
	uac := e2etest.NewUDPPeer(t)
	uac.SendTo(srv.Addrs()[0], e2etest.Request("OPTIONS", ruri, "UDP", uac.Port(), callID, ""))
	for {
		msg, _ := uac.Read(10 * time.Second)
		if strings.HasPrefix(msg, "SIP/2.0 ") {
			return msg
		}
	}
}

func status(resp string) int {
	f := strings.Fields(resp)
	if len(f) < 2 {
		return 0
	}
	n, _ := strconv.Atoi(f[1])
	return n
}

// relayAll relays every request to its Request-URI.
func relayAll(c *tm.Context) { _ = c.Relay() }

// TestDNSDefaultResolvesHostnames: with only DNS.Servers set, a Relay to a
// host name goes through the A record (explicit port) or the SRV record,
// and a name that does not exist answers 404.
func TestDNSDefaultResolvesHostnames(t *testing.T) {
	uasPort, got := dnsUAS(t)
	z := newDNSZone(t,
		"gw.test.invalid. 60 IN A 127.0.0.1",
		fmt.Sprintf("_sip._udp.srv.test.invalid. 60 IN SRV 10 1 %d gw.test.invalid.", uasPort),
	)
	srv := startStream(t, asyncsip.Config{
		Listen: []string{"udp:127.0.0.1:0"},
		DNS:    asyncsip.DNSConfig{Servers: []string{serveDNS(t, z)}},
	}, tm.Routes{Request: relayAll})
	require.NotNil(t, srv.DNS())

	resp := callThrough(t, srv, "sip:bob@gw.test.invalid:"+strconv.Itoa(uasPort), "dns-a")
	require.Equal(t, 200, status(resp), resp)
	require.Equal(t, int64(1), got.Load())
	require.Equal(t, 1, z.count("gw.test.invalid", "A"))

	resp = callThrough(t, srv, "sip:bob@srv.test.invalid", "dns-srv")
	require.Equal(t, 200, status(resp), resp)
	require.Equal(t, int64(2), got.Load())
	require.Equal(t, 1, z.count("_sip._udp.srv.test.invalid", "SRV"))
	require.Equal(t, 1, z.count("gw.test.invalid", "A"), "the SRV target's address comes from the cache")

	resp = callThrough(t, srv, "sip:bob@nowhere.test.invalid", "dns-nx")
	require.Equal(t, 404, status(resp), resp)
	require.Equal(t, int64(2), got.Load())
	require.Positive(t, z.count("nowhere.test.invalid", "NAPTR"))
}

// TestDNSSilentServer: a DNS server that never answers gives 503 once the
// resolver's timeout expires (far below the suspension bound, 32 s, whose
// answer would be 504).
func TestDNSSilentServer(t *testing.T) {
	addr, got := silentDNS(t)
	srv := startStream(t, asyncsip.Config{
		Listen: []string{"udp:127.0.0.1:0"},
		DNS:    asyncsip.DNSConfig{Servers: []string{addr}, Timeout: 100 * time.Millisecond, Attempts: 1},
	}, tm.Routes{Request: relayAll})
	resp := callThrough(t, srv, "sip:bob@gw.test.invalid", "dns-silent")
	require.Equal(t, 503, status(resp), resp)
	require.Positive(t, got.Load(), "the resolver asked the configured server")
}

// TestDNSCacheOnly: the cache-only mode never queries for a Relay (the
// server sees no query, the uncached host answers 503); a route that
// resolves through Server.DNS fills the cache that Relay then reads.
func TestDNSCacheOnly(t *testing.T) {
	uasPort, got := dnsUAS(t)
	z := newDNSZone(t, "gw.test.invalid. 60 IN A 127.0.0.1")
	var srvp atomic.Pointer[asyncsip.Server] // set before the first request
	routes := tm.Routes{Request: func(c *tm.Context) {
		if c.Recipient().User != "resolve-first" {
			_ = c.Relay()
			return
		}
		async.Await(c, srvp.Load().DNS().Resolve(c.Req().Recipient.String()), func(_ []dns.Target, err error) {
			if err != nil {
				_ = c.Reply(500, "Resolve: "+err.Error())
				return
			}
			_ = c.Relay()
		}, async.Timeout(5*time.Second))
	}}
	srv := startStream(t, asyncsip.Config{
		Listen: []string{"udp:127.0.0.1:0"},
		DNS:    asyncsip.DNSConfig{Servers: []string{serveDNS(t, z)}, CacheOnly: true},
	}, routes)
	srvp.Store(srv)
	target := "gw.test.invalid:" + strconv.Itoa(uasPort)

	resp := callThrough(t, srv, "sip:bob@"+target, "dns-cache-miss")
	require.Equal(t, 503, status(resp), resp)
	require.Equal(t, int64(0), z.total.Load(), "cache-only: no query")
	require.Equal(t, int64(0), got.Load())

	resp = callThrough(t, srv, "sip:resolve-first@"+target, "dns-cache-fill")
	require.Equal(t, 200, status(resp), resp)
	require.Equal(t, 1, z.count("gw.test.invalid", "A"), "the route's Resolve queried")
	resp = callThrough(t, srv, "sip:bob@"+target, "dns-cache-hit")
	require.Equal(t, 200, status(resp), resp)
	require.Equal(t, int64(2), got.Load())
	require.Equal(t, 1, z.count("gw.test.invalid", "A"), "the relay read the cache")
}

// TestDNSDisabledAndUserLookup: DNS.Disabled keeps host names unresolved
// (503, no query), and a Config.Lookup replaces the built-in resolver.
func TestDNSDisabledAndUserLookup(t *testing.T) {
	uasPort, got := dnsUAS(t)
	z := newDNSZone(t, "gw.test.invalid. 60 IN A 127.0.0.1")
	dnsAddr := serveDNS(t, z)
	ruri := "sip:bob@gw.test.invalid:" + strconv.Itoa(uasPort)

	t.Run("disabled", func(t *testing.T) {
		srv := startStream(t, asyncsip.Config{
			Listen: []string{"udp:127.0.0.1:0"},
			DNS:    asyncsip.DNSConfig{Servers: []string{dnsAddr}, Disabled: true},
		}, tm.Routes{Request: relayAll})
		require.Nil(t, srv.DNS())
		resp := callThrough(t, srv, ruri, "dns-disabled")
		require.Equal(t, 503, status(resp), resp)
		require.Equal(t, int64(0), z.total.Load())
	})
	t.Run("user lookup wins", func(t *testing.T) {
		var asked atomic.Value
		srv := startStream(t, asyncsip.Config{
			Listen: []string{"udp:127.0.0.1:0"},
			DNS:    asyncsip.DNSConfig{Servers: []string{dnsAddr}},
			Core: tm.Config{
				Lookup: func(uri string) async.Op[tm.NextHop] {
					asked.Store(uri)
					return async.Done(tm.NextHop{Addr: netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(uasPort))}, nil)
				},
			},
		}, tm.Routes{Request: relayAll})
		require.Nil(t, srv.DNS())
		resp := callThrough(t, srv, ruri, "dns-user")
		require.Equal(t, 200, status(resp), resp)
		require.Equal(t, "sip:gw.test.invalid:"+strconv.Itoa(uasPort), asked.Load())
		require.Equal(t, int64(0), z.total.Load())
		require.Equal(t, int64(1), got.Load())
	})
}

// TestDNSBadServers: a DNS server that is not "ip:port" fails New (rather
// than a server that cannot resolve).
func TestDNSBadServers(t *testing.T) {
	srv, err := asyncsip.New(asyncsip.Config{
		Listen: []string{"udp:127.0.0.1:0"},
		DNS:    asyncsip.DNSConfig{Servers: []string{"dns.test.invalid"}},
	})
	require.Nil(t, srv)
	require.ErrorIs(t, err, dns.ErrBadConfig)
	require.ErrorContains(t, err, "dns.test.invalid")
}
