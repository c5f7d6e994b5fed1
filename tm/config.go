package tm

import (
	"log/slog"
	"net/netip"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/asyncsip/asyncsip/async"
	"github.com/asyncsip/asyncsip/reactor"
)

// Timers holds the RFC 3261 timer values of one server instance (never
// global). Zero fields take the RFC defaults.
type Timers struct {
	T1 time.Duration // RTT estimate (500 ms)
	T2 time.Duration // maximum retransmit interval for non-INVITE requests and INVITE responses (4 s)
	T4 time.Duration // maximum time a message stays in the network (5 s)
	// TimerC bounds an INVITE branch after a provisional response (3 min,
	// RFC 3261 §16.6 step 11: "greater than 3 minutes"; we use exactly 3).
	TimerC time.Duration
	// SuspendBound bounds how long a transaction may stay suspended, across
	// all its awaits (default 64*T1 = 32 s). When it expires the caller gets
	// SuspendTimeoutCode and a late resume is ignored.
	SuspendBound time.Duration
}

func (t Timers) withDefaults() Timers {
	if t.T1 <= 0 {
		t.T1 = 500 * time.Millisecond
	}
	if t.T2 <= 0 {
		t.T2 = 4 * time.Second
	}
	if t.T4 <= 0 {
		t.T4 = 5 * time.Second
	}
	if t.TimerC <= 0 {
		t.TimerC = 3 * time.Minute
	}
	if t.SuspendBound <= 0 {
		t.SuspendBound = 64 * t.T1
	}
	return t
}

// Config configures a Server. The zero value of every field is useful.
type Config struct {
	// Timers are the transaction timers (RFC 3261 defaults when zero).
	Timers Timers
	// Limits bound message size, headers and Vias.
	Limits Limits
	// NoRecordRoute stops the proxy from adding Record-Route to
	// dialog-creating requests (it adds it by default, RFC 3261 §16.6).
	NoRecordRoute bool
	// AbandonCode is the final response sent for a request whose route
	// returned without replying, relaying, forwarding, dropping or
	// suspending (default 500).
	AbandonCode int
	// SuspendTimeoutCode answers a transaction whose suspension outlived
	// Timers.SuspendBound (default 504 Server Time-out).
	SuspendTimeoutCode int
	// MaxQueuedReplies bounds responses that wait while a transaction's
	// route is suspended (default 32); beyond it provisional responses are
	// dropped and counted.
	MaxQueuedReplies int
	// MaxBreadth bounds the parallel branches of one request (RFC 5393,
	// default 60); a Relay beyond it is refused with 440 Max-Breadth Exceeded.
	MaxBreadth int
	// MaxTransactions bounds the server transactions per loop (default
	// 100000); beyond it new requests get 503 with Retry-After while the
	// transactions in progress complete.
	MaxTransactions int
	// MaxTransactionBytes bounds, across all loops, the memory held by
	// server transactions and by the tombstones of completed ones
	// (accounted estimates, see docs/ARCHITECTURE.md "Trust boundaries";
	// default DefaultMaxTransactionBytes). Beyond it new requests get 503
	// with Retry-After, answered without a transaction.
	MaxTransactionBytes int64
	// Security holds the trust-boundary switches; its zero value is the
	// secure default.
	Security Security
	// MaxSuspended bounds the suspended transactions per server (default
	// 50000); beyond it Suspend fails with ErrOverloaded, so an Await
	// resumes at once with that error (the route usually answers 503).
	MaxSuspended int
	// MaxOriginated bounds the requests the proxy originates (Server.Send)
	// that are in flight at once, across loops (default
	// DefaultMaxOriginated); beyond it Send fails with async.ErrOverloaded.
	MaxOriginated int
	// Resolver turns a next-hop host into an address synchronously. The
	// default accepts IP literals and "localhost"; anything else goes to
	// Lookup, or without one gives ErrNoRoute (503).
	Resolver func(host string) (netip.Addr, error)
	// Lookup resolves a next hop that Resolver does not answer (a host
	// name), asynchronously: Relay awaits the op it returns for the next
	// hop's URI ("sip:host[:port][;transport=t]" or "sips:…"), with the
	// route suspended meanwhile (see lookup.go). It should wrap
	// ErrUnresolvable when the name does not exist. nil: no lookup. The
	// asyncsip facade sets an RFC 3263 resolver with a cache by default.
	Lookup func(uri string) async.Op[NextHop]
	// Logger receives logs; nil means slog.Default().
	Logger *slog.Logger
	// Capture, when set, is called for every message received and sent
	// (see CaptureEvent), on the loop that handles it: it must not block,
	// and must copy ev.Data if it keeps it. modules/hep exports to Homer.
	Capture func(ev CaptureEvent)
	// Observer, when set, observes every Await made on a Context (op
	// latency and errors by name); its methods run on the loops and must
	// not block.
	Observer async.Observer
	// Intercept, when set, is offered every op awaited on a Context before
	// it starts (see async.Interceptor): siptest sets it to record awaits
	// and script their results. Leave it nil outside tests.
	Intercept async.Interceptor
}

