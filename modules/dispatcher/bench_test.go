package dispatcher_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/asyncsip/asyncsip/modules/dispatcher"
	"github.com/asyncsip/asyncsip/reactor"
	"github.com/asyncsip/asyncsip/siptest"
	"github.com/asyncsip/asyncsip/tm"
)

// BenchmarkProbeRound is the cost of probing: one interval's probes of 100
// targets, each answered 200 by an in-memory gateway on one manual loop
// (the gateway's parse and answer included). ns/probe is the figure.
func BenchmarkProbeRound(b *testing.B) {
	const n = 100
	clock := reactor.NewFakeClock(time.Unix(0, 0))
	group := reactor.NewManualGroup(1, clock)
	srv := tm.NewServer(group.Loops(), tm.Config{}, tm.Routes{})
	srv.AddTransport(&gateway{srv: srv, l: group.Loop(0), code: 200})
	ts := make([]dispatcher.Target, n)
	for i := range ts {
		ts[i] = dispatcher.Target{URI: fmt.Sprintf("sip:10.0.%d.%d:5060", i/250, 1+i%250)}
	}
	d, err := dispatcher.New(dispatcher.Config{
		Sets:  []dispatcher.SetConfig{{ID: "gw", Targets: ts}},
		Probe: dispatcher.ProbeConfig{Interval: time.Second, Slices: 1},
	})
	if err != nil {
		b.Fatal(err)
	}
	p, err := d.Start(srv, group)
	if err != nil {
		b.Fatal(err)
	}
	defer p.Stop()
	l := group.Loop(0)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		l.Advance(time.Second)
		l.RunPending()
	}
	b.StopTimer()
	st := d.Stats()
	if st.ProbesFailed != 0 || st.ProbesSent != uint64(n*b.N) {
		b.Fatalf("stats %+v after %d rounds", st, b.N)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(n*b.N), "ns/probe")
}

// BenchmarkRelay is one MESSAGE relayed and answered 200 through the siptest
// harness (the real tm on one manual loop, in-memory transport), plainly
// and through the dispatcher: the difference is what Select costs in a
// real transaction.
func BenchmarkRelay(b *testing.B) {
	d, err := dispatcher.New(dispatcher.Config{Sets: []dispatcher.SetConfig{{ID: "gw", Targets: targets(1, 1, 1, 1)}}})
	if err != nil {
		b.Fatal(err)
	}
	for name, route := range map[string]func(c *tm.Context){
		"plain":      func(c *tm.Context) { _ = c.Relay("sip:svc@10.0.0.1:5060") },
		"dispatcher": func(c *tm.Context) { _ = d.Relay(c, "gw") },
	} {
		b.Run(name, func(b *testing.B) {
			h := siptest.NewHarness(b, route)
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				res := h.Send(siptest.NewRequest("MESSAGE", "sip:svc@example.com"))
				res.Branch(0).Respond(200)
			}
		})
	}
}
