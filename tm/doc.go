// Package tm is the SIP transaction layer and proxy core of asyncsip: RFC
// 3261 transactions (§17, with RFC 6026's Accepted state) and a stateful
// proxy (§16) whose decisions are made by routes the user writes.
//
// A Server runs on the event loops of a reactor.Group. Every message is
// parsed by the loop that reads it and handled on the loop that owns its
// Call-ID, so a transaction, its Context and its timers are touched by one
// goroutine and need no lock. The root package asyncsip builds a Server
// with its sockets; NewServer, AddTransport and Receive are for building
// one from parts.
//
// # Routes
//
// Routes holds the user's functions: Screen first for each new request,
// Request for each new request it lets through, Reply for each branch
// response, Failure when every branch failed, Branch before each branch is
// sent, End once per transaction. A route gets a *Context and ends the
// request in one of these ways:
//
//	srv := tm.NewServer(group.Loops(), tm.Config{}, tm.Routes{
//		Request: func(c *tm.Context) {
//			switch {
//			case c.InDialog():
//				_ = c.Relay() // along our signed Record-Route
//			case c.Req.Method == sip.REGISTER:
//				_ = c.Reply(403, "Forbidden")
//			default:
//				_ = c.Relay("sip:bob@192.0.2.10") // a target of the route's choice
//			}
//		},
//	})
//
// Reply answers, Relay forwards statefully (parallel targets fork; in the
// failure route, serial forking), Forward forwards without a transaction,
// Drop ends the request silently. A route that does none of them gets
// Config.AbandonCode. When Relay fails nothing was sent: the route decides,
// else the failure is answered with the fitting code (403, 404, 481, 482,
// 503…).
//
// # Screening
//
// Routes.Screen sees each new request with its source address before tm
// sends anything for it — before the 403 to an unsigned in-dialog request,
// a 503 over a cap, a 481 to a stray CANCEL, 100 Trying — and can only drop
// it, silently (counted as DropScreened). It is the place for sources that
// must learn nothing, not even from tm's own answers: scanners, banned or
// over-rate sources. It costs one call and no allocation per request:
//
//	Screen: func(req *sip.Request, src netip.AddrPort) bool {
//		return banned(src.Addr()) || ratelimit.IsScanner(req)
//	},
//
// # Suspension
//
// A route may wait for I/O without blocking its loop: async.Await(c, op,
// resume) suspends the Context (Suspend), runs op (a database query, a REST
// call, a DNS lookup…) off the loop, and runs resume back on the owner loop,
// where the route goes on with Reply or Relay. Every suspension is bounded
// by Timers.SuspendBound; responses arriving meanwhile wait their turn, so a
// route never runs twice at once for a transaction.
//
// # Originated requests
//
// The proxy sends requests of its own — OPTIONS probes, a BYE that ends a
// call, NOTIFY, MESSAGE — with Server.Send, an async.Op that a route
// awaits on its Context (c.Server().Send) and other code launches;
// Server.Originate launches it from a timer job, bounded and observed:
//
//	req, _ := srv.NewRequest(tm.OutOfDialog{Method: sip.OPTIONS, Target: "sip:gw1@192.0.2.10"})
//	srv.Originate(l, req, tm.SendOptions{}, func(resp *sip.Response, err error) {
//		// on l: resp is the final response (any code), or err is
//		// ErrOriginatedTimeout (no answer: Timer F), ErrOriginatedUnreachable…
//	})
//
// The client transaction is a relayed branch's (Timer E over UDP, Timer F,
// our Via with an unpredictable branch, responses only from where the
// request went, next hop through Config.Resolver and Config.Lookup) and
// runs on the loop that owns the Call-ID; the result comes back to the
// loop the op was started on. Config.MaxOriginated caps those in flight
// (async.ErrOverloaded beyond); StatsSnapshot.Originated counts them, and
// Capture and Messages see them like every message. NewRequest builds
// out-of-dialog requests (random Call-ID and From tag), DialogState.Request
// in-dialog ones, and CallDialogs the dialog state of both sides of a call
// the proxy record-routed (a BYE to each). Only non-INVITE methods are
// originated: INVITE, ACK and CANCEL are refused with ErrNotOriginable.
//
// # Security defaults
//
// The zero Config is the secure one (see Security and docs/ARCHITECTURE.md,
// "Trust boundaries (tm)"): branches and To tags carry 64 bits from
// crypto/rand and branches a MAC of the hop they answer; a response counts
// only from where its branch was sent, and is never forwarded along a Via
// we did not receive; our Record-Route is signed for its dialog, and a
// request with a To tag that does not come back along it is refused 403
// before any route runs (Context.InDialog reports the ones that do;
// Server.SignedRoute returns the signed value for a dialog, to build such
// requests in tests and tools); a Route chosen by the sender of an initial
// request is refused unless the route calls Context.FollowRoute; 100 Trying goes out only when the route relays
// or suspends, so Drop leaves a scanner with nothing, and Routes.Screen
// drops a source before tm answers anything; and the memory of
// transactions and of the tombstones that absorb retransmissions is bounded
// across loops by Config.MaxTransactionBytes (over it, 503 without a
// transaction).
//
// Tests of routes run on a fake loop and clock with package siptest.
// Stats returns the counters (drops by reason, transactions, tombstones,
// overload) that modules/metrics exports.
package tm