// DefaultMaxTransactionBytes is the default of Config.MaxTransactionBytes.
// (256 MiB: about 85,000 live transactions, or 390,000 tombstones of a
// REGISTER flood answered 401 with two digest challenges, ~690 bytes each).
const DefaultMaxTransactionBytes = 256 << 20

// Security holds the switches of tm's trust boundaries. The zero value is
// secure: every field relaxes one guarantee.
type Security struct {
	// RouteKey signs the Record-Route values this proxy adds (a MAC bound
	// to the dialog's Call-ID and caller's From tag) and the flow tokens
	// inside them. An in-dialog request is loose-routed only along a value
	// whose MAC verifies. Empty: a random key per Server, so dialogs set up
	// before a restart are refused after it; set the same key (at least 16
	// bytes, kept secret) on every restart and on every instance that must
	// route each other's dialogs. The facade's Config.RouteKeyFile loads or
	// creates one.
	RouteKey []byte
	// AllowUnsignedInDialog hands in-dialog requests (To tag present) whose
	// top Route is not our signed Record-Route to the request route instead
	// of refusing them 403 (an ACK is dropped). Context.InDialog stays
	// false for them: the route decides what they are.
	AllowUnsignedInDialog bool
	// AnyResponseSource matches a response to its branch wherever it comes
	// from. By default a response counts only when it comes from the
	// address the branch was sent to (over UDP) or over the connection it
	// was sent on (streams); others are dropped and counted (DropSource).
	AnyResponseSource bool
}

// Routes are the user's routing functions. Screen sees a request before
// anything else, on the loop that read it; every other route is a
// func(*Context) run on the owner loop of its transaction (Context.Kind
// tells which), and never twice at once for a transaction. A nil Reply,
// Failure, Branch or End route leaves tm's default (RFC 3261 §16); a nil
// Request route gets every request answered Config.AbandonCode.
type Routes struct {
	// Screen, when set, runs first for every request that is not a
	// retransmission of a transaction in progress or just completed (those
	// are absorbed as usual), before tm sends anything for it: before the
	// 403 to an unsigned in-dialog request, the 503 over a cap, the 481 to
	// a stray CANCEL, 100 Trying and the request route. Returning true
	// drops the request without any answer (counted as DropScreened); a
	// screened request leaves no transaction, so its retransmissions meet
	// the screen again. It gets the request and its source address only:
	// it cannot reply, and it runs on whichever loop handles the request
	// (also for a request that failed validation, before its 400), so it
	// must be cheap, must not block, and must be safe for concurrent use.
	// A screen that panics drops the request (counted in Panics too). The
	// place for scanners, banned and over-rate sources.
	Screen func(req *sip.Request, src netip.AddrPort) (drop bool)
	// Request runs for every new request (including ACK for 2xx and other
	// in-dialog requests; CANCELs that match a transaction are handled by
	// tm). It must reply, relay, forward, drop or suspend.
	Request func(c *Context)
	// Reply runs for each response received on a branch (except 100),
	// with c.Resp set. It may c.Drop() a provisional response. By default
	// the response is relayed upstream as RFC 3261 §16.7 says.
	Reply func(c *Context)
	// Failure runs once every branch has a final response and none was
	// 2xx, with c.Resp set to the best response. It may relay again
	// (serial forking) or reply; by default the best response is sent.
	Failure func(c *Context)
	// Branch runs for each outgoing branch before it is sent, with
	// c.Branch() the branch: it may edit c.Branch().Req() or call
	// c.Branch().Drop(). It cannot suspend or reply.
	Branch func(c *Context)
	// End runs once per server transaction, when its final response has
	// gone upstream (c.FinalCode) or the request was dropped (FinalCode 0):
	// the place for one log line or metric per call (c.Elapsed,
	// c.Branches). It runs inside the action that ended the transaction,
	// so it must only read the Context, never act on it.
	End func(c *Context)
}

// loopOf returns the per-loop state for l.
func (s *Server) loopOf(l *reactor.Loop) *loopState { return s.loops[l.ID()] }
