package async_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/asyncsip/asyncsip/async"
	"github.com/asyncsip/asyncsip/reactor"
)

// route is a stand-in for tm.Context: the smallest Suspender.
type route struct {
	l    *reactor.Loop
	live bool
}

func (r *route) Loop() *reactor.Loop { return r.l }

func (r *route) Suspend() (async.Resumer, error) { r.live = true; return r, nil }

func (r *route) Resume(fn func()) bool {
	if !r.live {
		return false
	}
	r.live = false
	fn()
	return true
}

func (r *route) OnAbort(func()) {}

// A route awaits a blocking lookup run on a pool; the loop stays free and
// the route continues when the result is posted back.
func ExampleAwait() {
	l, _ := reactor.New(reactor.Config{})
	l.Start()
	defer l.Stop(context.Background())
	pool := async.NewPool(async.PoolConfig{Workers: 8})
	defer pool.Close(context.Background())

	done := make(chan struct{})
	_ = l.Post(func() { // a request route, on the loop
		c := &route{l: l}
		lookup := async.Blocking(func(ctx context.Context) (string, error) {
			return "sip:gw1.example.net", nil // database/sql, net/http, ...
		}, async.OnPool(pool), async.Name("lcr"))
		async.Await(c, lookup, func(gw string, err error) { // later, same loop
			defer close(done)
			if err != nil {
				fmt.Println("503:", err)
				return
			}
			fmt.Println("relay to", gw)
		}, async.Timeout(2*time.Second))
	})
	<-done
	// Output: relay to sip:gw1.example.net
}

// Awaits time out: the op is cancelled and the resume gets ErrTimeout.
// A manual loop makes time move only when told to.
func ExampleTimeout() {
	l := reactor.NewManual(nil)
	c := &route{l: l}
	async.Await(c, async.Sleep(time.Minute), func(_ struct{}, err error) {
		fmt.Println(errors.Is(err, async.ErrTimeout), err)
	}, async.Timeout(time.Second), async.Name("slow"))
	l.Advance(time.Second)
	// Output: true slow after 1s: async: timeout
}

// Launch runs an op that no transaction waits for; the report runs even when
// the op completes at once.
func ExampleLaunch() {
	l := reactor.NewManual(nil)
	async.Launch(l, async.Done(42, nil), func(v int, err error) {
		fmt.Println("report:", v, err)
	})
	// Output: report: 42 <nil>
}
