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
package asyncsip
