// Package dns resolves SIP URIs to next hops as RFC 3263 describes
// (NAPTR → SRV → A/AAAA), as async ops, so that a slow or dead DNS server
// never blocks a reactor loop.
//
// Resolve returns an async.Op: a route awaits it, relays to the first
// target and keeps the rest for its failure route, which relays to the next
// one on 503 or timeout (serial forking):
//
//	r, _ := dns.NewResolver(dns.Config{})
//	srv.Request(func(c *tm.Context) {
//		async.Await(c, r.Resolve("sip:example.com"), func(ts []dns.Target, err error) {
//			if err != nil {
//				c.Reply(503, "DNS failure")
//				return
//			}
//			dns.Failover(c, ts) // relays to ts[0], keeps the rest for Failure
//		})
//	})
//	srv.Failure(func(c *tm.Context) { dns.FailoverNext(c) })
//
// Answers are cached per resolver (TTL, clamped; negative answers too); a
// resolution that the cache answers completes synchronously, without
// suspending. Lookup is the cache-only, synchronous form for
// tm.Config.Resolver.
package dns
