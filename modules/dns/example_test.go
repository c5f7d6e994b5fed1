package dns_test

import (
	"context"
	"fmt"
	"net"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/asyncsip/asyncsip"
	"github.com/asyncsip/asyncsip/async"
	"github.com/asyncsip/asyncsip/modules/dns"
	"github.com/asyncsip/asyncsip/reactor"
	"github.com/asyncsip/asyncsip/tm"
)

// A proxy that resolves the callee's domain (RFC 3263) before relaying,
// and fails over to the next target on 503 or timeout. The worker loop
// serves other traffic while the DNS server answers; later calls to the
// same domain resolve from the cache without suspending.
func Example_failover() {
	r, err := dns.NewResolver(dns.Config{Timeout: time.Second})
	if err != nil {
		panic(err)
	}
	srv, err := asyncsip.New(asyncsip.Config{
		Listen: []string{"udp:127.0.0.1:5060"},
		Core: tm.Config{
			Resolver: r.Lookup, // names already resolved (Record-Route, Via) from the cache
		},
	})
	if err != nil {
		panic(err)
	}
	srv.Request(func(c *tm.Context) {
		if c.InDialog() {
			c.Relay()
			return
		}
		async.Await(c, r.Resolve("sip:"+c.Recipient().Host), func(ts []dns.Target, err error) {
			if err != nil { // dns.KindOf(err): nxdomain, timeout, servfail, overloaded…
				c.Reply(503, "DNS failure")
				return
			}
			if err := dns.Failover(c, ts); err != nil {
				c.Reply(503, "No reachable target")
			}
		}, async.Timeout(3*time.Second))
	})
	srv.Failure(func(c *tm.Context) {
		dns.FailoverNext(c) // 503 or 408: the next target, in RFC 3263 order
	})
	_ = srv // srv.Serve(ctx)
}

// Resolving a URI with a DNS server started here (127.0.0.1): no NAPTR
// records, so the SRV records of each transport are used, in priority
// order.
func ExampleResolver_Resolve() {
	records := map[string][]string{
		"_sip._udp.example.test. SRV": {
			"_sip._udp.example.test. 60 IN SRV 20 1 5080 backup.example.test.",
			"_sip._udp.example.test. 60 IN SRV 10 1 5070 main.example.test.",
		},
		"main.example.test. A":   {"main.example.test. 60 IN A 192.0.2.10"},
		"backup.example.test. A": {"backup.example.test. 60 IN A 192.0.2.20"},
	}
	pc, _ := net.ListenPacket("udp", "127.0.0.1:0")
	server := &mdns.Server{PacketConn: pc, Handler: mdns.HandlerFunc(func(w mdns.ResponseWriter, q *mdns.Msg) {
		m := new(mdns.Msg)
		m.SetReply(q)
		for _, s := range records[q.Question[0].Name+" "+mdns.TypeToString[q.Question[0].Qtype]] {
			rr, _ := mdns.NewRR(s)
			m.Answer = append(m.Answer, rr)
		}
		w.WriteMsg(m)
	})}
	go server.ActivateAndServe()
	defer server.Shutdown()

	r, _ := dns.NewResolver(dns.Config{Servers: []string{pc.LocalAddr().String()}, IPv4Only: true, Transports: []string{"udp"}})
	defer r.Close(context.Background())
	l, _ := reactor.New(reactor.Config{})
	l.Start()
	defer l.Stop(context.Background())

	got := make(chan []dns.Target)
	l.Post(func() {
		async.Launch(l, r.Resolve("sip:alice@example.test"), func(ts []dns.Target, err error) {
			if err != nil {
				fmt.Println(err)
			}
			got <- ts
		})
	})
	for _, t := range <-got {
		fmt.Println(t.Host, t.URI())
	}
	// Output:
	// main.example.test sip:192.0.2.10:5070
	// backup.example.test sip:192.0.2.20:5080
}
