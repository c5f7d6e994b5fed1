package shared_test

import (
	"fmt"
	"time"

	"github.com/asyncsip/asyncsip/async"
	"github.com/asyncsip/asyncsip/modules/shared"
	"github.com/asyncsip/asyncsip/reactor"
)

// Two instances share one counter: a trunk limit of 2 holds over both, and
// an instance whose heartbeat stops stops counting. sharedredis gives the
// same behaviour with the instances in different processes.
func ExampleMemoryCounter() {
	l := reactor.NewManual(nil) // in a server: the route's loop (async.Await)
	run := func(op async.Op[shared.Acquired]) {
		async.Launch(l, op, func(a shared.Acquired, err error) { fmt.Println(a.OK, a.Total, err) })
	}
	ctr := shared.NewMemoryCounter()
	a, b := ctr.For("proxy-a", time.Minute), ctr.For("proxy-b", time.Minute)
	run(a.Acquire("trunk/gw1", 2))
	run(b.Acquire("trunk/gw1", 2))
	run(a.Acquire("trunk/gw1", 2)) // a third call, on either instance: refused
	async.Launch(l, b.Release("trunk/gw1"), func(n int, _ error) { fmt.Println("after a release:", n) })
	// Output:
	// true 1 <nil>
	// true 2 <nil>
	// false 2 <nil>
	// after a release: 1
}
