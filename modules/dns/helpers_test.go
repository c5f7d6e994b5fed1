package dns_test

import (
	"context"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
	"go.uber.org/goleak"

	"github.com/asyncsip/asyncsip/modules/dns"
	"github.com/asyncsip/asyncsip/reactor"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// zone is the table a test DNS server answers from: records by name (any
// case, with or without the final dot), plus behaviours by name suffix.
type zone struct {
	mu      sync.Mutex
	records []mdns.RR
	queries map[string]int // "name TYPE" → queries received
	total   atomic.Int64
	// servfail lists name suffixes answered SERVFAIL.
	servfail []string
	// truncateUDP answers every UDP query truncated and empty (TC=1), so
	// the client must ask again over TCP.
	truncateUDP bool
	// soaMin, when set, is the SOA minimum sent with negative answers.
	soaMin atomic.Uint32
}

// newZone parses records in zone-file syntax ("a.test. 60 IN A 127.0.0.1").
func newZone(t testing.TB, lines ...string) *zone {
	t.Helper()
	z := &zone{queries: make(map[string]int)}
	for _, l := range lines {
		rr, err := mdns.NewRR(l)
		if err != nil {
			t.Fatalf("bad record %q: %v", l, err)
		}
		z.records = append(z.records, rr)
	}
	return z
}

// count returns the queries received for name and type ("A", "SRV", …).
func (z *zone) count(name, qtype string) int {
	z.mu.Lock()
	defer z.mu.Unlock()
	return z.queries[mdns.CanonicalName(name)+" "+qtype]
}

func (z *zone) ServeDNS(w mdns.ResponseWriter, req *mdns.Msg) {
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
	for _, s := range z.servfail {
		if strings.HasSuffix(name, s) {
			m.Rcode = mdns.RcodeServerFailure
			_ = w.WriteMsg(m)
			return
		}
	}
	exists := false
	for _, rr := range z.records {
		owner := mdns.CanonicalName(rr.Header().Name)
		if owner == name || strings.HasSuffix(owner, "."+name) { // empty non-terminals exist
			exists = true
		}
		if owner == name && rr.Header().Rrtype == q.Qtype {
			m.Answer = append(m.Answer, mdns.Copy(rr))
		}
	}
	if len(m.Answer) == 0 && q.Qtype != mdns.TypeCNAME { // follow one CNAME, as a recursive server does
		for _, rr := range z.records {
			if c, ok := rr.(*mdns.CNAME); ok && mdns.CanonicalName(c.Hdr.Name) == name {
				m.Answer = append(m.Answer, mdns.Copy(rr))
				for _, rr2 := range z.records {
					if mdns.CanonicalName(rr2.Header().Name) == mdns.CanonicalName(c.Target) && rr2.Header().Rrtype == q.Qtype {
						m.Answer = append(m.Answer, mdns.Copy(rr2))
					}
				}
			}
		}
	}
	if z.truncateUDP && w.LocalAddr().Network() == "udp" {
		m.Answer, m.Truncated = nil, true
	}
	if len(m.Answer) == 0 {
		if !exists {
			m.Rcode = mdns.RcodeNameError
		}
		if soaMin := z.soaMin.Load(); soaMin > 0 {
			soa, _ := mdns.NewRR("test. 3600 IN SOA ns.test. admin.test. 1 60 60 60 " + itoa(int(soaMin)))
			m.Ns = append(m.Ns, soa)
		}
	}
	_ = w.WriteMsg(m)
}

func itoa(n int) string {
	var b [20]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
		if n == 0 {
			return string(b[i:])
		}
	}
}

// serve starts a DNS server for h on 127.0.0.1 (UDP) and returns its
// address; it is shut down when the test ends.
func serve(t testing.TB, h mdns.Handler) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
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
		if err := srv.ShutdownContext(ctx); err != nil {
			t.Errorf("dns server shutdown: %v", err)
		}
		<-served
	})
	return pc.LocalAddr().String()
}

// serveUDPAndTCP starts a DNS server for h on one port over UDP and TCP.
func serveUDPAndTCP(t testing.TB, h mdns.Handler) string {
	t.Helper()
	for range 20 {
		addr := serve(t, h)
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			continue // the port is taken over TCP: try another
		}
		started := make(chan struct{})
		srv := &mdns.Server{Listener: ln, Handler: h, NotifyStartedFunc: func() { close(started) }}
		served := make(chan error, 1)
		go func() { served <- srv.ActivateAndServe() }()
		select {
		case <-started:
		case err := <-served:
			t.Fatalf("dns tcp server: %v", err)
		}
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := srv.ShutdownContext(ctx); err != nil {
				t.Errorf("dns tcp server shutdown: %v", err)
			}
			<-served
		})
		return addr
	}
	t.Fatal("no port free over both UDP and TCP")
	return ""
}

// silent returns the address of a UDP socket that never answers.
func silent(t testing.TB) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	t.Cleanup(func() { pc.Close() })
	return pc.LocalAddr().String()
}

// fakeClock is a settable clock for TTL tests.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// newResolver returns a resolver closed when the test ends.
func newResolver(t testing.TB, cfg dns.Config) *dns.Resolver {
	t.Helper()
	r, err := dns.NewResolver(cfg)
	if err != nil {
		t.Fatalf("NewResolver: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := r.Close(ctx); err != nil {
			t.Errorf("resolver close: %v", err)
		}
	})
	return r
}

// result is what a Resolve completed with, and whether synchronously.
type result struct {
	ts   []dns.Target
	err  error
	sync bool
}

// resolve starts r.Resolve(uri) on l and waits (bounded) for its result.
func resolve(t testing.TB, l *reactor.Loop, r *dns.Resolver, uri string) result {
	t.Helper()
	ch := make(chan result, 1)
	l.Post(func() {
		returned := false
		r.Resolve(uri).Start(l, func(ts []dns.Target, err error) {
			ch <- result{ts, err, !returned}
		})
		returned = true
	})
	select {
	case res := <-ch:
		return res
	case <-time.After(20 * time.Second):
		t.Fatalf("Resolve(%q) did not complete", uri)
		return result{}
	}
}

// targets formats targets as "addr:port/transport" for comparisons.
func targets(ts []dns.Target) []string {
	var s []string
	for _, t := range ts {
		s = append(s, t.AddrPort().String()+"/"+t.Transport)
	}
	return s
}
