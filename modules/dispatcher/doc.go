// Package dispatcher balances calls over sets of destinations and keeps
// dead destinations out with OPTIONS probing — what Kamailio's and
// OpenSIPS's dispatcher modules do, for asyncsip routes.
//
// A Dispatcher holds destination sets (an id, an algorithm, targets with
// a weight, a priority and attributes). A route selects a target of a set
// for each new call and relays there; the failure route fails over to the
// next live target; a probing job takes targets that stop answering out
// and brings them back:
//
//	d, _ := dispatcher.New(dispatcher.Config{
//		Sets: []dispatcher.SetConfig{{ID: "gw", Algorithm: dispatcher.Weighted, Targets: []dispatcher.Target{
//			{URI: "sip:10.0.0.1:5060", Weight: 2}, {URI: "sip:10.0.0.2:5060", Weight: 1},
//		}}},
//		Probe: dispatcher.ProbeConfig{Interval: 5 * time.Second, FailureCodes: []int{5}},
//	})
//	srv.Request(func(c *tm.Context) { _ = d.Relay(c, "gw") })     // 503 when none is up
//	srv.Failure(func(c *tm.Context) {
//		if code := c.Resp.StatusCode; code == 408 || code >= 500 {
//			_ = d.RelayNext(c) // serial failover, 503 when none is left
//		}
//	})
//	prober, _ := d.Start(srv.Core(), srv.Group())
//	defer prober.Stop()
//
// Sets change at runtime (Replace, SetSet, AddTarget, UpdateTarget,
// RemoveTarget) from any goroutine: selection reads an immutable snapshot
// swapped atomically, so it takes no lock, and a target removed gets no
// call selected after the change. Targets, Stats and an Observer expose
// each target's state and the probe counters. See README.md for the
// algorithms, the probing semantics and their cost.
package dispatcher
