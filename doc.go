// Package asyncsip is the facade that wires event loops, transports, the
// transaction layer and your routes into a running SIP proxy.
//
// Routes are Go functions that receive a *tm.Context. A route may reply,
// relay, forward, drop, or await an asynchronous operation (package async);
// while it waits, the worker serves other traffic.
//
//	srv, err := asyncsip.New(asyncsip.Config{Listen: []string{"udp:127.0.0.1:5060"}})
//	if err != nil { ... }
//	srv.Request(func(c *tm.Context) {
//		async.Await(c, async.Sleep(20*time.Millisecond), func(struct{}, error) {
//			c.Relay()
//		})
//	})
//	err = srv.Serve(ctx) // until ctx ends; then drains and stops
//
// Next hops named by a host ("sip:bob@gw.example.com") are resolved by
// RFC 3263 (NAPTR, SRV, A/AAAA) through the resolver of modules/dns, with
// the nameservers of /etc/resolv.conf and a TTL cache: Relay suspends the
// route while a lookup runs, so no loop blocks on DNS. A name that does not
// exist answers 404, a DNS timeout or failure 503. Config.DNS chooses the
// servers and timeouts, a cache-only mode or none; Config.Core.Lookup
// replaces it; Server.DNS returns it for routes that want every target.
//
// The facade only wires: the transports are package transport, the
// transaction layer's settings are Config.Core (a tm.Config, passed as it
// is), and what lives as long as the server — Prometheus metrics from
// modules/metrics, for one — is an Extension in Config.Extensions, so that
// importing this package links no module.
package asyncsip
