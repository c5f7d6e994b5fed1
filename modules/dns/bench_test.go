package dns_test

// Benchmarks behind the choice of how queries wait (docs/ARCHITECTURE.md,
// "DNS"): a cache hit (the common case), and a query that misses, once on
// the pool (what the resolver does) and once as an fd op on the loop (the
// alternative, written here only to measure it).

import (
	"net/netip"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
	"golang.org/x/sys/unix"

	"github.com/asyncsip/asyncsip/async"
	"github.com/asyncsip/asyncsip/internal/testenv"
	"github.com/asyncsip/asyncsip/modules/dns"
	"github.com/asyncsip/asyncsip/reactor"
)

// BenchmarkResolveCacheHit: a Resolve that the cache answers, started on
// the loop (NAPTR miss cached, SRV, A: three cache lookups and an SRV
// ordering).
func BenchmarkResolveCacheHit(b *testing.B) {
	z := newZone(b,
		"_sip._udp.hit.test. 600 IN SRV 10 60 5060 a.hit.test.",
		"_sip._udp.hit.test. 600 IN SRV 10 40 5060 b.hit.test.",
		"a.hit.test. 600 IN A 127.0.0.1", "b.hit.test. 600 IN A 127.0.0.2")
	r := newResolver(b, dns.Config{Servers: []string{serve(b, z)}, IPv4Only: true})
	l := testenv.StartLoop(b)
	if res := resolve(b, l, r, "sip:hit.test"); res.err != nil {
		b.Fatal(res.err)
	}
	done := make(chan struct{})
	sync := 0
	b.ReportAllocs()
	b.ResetTimer()
	l.Post(func() {
		for range b.N {
			returned := false
			r.Resolve("sip:hit.test").Start(l, func([]dns.Target, error) {
				if !returned {
					sync++
				}
			})
			returned = true
		}
		close(done)
	})
	<-done
	if sync != b.N {
		b.Fatalf("%d of %d hits were not synchronous", b.N-sync, b.N)
	}
}

// runInFlight starts ops on l keeping `depth` in flight until b.N are done.
func runInFlight(b *testing.B, l *reactor.Loop, depth int, op func() async.Op[netip.Addr]) {
	finished := make(chan struct{})
	started, completed := 0, 0
	var next func()
	next = func() {
		for started < b.N && started-completed < depth {
			started++
			op().Start(l, func(a netip.Addr, err error) {
				if err != nil {
					b.Error(err)
				}
				completed++
				if completed == b.N {
					close(finished)
					return
				}
				next()
			})
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	l.Post(next)
	select {
	case <-finished:
	case <-time.After(60 * time.Second):
		b.Fatal("benchmark stuck")
	}
}

// BenchmarkMissPool: uncached A queries on the resolver's pool, 16 in
// flight, against a miekg/dns server on 127.0.0.1.
func BenchmarkMissPool(b *testing.B) {
	z := newZone(b, "m.test. 600 IN A 127.0.0.1")
	r := newResolver(b, dns.Config{Servers: []string{serve(b, z)}, IPv4Only: true, CacheSize: -1})
	l := testenv.StartLoop(b)
	runInFlight(b, l, 16, func() async.Op[netip.Addr] {
		return async.Map(r.Resolve("sip:m.test:5060"), func(ts []dns.Target) (netip.Addr, error) { return ts[0].Addr, nil })
	})
}

// BenchmarkMissFDOnLoop: the same query as an fd op on the loop: a
// non-blocking UDP socket per query, watched by the loop's epoll.
func BenchmarkMissFDOnLoop(b *testing.B) {
	z := newZone(b, "m.test. 600 IN A 127.0.0.1")
	server := netip.MustParseAddrPort(serve(b, z))
	l := testenv.StartLoop(b)
	runInFlight(b, l, 16, func() async.Op[netip.Addr] { return fdQuery(server, "m.test.") })
}

// fdQuery asks server for name's A record on the loop, without a goroutine.
func fdQuery(server netip.AddrPort, name string) async.Op[netip.Addr] {
	return async.FDOp(func(s *async.FDSet, done func(netip.Addr, error)) error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		if err := unix.Connect(fd, &unix.SockaddrInet4{Addr: server.Addr().As4(), Port: int(server.Port())}); err != nil {
			unix.Close(fd)
			return err
		}
		m := new(mdns.Msg)
		m.SetQuestion(name, mdns.TypeA)
		q, err := m.Pack()
		if err != nil {
			unix.Close(fd)
			return err
		}
		if _, err := unix.Write(fd, q); err != nil {
			unix.Close(fd)
			return err
		}
		buf := make([]byte, 512)
		return s.Watch(fd, reactor.Readable, func(fd int, _ reactor.Events) async.FDAction {
			n, err := unix.Read(fd, buf)
			if err == unix.EAGAIN {
				return async.FDKeep
			}
			resp := new(mdns.Msg)
			if err == nil {
				err = resp.Unpack(buf[:n])
			}
			if err == nil && len(resp.Answer) > 0 {
				if a, ok := resp.Answer[0].(*mdns.A); ok {
					addr, _ := netip.AddrFromSlice(a.A.To4())
					done(addr, nil)
					return async.FDClose
				}
			}
			done(netip.Addr{}, dns.ErrNoRecords)
			return async.FDClose
		})
	})
}
