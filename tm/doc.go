// Package tm is the SIP transaction layer and proxy core of asyncsip: RFC
// 3261 transactions (§17, with RFC 6026's Accepted state) and a stateful
// proxy (§16) whose decisions are made by routes the user writes.
//
// # Loops and ownership
//
// A Server runs on the event loops of a reactor.Group and owns one table of
// transactions per loop. Each call has an owner loop, chosen by hashing its
// Call-ID, so every message of a call (INVITE, CANCEL, ACK, responses,
// in-dialog requests) lands on the same loop: the loop that reads a
// message hands it to the owner, which parses it and runs everything that
// follows. A transaction, its Context, its Branches and its timers are
// touched by that one goroutine and need no lock; a route, a resume and a
// Transport's Send run there too, so none of them may block. Routes.Screen
// is the exception: it runs on whichever loop reads the request, so it
// must be safe for concurrent use. Server methods for the outside (Stats,
// Messages, SetRoutes, Drain, Close, ConnectionFailed) are safe from any
// goroutine. The root package asyncsip builds a Server with its sockets;
// NewServer, AddTransport and Receive build one from parts.
//
// # Transactions
//
// Every request but ACK gets a server transaction (RFC 3261 §17.2, with
// RFC 6026's Accepted state) that absorbs its retransmissions and resends
// the last response; every relayed branch gets a client transaction
// (§17.1) that retransmits over UDP and times out (Timer B or F: a 408 for
// the failure route). A completed non-INVITE transaction over UDP leaves a
// tombstone that answers retransmissions for Timer J. A CANCEL is answered
// by tm and cancels the branches of its INVITE; an ACK for a 2xx and
// Context.Forward go on without a transaction.
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
//			case c.Method() == sip.REGISTER:
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
// resume) suspends the Context (Context.Suspend; tm sends 100 Trying for an
// INVITE), starts op (a database query on a pool, a REST call, a DNS
// lookup…) and returns; the loop serves other calls, and resume runs later
// on the owner loop as the rest of the route, with the Context as it was.
// Every suspension is bounded by Timers.SuspendBound (then answered with
// Config.SuspendTimeoutCode), a CANCEL aborts it (487), and responses
// arriving meanwhile wait their turn, so a route never runs twice at once
// for a transaction.
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
// The zero Config is the secure one; each guarantee has one switch in
// Security (docs/ARCHITECTURE.md, "Trust boundaries (tm)"):
//   - branches and To tags carry 64 bits from crypto/rand, and our branches a
//     MAC of the hop they answer;
//   - a response counts only from where its branch was sent, and is never
//     forwarded along a Via we did not receive;
//   - our Record-Route is signed for its dialog: a request with a To tag
//     that does not come back along it is refused 403 before any route runs
//     (Context.InDialog reports those that do; Server.SignedRoute returns
//     the value, for tests and tools);
//   - a Route chosen by the sender of an initial request is refused unless
//     the route calls Context.FollowRoute;
//   - 100 Trying goes out only when the route relays or suspends, so Drop
//     leaves a scanner with nothing, and Routes.Screen drops a source before
//     tm answers anything;
//   - the memory of transactions and tombstones is bounded across loops by
//     Config.MaxTransactionBytes (over it, 503 without a transaction).
//
// # Testing and observing
//
// Routes are tested on a manual loop and a fake clock, with no socket and
// no sleep (see the Server.Receive example); package siptest wraps that
// in a Harness. Server.Stats returns the counters (drops by reason,
// transactions, tombstones, overload), Server.Messages the messages on the
// wire by method and status class, and Config.Capture sees every message
// in and out: modules/metrics and modules/hep export them.
package tm
