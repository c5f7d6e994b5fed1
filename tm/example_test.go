package tm_test

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/asyncsip/asyncsip/async"
	"github.com/asyncsip/asyncsip/reactor"
	"github.com/asyncsip/asyncsip/tm"
)

// wire is an in-memory tm.Transport for the examples: it notes what the
// server sends (destination and first line) and keeps the last request, so
// that the example can answer it as a callee would.
type wire struct {
	sent []string
	last *sip.Request
}

func (w *wire) Send(_ *reactor.Loop, b []byte, to netip.AddrPort) error {
	msg, err := sip.ParseMessage(append([]byte(nil), b...))
	if err != nil {
		return err
	}
	switch m := msg.(type) {
	case *sip.Request:
		w.last = m
		w.sent = append(w.sent, fmt.Sprintf("%s: %s %s", to, m.Method, m.Recipient.String()))
	case *sip.Response:
		w.sent = append(w.sent, fmt.Sprintf("%s: %d %s", to, m.StatusCode, m.Reason))
	}
	return nil
}
func (w *wire) Protocol() string          { return "UDP" }
func (w *wire) Advertised() (string, int) { return "192.0.2.1", 5060 }
func (w *wire) LocalAddr() netip.AddrPort { return netip.MustParseAddrPort("192.0.2.1:5060") }

// print prints what was sent since the last print.
func (w *wire) print() {
	for _, s := range w.sent {
		fmt.Println("sent to", s)
	}
	w.sent = w.sent[:0]
}

// caller is where the examples' requests come from.
var caller = netip.MustParseAddrPort("192.0.2.7:5060")

// request is a caller's request as it arrives on the wire.
func request(method, ruri string) []byte {
	return []byte(strings.NewReplacer("METHOD", method, "RURI", ruri, "\n", "\r\n").Replace(`METHOD RURI SIP/2.0
Via: SIP/2.0/UDP 192.0.2.7:5060;branch=z9hG4bK-METHOD-1
Max-Forwards: 70
From: <sip:alice@example.com>;tag=a1
To: <RURI>
Call-ID: example-METHOD
CSeq: 1 METHOD
Contact: <sip:alice@192.0.2.7:5060>
Content-Length: 0

`))
}

// answer is the callee's response to the request the proxy relayed.
func answer(req *sip.Request, code int) []byte {
	resp := sip.NewResponseFromRequest(req, code, tm.StatusText(code), nil)
	if code > 100 {
		resp.To().Params.Add("tag", "b1")
	}
	return []byte(resp.String())
}

// A stateful relay: the request route picks the target; tm sends 100
// Trying, the INVITE with its Via and signed Record-Route, and relays the
// callee's answers upstream (here on a manual loop, which runs only when
// told to, with an in-memory transport standing in for a UDP socket).
func ExampleContext_Relay() {
	group := reactor.NewManualGroup(1, reactor.NewFakeClock(time.Unix(0, 0)))
	l := group.Loop(0)
	tp := &wire{}
	srv := tm.NewServer(group.Loops(), tm.Config{}, tm.Routes{
		Request: func(c *tm.Context) {
			if err := c.Relay("sip:bob@192.0.2.20:5060"); err != nil {
				_ = c.Reply(500, "") // nothing was sent: the route decides
			}
		},
	})
	srv.AddTransport(tp)

	srv.Receive(l, request("INVITE", "sip:bob@example.com"), caller, tp)
	l.RunPending()
	callee := netip.MustParseAddrPort("192.0.2.20:5060")
	srv.Receive(l, answer(tp.last, 180), callee, tp)
	srv.Receive(l, answer(tp.last, 200), callee, tp)
	l.RunPending()
	tp.print()
	// Output:
	// sent to 192.0.2.7:5060: 100 Trying
	// sent to 192.0.2.20:5060: INVITE sip:bob@192.0.2.20:5060
	// sent to 192.0.2.7:5060: 180 Ringing
	// sent to 192.0.2.7:5060: 200 OK
}

// A route that answers itself: Reply sends a response upstream from the
// request route (or the failure route), Drop sends nothing at all.
func ExampleContext_Reply() {
	group := reactor.NewManualGroup(1, reactor.NewFakeClock(time.Unix(0, 0)))
	l := group.Loop(0)
	tp := &wire{}
	srv := tm.NewServer(group.Loops(), tm.Config{}, tm.Routes{
		Request: func(c *tm.Context) {
			switch c.Method() {
			case sip.OPTIONS:
				_ = c.Reply(200, "OK", sip.NewHeader("Allow", "INVITE, ACK, CANCEL, BYE, OPTIONS"))
			case sip.REGISTER:
				_ = c.Reply(403, "Registrations Not Accepted Here")
			default:
				c.Drop()
			}
		},
	})
	srv.AddTransport(tp)

	srv.Receive(l, request("OPTIONS", "sip:192.0.2.1"), caller, tp)
	srv.Receive(l, request("REGISTER", "sip:example.com"), netip.MustParseAddrPort("192.0.2.8:5060"), tp)
	srv.Receive(l, request("SUBSCRIBE", "sip:bob@example.com"), netip.MustParseAddrPort("192.0.2.9:5060"), tp)
	l.RunPending()
	tp.print() // nothing for the SUBSCRIBE
	// Output:
	// sent to 192.0.2.7:5060: 200 OK
	// sent to 192.0.2.8:5060: 403 Registrations Not Accepted Here
}

