package tm

import (
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/asyncsip/asyncsip/async"
	"github.com/asyncsip/asyncsip/reactor"
)

// Originated requests (UAC): requests the proxy sends on its own — OPTIONS
// probes, a BYE that ends a call, NOTIFY, MESSAGE, REGISTER — what OpenSIPS
// does with t_request and t_request_within.
//
// Server.Send returns an async.Op: a timer job or a Launch starts it with
// async.Launch, a route with async.Await. The client transaction is the one
// relayed branches use (clientTx: Timer E retransmissions over UDP, Timer F,
// Timer K) and lives on the loop that owns the request's Call-ID, where
// responses are dispatched; its result is posted back to the loop the op was
// started on. The request leaves like a relayed branch: our Via with a
// branch of 64 random bits and a MAC, the next hop through Config.Resolver
// (and Config.Lookup for a host name), the transport chosen as for a branch,
// and a response counts only when it comes from where the request went
// (Security.AnyResponseSource relaxes that here too). Sends go through
// Server.send like everything else, so they are counted in Server.Messages
// and captured (Config.Capture, HEP).
//
// Only non-INVITE methods are originated: an INVITE needs the UA core's
// 2xx ACK, forked 2xx handling and CANCEL, which no user of this API needs
// yet (probes, keep-alives, BYE on timeout). INVITE, ACK and CANCEL are
// refused with ErrNotOriginable.

// Errors of originated requests.
var (
	// ErrOriginatedTimeout: no final response arrived within the
	// request's timeout (Timer F, or SendOptions.Timeout when shorter):
	// what a 408 Request Timeout means for a relayed branch.
	ErrOriginatedTimeout = errors.New("tm: originated request timed out (408)")
	// ErrOriginatedUnreachable: the request could not be sent (the
	// transport refused it, or a connection could not be opened).
	ErrOriginatedUnreachable = errors.New("tm: originated request could not be sent")
	// ErrNotOriginable: the method cannot be originated (INVITE, ACK and
	// CANCEL), or the request lacks what a client transaction needs.
	ErrNotOriginable = errors.New("tm: request cannot be originated")
	// ErrClosed: the server was closed while the request was in flight.
	ErrClosed = errors.New("tm: server closed")
)

// DefaultMaxOriginated is the default of Config.MaxOriginated.
const DefaultMaxOriginated = 10000

// SendOptions configures one originated request (Server.Send). The zero
// value sends to the first Route, else the Request-URI, bounded by Timer F.
type SendOptions struct {
	// Destination overrides the next hop, leaving the Request-URI and
	// Route alone (as Context.SetDestination does for relayed requests):
	// "sip:10.0.0.1:5060;transport=tcp" or "10.0.0.1:5060".
	Destination string
	// Timeout bounds the transaction from the moment it starts: without a
	// final response by then, the transaction ends (no more
	// retransmissions) and the op completes with ErrOriginatedTimeout.
	// Zero or more than Timer F (64*T1, 32 s) means Timer F.
	Timeout time.Duration
	// Provisional, when set, is called with each provisional (1xx)
	// response, on the loop the op was started on, before the final one.
	Provisional func(resp *sip.Response)
}

// OriginatedStats counts originated requests (StatsSnapshot.Originated).
type OriginatedStats struct {
	// Started counts requests sent; Completed those that got a final
	// response; TimedOut those that got none in time; Failed those that
	// could not be sent or were ended by Close. Refused counts Sends
	// refused before anything was sent (a bad request, an unresolvable
	// next hop, a loop back to us), Overloaded those refused because
	// Config.MaxOriginated were in flight (also counted in Overload).
	Started, Completed, TimedOut, Failed, Refused, Overloaded uint64
	// Cancelled counts requests whose caller stopped waiting (an await
	// timeout): their transaction ended early, counted here only.
	Cancelled uint64
	// InFlight is the number of originated transactions now.
	InFlight int64
}

// uacState is the server's bookkeeping of originated requests.
type uacState struct {
	inFlight                                      atomic.Int64
	started, completed, timedOut, failed, refused atomic.Uint64
	overloaded, cancelled                         atomic.Uint64
	closed                                        atomic.Bool
	byLoop                                        []map[*originated]struct{} // on each owner loop, for Close
}

func (u *uacState) init(loops int) {
	u.byLoop = make([]map[*originated]struct{}, loops)
	for i := range u.byLoop {
		u.byLoop[i] = make(map[*originated]struct{})
	}
}

func (u *uacState) snapshot() OriginatedStats {
	return OriginatedStats{
		Started: u.started.Load(), Completed: u.completed.Load(), TimedOut: u.timedOut.Load(),
		Failed: u.failed.Load(), Refused: u.refused.Load(), Overloaded: u.overloaded.Load(),
		Cancelled: u.cancelled.Load(), InFlight: u.inFlight.Load(),
	}
}

