// Package siptest unit-tests asyncsip routes as plain Go functions, the way
// net/http/httptest tests handlers: build a request, send it through the
// real transaction layer, and look at what the proxy did.
//
//	func TestRoute(t *testing.T) {
//		h := siptest.NewHarness(t, route) // route is a func(*tm.Context)
//		res := h.Send(siptest.NewRequest("INVITE", "sip:+15551234@example.com"))
//		siptest.AssertRelayedTo(t, res, "sip:+15551234@10.0.0.2")
//		res.Branch(0).Respond(486)           // the gateway is busy
//		siptest.AssertReplied(t, res, 486)
//	}
//
// A Harness runs tm.NewServer — the same code as production — on a manual
// reactor loop with a fake clock, over an in-memory transport: no socket,
// no sleep. Every driver (Send, Relayed.Respond, Await.Complete,
// Clock.Advance) runs the loop until it is idle, so when it returns the
// Result shows everything the routes did: the responses sent upstream
// (Replies, LastReply), the requests relayed or forwarded downstream
// (Relayed, Forwarded, with the proxy's Via, Record-Route and Max-Forwards),
// drops, and the awaits.
//
// # Awaits
//
// An async.Await in a route is intercepted (tm.Config.Intercept): the op
// is not started, the transaction suspends as in production (100 Trying,
// retransmissions absorbed), and the test decides what happens —
//
//	res.Await(0).Complete("sip:gw1@10.0.0.1", nil) // the op's result
//	res.Await(0).Fail(db.ErrUnavailable)            // the op's error
//	h.Clock.Advance(3 * time.Second)                 // the await times out
//
// — or fakes answer (see Fake): each module's typed fake, next to it
// (modules/db/dbtest, modules/rest/resttest, modules/exec/exectest), or
// Answers for a route's own ops, by name:
//
//	lcr := dbtest.New()
//	lcr.On("SELECT gw FROM lcr WHERE prefix = ?").WithArgs("1555").Rows([]string{"gw"}, []any{"10.0.0.1"})
//	h := siptest.NewHarness(t, route, siptest.WithFakes(lcr, siptest.Answers{"score": {Value: 0.1}}))
//
// async.Sleep and async.Done run as they are (on the fake clock); other
// ops can be let through with WithPassThrough (loop-only ops) or
// WithRealOps (real blocking calls, waited for in real time).
//
// Requests are built with NewRequest, NewRegister, NewBye, NewCancel,
// NewAck and Dialog, which fill every mandatory header.
//
// # In-dialog requests
//
// tm follows an in-dialog request (To tag) only along the Record-Route it
// signed for the dialog, and refuses any other 403 before a route runs. A
// test sends one as a UA would after a call through the proxy: build it
// with Dialog from the INVITE and its 2xx, or add the proxy's signed Route
// with Harness.InDialog:
//
//	bye := h.Send(h.InDialog(siptest.NewBye("sip:bob@10.0.0.2:5060")))
//	siptest.AssertRelayedTo(t, bye, "sip:bob@10.0.0.2:5060")
//
// # Originated requests
//
// Requests the proxy sends on its own (tm.Server.Send: a probe from a timer
// job, a BYE, a NOTIFY awaited by a route) go out as in production and are
// listed by Harness.Originated; the test answers them as the next hop:
//
//	h.Run(func(l *reactor.Loop) { async.Launch(l, h.Server.Send(req, tm.SendOptions{}), report) })
//	h.Originated()[0].Respond(200)
//
// Timer jobs run on Harness.Group as the clock advances.
//
// # Replies
//
// AssertReplies and Result.Replies see the distinct responses
// sent upstream: a response sent again — for a retransmitted request, or
// by Timer G as Clock.Advance fires it — counts once. AssertRepliesOnWire
// sees every copy. 100 Trying goes out only when a route relays or
// suspends an INVITE, so a route that replies at once sends none:
//
//	siptest.AssertReplies(t, res, []int{486})            // the route's answer
//	siptest.AssertRepliesOnWire(t, res, []int{486, 486}) // and its retransmission
package siptest