// A reply route runs for each response a branch receives (100 excepted),
// with c.Resp the response and c.Branch() its branch. It may drop a
// provisional response; what it does not drop is relayed upstream as RFC
// 3261 §16.7 says (a final response cannot be dropped).
func ExampleRoutes_reply() {
	group := reactor.NewManualGroup(1, reactor.NewFakeClock(time.Unix(0, 0)))
	l := group.Loop(0)
	tp := &wire{}
	srv := tm.NewServer(group.Loops(), tm.Config{}, tm.Routes{
		Request: func(c *tm.Context) { _ = c.Relay("sip:bob@192.0.2.20:5060") },
		Reply: func(c *tm.Context) {
			fmt.Println("branch", c.Branch().Index, "got", c.Resp.StatusCode)
			if c.Resp.StatusCode == 183 && len(c.Resp.Body()) == 0 {
				c.Drop() // a 183 without SDP tells the caller nothing
			}
		},
	})
	srv.AddTransport(tp)

	srv.Receive(l, request("INVITE", "sip:bob@example.com"), caller, tp)
	l.RunPending()
	tp.print()
	callee := netip.MustParseAddrPort("192.0.2.20:5060")
	for _, code := range []int{183, 180, 200} {
		srv.Receive(l, answer(tp.last, code), callee, tp)
		l.RunPending()
	}
	tp.print()
	// Output:
	// sent to 192.0.2.7:5060: 100 Trying
	// sent to 192.0.2.20:5060: INVITE sip:bob@192.0.2.20:5060
	// branch 0 got 183
	// branch 0 got 180
	// branch 0 got 200
	// sent to 192.0.2.7:5060: 180 Ringing
	// sent to 192.0.2.7:5060: 200 OK
}

// errNotFound is the location service's "no such user".
var errNotFound = errors.New("location: no binding")

// lookup stands in for an asynchronous location query (a database or a
// REST call): it completes 20 ms later on the loop that started it.
func lookup(user string) async.Op[string] {
	return async.OpFunc[string](func(l *reactor.Loop, done func(string, error)) func() {
		t := l.AfterFunc(20*time.Millisecond, func() {
			if user != "bob" {
				done("", errNotFound)
				return
			}
			done("sip:bob@192.0.2.20:5060", nil)
		})
		return func() { t.Stop() }
	})
}

// A route that waits for I/O: async.Await suspends the Context (tm sends
// 100 Trying for an INVITE), the loop serves other traffic, and the resume
// runs later on the same loop as the rest of the route, with the request
// and everything the route set before it.
func ExampleContext_Suspend() {
	clock := reactor.NewFakeClock(time.Unix(0, 0))
	group := reactor.NewManualGroup(1, clock)
	l := group.Loop(0)
	tp := &wire{}
	srv := tm.NewServer(group.Loops(), tm.Config{}, tm.Routes{
		Request: func(c *tm.Context) {
			async.Await(c, lookup(c.Req().Recipient.User), func(target string, err error) {
				switch {
				case errors.Is(err, errNotFound):
					_ = c.Reply(404, "")
				case err != nil: // async.ErrTimeout after 2 s, the op cancelled
					_ = c.Reply(503, "")
				default:
					_ = c.Relay(target)
				}
			}, async.Timeout(2*time.Second))
		},
	})
	srv.AddTransport(tp)

	srv.Receive(l, request("INVITE", "sip:bob@example.com"), caller, tp)
	l.RunPending()
	tp.print()
	fmt.Println("suspended:", srv.Stats().Suspended)
	l.Advance(20 * time.Millisecond) // the lookup completes; the route resumes
	tp.print()
	fmt.Println("suspended:", srv.Stats().Suspended)
	// Output:
	// sent to 192.0.2.7:5060: 100 Trying
	// suspended: 1
	// sent to 192.0.2.20:5060: INVITE sip:bob@192.0.2.20:5060
	// suspended: 0
}

// A unit test of a route on tm's manual loop: no socket, no sleep. Time
// moves only with Advance, so Timer E's retransmissions and Timer F
// (64·T1 = 32 s) fire on demand, and the failure route's serial fork to a
// backup gateway is checked at once.
// Package siptest wraps this pattern (a Harness with builders and a
// recorder) for tests of real routes.
func ExampleServer_Receive() {
	clock := reactor.NewFakeClock(time.Unix(0, 0))
	group := reactor.NewManualGroup(1, clock)
	l := group.Loop(0)
	tp := &wire{}
	srv := tm.NewServer(group.Loops(), tm.Config{}, tm.Routes{
		Request: func(c *tm.Context) { _ = c.Relay("sip:gw1@192.0.2.31") },
		Failure: func(c *tm.Context) {
			if c.Resp.StatusCode == 408 && len(c.Branches()) == 1 {
				_ = c.Relay("sip:gw2@192.0.2.32") // serial forking
			}
		},
	})
	srv.AddTransport(tp)

	srv.Receive(l, request("MESSAGE", "sip:bob@example.com"), caller, tp)
	l.RunPending()
	tp.print()
	l.Advance(32 * time.Second) // Timer F: gw1 never answered; Timer E resent it meanwhile
	fmt.Println("sent to gw1 again:", len(tp.sent)-1)
	tp.sent = tp.sent[len(tp.sent)-1:]
	tp.print()
	srv.Receive(l, answer(tp.last, 202), netip.MustParseAddrPort("192.0.2.32:5060"), tp)
	l.RunPending()
	tp.print()
	// Output:
	// sent to 192.0.2.31:5060: MESSAGE sip:gw1@192.0.2.31
	// sent to gw1 again: 10
	// sent to 192.0.2.32:5060: MESSAGE sip:gw2@192.0.2.32
	// sent to 192.0.2.7:5060: 202 Accepted
}
