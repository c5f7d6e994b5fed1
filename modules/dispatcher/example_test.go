package dispatcher_test

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/asyncsip/asyncsip"
	"github.com/asyncsip/asyncsip/modules/dispatcher"
	"github.com/asyncsip/asyncsip/reactor"
	"github.com/asyncsip/asyncsip/tm"
)

// A load balancer: calls go to two gateways, two thirds to the first; a
// gateway that fails (503, 408) hands the call to the other; a gateway that
// stops answering OPTIONS, or answers them 5xx, is taken out after three
// probes and brought back after two.
func Example_route() {
	d, err := dispatcher.New(dispatcher.Config{
		Sets: []dispatcher.SetConfig{{ID: "gw", Algorithm: dispatcher.Weighted, Targets: []dispatcher.Target{
			{URI: "sip:192.0.2.10:5060", Weight: 2},
			{URI: "sip:192.0.2.11:5060", Weight: 1},
		}}},
		Probe: dispatcher.ProbeConfig{Interval: 5 * time.Second, FailureCodes: []int{5}},
	})
	if err != nil {
		panic(err)
	}
	srv, err := asyncsip.New(asyncsip.Config{Listen: []string{"udp:0.0.0.0:5060"}})
	if err != nil {
		panic(err)
	}
	srv.SetRoutes(tm.Routes{
		Request: func(c *tm.Context) {
			_ = d.Relay(c, "gw") // 503 when no gateway is up
		},
		Failure: func(c *tm.Context) {
			if code := c.Resp.StatusCode; code == 408 || code >= 500 {
				_ = d.RelayNext(c) // the next live gateway, 503 when none is left
			}
		},
	})
	if err := srv.Start(); err != nil {
		panic(err)
	}
	prober, err := d.Start(srv.Core(), srv.Group())
	if err != nil {
		panic(err)
	}
	defer prober.Stop()
	// Later, from an admin API, while calls are routed:
	_ = d.AddTarget("gw", dispatcher.Target{URI: "sip:192.0.2.12:5060", Weight: 1})
	_ = d.RemoveTarget("gw", "sip:192.0.2.11:5060")
	_ = srv.Serve(context.Background())
}

func ExampleLoadSets() {
	sets, err := dispatcher.LoadSets(strings.NewReader(`[
	  {"id": "pstn", "algorithm": "priority", "targets": [
	    {"uri": "sip:198.51.100.1", "priority": 1, "attrs": {"carrier": "a"}},
	    {"uri": "198.51.100.2:5080", "priority": 2, "attrs": {"carrier": "b"}}]}]`))
	if err != nil {
		panic(err)
	}
	d, err := dispatcher.New(dispatcher.Config{Sets: sets})
	if err != nil {
		panic(err)
	}
	for _, t := range d.Targets() {
		fmt.Println(t.Set, t.URI, t.Priority, t.Attrs["carrier"], t.Up)
	}
	// Output:
	// pstn sip:198.51.100.1 1 a true
	// pstn sip:198.51.100.2:5080 2 b true
}

// gateway is an in-memory transport whose peer answers every request with
// code, standing in for a UDP socket and a gateway.
type gateway struct {
	srv  *tm.Server
	l    *reactor.Loop
	code int
}

func (g *gateway) Send(_ *reactor.Loop, b []byte, to netip.AddrPort) error {
	msg, err := sip.ParseMessage(append([]byte(nil), b...))
	if err != nil {
		return err
	}
	if req, ok := msg.(*sip.Request); ok {
		resp := sip.NewResponseFromRequest(req, g.code, "Service Unavailable", nil)
		return g.l.Post(func() { g.srv.Receive(g.l, []byte(resp.String()), to, g) })
	}
	return nil
}
func (g *gateway) Protocol() string          { return "UDP" }
func (g *gateway) Advertised() (string, int) { return "192.0.2.1", 5060 }
func (g *gateway) LocalAddr() netip.AddrPort { return netip.MustParseAddrPort("192.0.2.1:5060") }

// Probing on a manual loop: the gateway answers OPTIONS 503, a failure
// code here, so it is taken down after two probes.
func ExampleDispatcher_Start() {
	clock := reactor.NewFakeClock(time.Unix(0, 0))
	group := reactor.NewManualGroup(1, clock) // asyncsip.Server.Group() in a real proxy
	srv := tm.NewServer(group.Loops(), tm.Config{}, tm.Routes{})
	srv.AddTransport(&gateway{srv: srv, l: group.Loop(0), code: 503})

	d, _ := dispatcher.New(dispatcher.Config{
		Sets:     []dispatcher.SetConfig{{ID: "gw", Targets: []dispatcher.Target{{URI: "sip:192.0.2.10"}}}},
		Probe:    dispatcher.ProbeConfig{Interval: 10 * time.Second, FailAfter: 2, FailureCodes: []int{5}},
		Observer: printer{},
	})
	prober, _ := d.Start(srv, group)
	defer prober.Stop()
	for i := 0; i < 2; i++ {
		group.Loop(0).Advance(10 * time.Second) // a manual loop: time moves by hand
		group.Loop(0).RunPending()
	}
	fmt.Println(d.Up("sip:192.0.2.10"), d.Stats().ProbesFailed)
	// Output:
	// probe of sip:192.0.2.10 ok=false
	// probe of sip:192.0.2.10 ok=false
	// sip:192.0.2.10 down: 2 probes failed in a row, last: 503 Service Unavailable
	// false 2
}

type printer struct{}

func (printer) Probed(uri string, ok bool) { fmt.Printf("probe of %s ok=%v\n", uri, ok) }
func (printer) StateChanged(c dispatcher.Change) {
	state := "up"
	if !c.Up {
		state = "down"
	}
	fmt.Printf("%s %s: %s\n", c.URI, state, c.Reason)
}
