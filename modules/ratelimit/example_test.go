package ratelimit_test

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	"github.com/asyncsip/asyncsip"
	"github.com/asyncsip/asyncsip/modules/ratelimit"
	"github.com/asyncsip/asyncsip/tm"
)

// The first step of a request route: floods and scanners are dropped
// without an answer, before any other work.
func Example_route() {
	srv, err := asyncsip.New(asyncsip.Config{Listen: []string{"udp:0.0.0.0:5060"}})
	if err != nil {
		panic(err)
	}
	rl := ratelimit.New(ratelimit.Config{
		Rate:   20,                                                    // requests per second per source IP
		Burst:  40,                                                    // at once
		BanFor: time.Minute,                                           // then nothing for a minute
		Exempt: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}, // our trunks
	})
	srv.Request(func(c *tm.Context) {
		if !rl.Check(c) || ratelimit.IsScanner(c.Req()) {
			c.Drop()
			return
		}
		_ = c.Relay()
	})
	if err := srv.Start(); err != nil {
		panic(err)
	}
	job, _ := rl.Start(srv.Group()) // forgets idle sources
	defer job.Stop()
	_ = srv.Serve(context.Background())
}

// Allow on its own: a burst of 3, then a ban of 10 s.
func ExampleLimiter_Allow() {
	now := time.Unix(0, 0)
	rl := ratelimit.New(ratelimit.Config{Rate: 1, Burst: 3, BanFor: 10 * time.Second,
		Now: func() time.Time { return now }})
	ip := netip.MustParseAddr("198.51.100.7")
	for i := 0; i < 5; i++ {
		fmt.Print(rl.Allow(ip), " ")
	}
	now = now.Add(11 * time.Second)
	fmt.Println(rl.Allow(ip), rl.Stats().Bans)
	// Output: true true true false false true 1
}

func ExampleIsScannerAgent() {
	fmt.Println(ratelimit.IsScannerAgent("friendly-scanner"), ratelimit.IsScannerAgent("Asterisk PBX 20"))
	// Output: true false
}