// Send returns an op that sends req as a client transaction of this proxy
// and completes with its final response — whatever its status code, with a
// nil error — or with an error: ErrOriginatedTimeout when no final response
// came in time, ErrOriginatedUnreachable when it could not be sent,
// ErrNotOriginable or ErrNoRoute/ErrNoTransport/ErrLoop when it was refused,
// async.ErrOverloaded beyond Config.MaxOriginated in flight.
//
// req must carry From (with a tag), To, Call-ID and a CSeq naming its
// method; NewRequest and DialogState.Request build such requests. What
// goes out is a copy of req taken when the op starts, with our Via on top
// (in place of any Via req has) and Max-Forwards 70 when missing. Start
// the op on a loop of the server's group (a route awaits it on its
// Context: c.Server().Send):
//
//	async.Launch(l, srv.Send(req, tm.SendOptions{}), func(resp *sip.Response, err error) { … })
//
// Provisional responses go to SendOptions.Provisional and the final one to
// the resume (or report), on the loop the op started on. An await's own
// timeout (async.DefaultTimeout, 10 s, unless async.Timeout says otherwise)
// cancels the op, which ends the transaction: give the await at least
// SendOptions.Timeout (Timer F, 32 s, by default) to see ErrOriginatedTimeout.
// A route's suspension is also bounded by Timers.SuspendBound (32 s by
// default), so a route that awaits a send gives it a shorter
// SendOptions.Timeout (a few seconds) and the await a little more.
func (s *Server) Send(req *sip.Request, opts SendOptions) async.Op[*sip.Response] {
	return &sendOp{s: s, req: req, opts: opts}
}

// Originate launches Send(req, opts) on l — from a timer job or any code
// running on a loop of the server — and runs report on l with its outcome.
// It is async.Launch with what an originated request needs: a bound just
// above the send's own (Timer F or opts.Timeout, so a missing answer is
// reported as ErrOriginatedTimeout), the name "tm.send" and
// Config.Observer, so metrics see it like the awaits of routes. Call it on
// l.
func (s *Server) Originate(l *reactor.Loop, req *sip.Request, opts SendOptions, report func(*sip.Response, error)) {
	op := &originated{s: s, opts: opts}
	async.Launch(l, s.Send(req, opts), report, async.Name("tm.send"),
		async.Timeout(op.timeout()+s.timers.T1), async.Observe(s.cfg.Observer))
}

// sendOp is the op Send returns.
type sendOp struct {
	s    *Server
	req  *sip.Request
	opts SendOptions
}

// Describe implements async.Describer: "tm.send: OPTIONS sip:…".
func (op *sendOp) Describe() string {
	if op.req == nil {
		return "tm.send: <nil>"
	}
	return "tm.send: " + string(op.req.Method) + " " + op.req.Recipient.String()
}

// Start implements async.Op. It runs on l, the loop the result goes to.
func (op *sendOp) Start(l *reactor.Loop, done func(*sip.Response, error)) func() {
	s := op.s
	if err := checkOriginable(op.req); err != nil {
		s.uac.refused.Add(1)
		done(nil, err)
		return nil
	}
	if s.uac.closed.Load() {
		s.uac.failed.Add(1)
		done(nil, ErrClosed)
		return nil
	}
	if n := s.uac.inFlight.Add(1); n > int64(s.maxOriginated()) {
		s.uac.inFlight.Add(-1)
		s.uac.overloaded.Add(1)
		s.stats.overload.Add(1)
		done(nil, fmt.Errorf("tm: %d originated requests in flight: %w", s.maxOriginated(), async.ErrOverloaded))
		return nil
	}
	o := &originated{s: s, req: op.req.Clone(), opts: op.opts, caller: l, done: done}
	o.owner = s.owner(string(*op.req.CallID()))
	if o.owner.loop == l {
		o.start()
	} else if err := o.owner.loop.Post(o.start); err != nil {
		s.uac.inFlight.Add(-1)
		s.uac.failed.Add(1)
		o.over = true
		done(nil, fmt.Errorf("%w: %w", ErrClosed, err))
		return nil
	}
	if o.over {
		return nil // completed synchronously (refused on this loop)
	}
	return o.cancel
}

// Server returns the server the Context's transaction runs on, for what a
// route starts beyond its own transaction (Send).
func (c *Context) Server() *Server { return c.s }

func (s *Server) maxOriginated() int {
	if s.cfg.MaxOriginated > 0 {
		return s.cfg.MaxOriginated
	}
	return DefaultMaxOriginated
}

// checkOriginable refuses what a non-INVITE client transaction cannot send.
func checkOriginable(req *sip.Request) error {
	if req == nil {
		return fmt.Errorf("%w: nil request", ErrNotOriginable)
	}
	switch req.Method {
	case sip.INVITE, sip.ACK, sip.CANCEL:
		return fmt.Errorf("%w: %s (only non-INVITE methods are originated)", ErrNotOriginable, req.Method)
	case "":
		return fmt.Errorf("%w: no method", ErrNotOriginable)
	}
	from, to, id, cs := req.From(), req.To(), req.CallID(), req.CSeq()
	switch {
	case from == nil || !from.Params.Has("tag"):
		return fmt.Errorf("%w: From with a tag required", ErrNotOriginable)
	case to == nil:
		return fmt.Errorf("%w: To required", ErrNotOriginable)
	case id == nil || *id == "":
		return fmt.Errorf("%w: Call-ID required", ErrNotOriginable)
	case cs == nil || cs.MethodName != req.Method:
		return fmt.Errorf("%w: CSeq naming %s required", ErrNotOriginable, req.Method)
	case req.Recipient.Host == "":
		return fmt.Errorf("%w: Request-URI without host", ErrNotOriginable)
	}
	return checkInjection(req)
}
