package tm_test

import (
	"fmt"
	"net/netip"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/asyncsip/asyncsip/async"
	"github.com/asyncsip/asyncsip/reactor"
	"github.com/asyncsip/asyncsip/tm"
)

// gateway is an in-memory transport whose peer answers every request 200,
// standing in for a UDP socket and a SIP gateway.
type gateway struct {
	srv  *tm.Server
	l    *reactor.Loop
	addr netip.AddrPort
}

func (g *gateway) Send(_ *reactor.Loop, b []byte, to netip.AddrPort) error {
	msg, err := sip.ParseMessage(append([]byte(nil), b...))
	if err != nil {
		return err
	}
	if req, ok := msg.(*sip.Request); ok {
		resp := sip.NewResponseFromRequest(req, 200, "OK", nil)
		return g.l.Post(func() { g.srv.Receive(g.l, []byte(resp.String()), to, g) })
	}
	return nil
}
func (g *gateway) Protocol() string          { return "UDP" }
func (g *gateway) Advertised() (string, int) { return "192.0.2.1", 5060 }
func (g *gateway) LocalAddr() netip.AddrPort { return g.addr }

// An OPTIONS probe from a timer job, the way a dispatcher checks its
// gateways: the op runs the client transaction (retransmissions, Timer F)
// and reports the final response on the job's loop.
func ExampleServer_Send() {
	clock := reactor.NewFakeClock(time.Unix(0, 0))
	group := reactor.NewManualGroup(1, clock) // asyncsip.Server.Group() in a real proxy
	srv := tm.NewServer(group.Loops(), tm.Config{}, tm.Routes{})
	srv.AddTransport(&gateway{srv: srv, l: group.Loop(0), addr: netip.MustParseAddrPort("192.0.2.1:5060")})

	probe := func(l *reactor.Loop) {
		req, err := srv.NewRequest(tm.OutOfDialog{Method: sip.OPTIONS, Target: "sip:gw1@192.0.2.10"})
		if err != nil {
			fmt.Println(err)
			return
		}
		async.Launch(l, srv.Send(req, tm.SendOptions{Timeout: 5 * time.Second}), func(resp *sip.Response, err error) {
			if err != nil { // tm.ErrOriginatedTimeout: no answer within 5 s
				fmt.Println("gw1 down:", err)
				return
			}
			fmt.Println("gw1 answered", resp.StatusCode)
		}, async.Timeout(10*time.Second))
	}
	job, _ := group.Every(30*time.Second, probe, reactor.Skip)
	defer job.Stop()

	group.Loop(0).Advance(30 * time.Second) // a manual loop: time moves by hand
	group.Loop(0).RunPending()
	// Output: gw1 answered 200
}
