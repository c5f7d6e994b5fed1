package tm

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
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
// (Security.AnyResponseSource relaxes that here too). Sends go through the
// wrapped transports, so they are counted in Server.Messages and captured
// (Config.Capture, HEP) like everything else.
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

// originated is one originated request. The fields above the line are set
// before start and read-only after; caller-side fields are touched on the
// caller's loop only, owner-side ones on the owner loop only.
type originated struct {
	s      *Server
	req    *sip.Request
	opts   SendOptions
	caller *reactor.Loop
	owner  *loopState
	// caller side
	done func(*sip.Response, error)
	over bool // the result was delivered or the caller cancelled
	// owner side
	tx       *clientTx
	deadline *reactor.Timer
	lookup   func() // cancels a next-hop lookup in progress
	began    time.Time
	ended    bool // the transaction is over; the in-flight slot is released
	stopped  bool // the caller cancelled before start ran
}

// cancel is the op's cancel, on the caller's loop: the result is no longer
// wanted, the transaction ends on its owner loop.
func (o *originated) cancel() {
	if o.over {
		return
	}
	o.over = true
	o.onOwner(func() {
		if o.ended {
			return
		}
		o.s.uac.cancelled.Add(1)
		o.stopped = true
		o.end()
	})
}

// onOwner runs fn on the owner loop: inline when it is the caller's.
func (o *originated) onOwner(fn func()) {
	if o.owner.loop == o.caller {
		fn()
		return
	}
	_ = o.owner.loop.PostUrgent(fn)
}

// toCaller runs fn on the caller's loop unless the caller stopped waiting.
func (o *originated) toCaller(fn func()) {
	run := func() {
		if !o.over {
			fn()
		}
	}
	if o.owner.loop == o.caller {
		run()
		return
	}
	_ = o.caller.PostUrgent(run)
}

// finish ends the transaction (owner loop) and delivers the result.
func (o *originated) finish(resp *sip.Response, err error) {
	if o.ended {
		return
	}
	o.end()
	o.toCaller(func() {
		o.over = true
		o.done(resp, err)
	})
}

// end releases everything the request holds on its owner loop.
func (o *originated) end() {
	if o.ended {
		return
	}
	o.ended = true
	o.deadline.Stop()
	if o.lookup != nil {
		o.lookup()
		o.lookup = nil
	}
	if o.tx != nil {
		o.tx.terminate()
	}
	delete(o.s.uac.byLoop[o.owner.loop.ID()], o)
	o.s.uac.inFlight.Add(-1)
}

// start runs on the owner loop: resolve the next hop (looking it up when
// Config.Lookup must), then send.
func (o *originated) start() {
	if o.stopped || o.ended {
		return
	}
	if o.s.uac.closed.Load() {
		o.s.uac.failed.Add(1)
		o.finish(nil, ErrClosed)
		return
	}
	ls := o.owner
	o.s.uac.byLoop[ls.loop.ID()][o] = struct{}{}
	o.began = ls.loop.Now()
	o.deadline = ls.loop.AfterFunc(o.timeout(), func() {
		o.s.uac.timedOut.Add(1)
		o.finish(nil, ErrOriginatedTimeout)
	})
	if flow, proto := o.s.stripOwnRoutes(o.req); flow.IsValid() && o.opts.Destination == "" {
		if tp, err := o.s.transportFor(flow, proto); err == nil {
			if ct, ok := unwrapTransport(tp).(ConnTracker); ok && ct.HasConn(flow) {
				o.sendTo(flow, tp, true)
				return
			}
		}
	}
	u, err := o.hopURI()
	if err != nil {
		o.refuse(err)
		return
	}
	if _, rerr := o.s.cfg.Resolver(u.Host); rerr != nil && o.s.cfg.Lookup != nil {
		key := hopKey(&u)
		o.lookup = startOp(ls.loop, o.s.cfg.Lookup(key), func(h NextHop, err error) {
			o.lookup = nil
			if o.ended {
				return
			}
			if err != nil {
				o.refuse(fmt.Errorf("%w: %s: %w", ErrNoRoute, u.Host, err))
				return
			}
			o.send(u, &h)
		})
		return
	}
	o.send(u, nil)
}

// startOp starts op on l and returns its cancel, or nil when it completed
// inline.
func startOp[T any](l *reactor.Loop, op async.Op[T], done func(T, error)) func() {
	fired := false
	cancel := op.Start(l, func(v T, err error) {
		if fired {
			return
		}
		fired = true
		done(v, err)
	})
	if fired {
		return nil
	}
	return func() {
		fired = true
		if cancel != nil {
			cancel()
		}
	}
}

func (o *originated) timeout() time.Duration {
	f := 64 * o.s.timers.T1
	if d := o.opts.Timeout; d > 0 && d < f {
		return d
	}
	return f
}

// refuse ends a request that could not be sent at all.
func (o *originated) refuse(err error) {
	o.s.uac.refused.Add(1)
	o.finish(nil, err)
}

// hopURI is the URI the next hop is resolved from: the destination
// override, else the first Route, else the Request-URI.
func (o *originated) hopURI() (sip.Uri, error) {
	if d := o.opts.Destination; d != "" {
		return parseTarget(d)
	}
	if r := o.req.Route(); r != nil {
		return *r.Address.Clone(), nil
	}
	return *o.req.Recipient.Clone(), nil
}

// send picks the address and transport of the next hop from u (or the
// looked-up hop) and sends.
func (o *originated) send(u sip.Uri, looked *NextHop) {
	s, req := o.s, o.req
	proto := uriTransport(&u)
	var dst netip.AddrPort
	if looked != nil {
		dst = looked.Addr
		if proto == "" {
			proto = looked.Transport
		}
	} else {
		port := u.Port
		if port <= 0 {
			port = defaultPort(proto)
		}
		var err error
		if dst, err = s.resolve(u.Host, port); err != nil {
			o.refuse(err)
			return
		}
	}
	tp, err := s.transportFor(dst, proto)
	if err != nil {
		o.refuse(err)
		return
	}
	if s.isSelf(dst) {
		o.refuse(loopError(dst, false))
		return
	}
	if o.opts.Destination == "" && req.Route() != nil {
		strictRoute(req) // RFC 3261 §12.2.1.1: a strict first hop
	}
	o.sendTo(dst, tp, proto != "")
}

// sendTo adds Max-Forwards when missing and our Via, and starts the client
// transaction to dst over tp (forced: the target named the transport).
func (o *originated) sendTo(dst netip.AddrPort, tp Transport, forced bool) {
	s, ls, req := o.s, o.owner, o.req
	if req.MaxForwards() == nil {
		mf := sip.MaxForwardsHeader(70)
		req.AppendHeader(&mf)
	}
	if !forced {
		tp = s.largeRequest(ls, req, dst, tp)
	}
	req.RemoveHeader("Via")
	host, port := tp.Advertised()
	branch := s.newBranch(ls, nil)
	req.PrependHeader(&sip.ViaHeader{ProtocolName: "SIP", ProtocolVersion: "2.0", Transport: tp.Protocol(),
		Host: host, Port: port, Params: sip.HeaderParams{{K: "branch", V: branch}}})
	s.uac.started.Add(1)
	o.tx = s.startClientTx(ls, req, branch, dst, tp, o.onResponse, o.onTimeout)
}

// stripOwnRoutes removes the Route values on top of req that name this
// proxy (a route set that starts with our own Record-Route, as a dialog
// store may keep it) and returns the connection named by the flow token of
// the last one removed, if any: a side reached over a connection (a
// WebSocket client) is reached on it while it is open, as relayed
// in-dialog requests are.
func (s *Server) stripOwnRoutes(req *sip.Request) (flow netip.AddrPort, proto string) {
	for r := req.Route(); r != nil && s.isLocal(r.Address.Host, r.Address.Port); r = req.Route() {
		flow, proto = s.parseFlow(&r.Address)
		req.RemoveHeader("Route")
	}
	return flow, proto
}

// largeRequest is Context.largeSwitch for an originated request: over
// UDPMaxRequest, a request whose target forces no transport goes over TCP
// when a TCP transport exists (RFC 3261 §18.1.1).
func (s *Server) largeRequest(ls *loopState, req *sip.Request, dst netip.AddrPort, tp Transport) Transport {
	if !strings.EqualFold(tp.Protocol(), "UDP") || !s.hasProtocol("TCP") {
		return tp
	}
	if len(ls.w.bytes(req))+viaRRSlack <= UDPMaxRequest {
		return tp
	}
	if t, err := s.transportFor(dst, "TCP"); err == nil {
		return t
	}
	return tp
}

// onResponse gets the client transaction's responses (owner loop).
func (o *originated) onResponse(resp *sip.Response) {
	if o.ended {
		return
	}
	if resp.StatusCode < 200 {
		if fn := o.opts.Provisional; fn != nil {
			o.toCaller(func() { fn(resp) })
		}
		return
	}
	o.s.uac.completed.Add(1)
	// The transaction stays for Timer K to absorb retransmitted finals;
	// only our bookkeeping ends now.
	o.tx = nil
	o.finish(resp, nil)
}

// onTimeout is Timer F, or a transport error reported by the transaction.
func (o *originated) onTimeout() {
	if o.ended {
		return
	}
	o.tx = nil // already terminated
	if o.owner.loop.Now().Sub(o.began) < 64*o.s.timers.T1 {
		o.s.uac.failed.Add(1)
		o.finish(nil, ErrOriginatedUnreachable)
		return
	}
	o.s.uac.timedOut.Add(1)
	o.finish(nil, ErrOriginatedTimeout)
}

// closeOriginated ends the originated requests owned by ls (Close).
func (s *Server) closeOriginated(ls *loopState) {
	s.uac.closed.Store(true)
	for o := range s.uac.byLoop[ls.loop.ID()] {
		s.uac.failed.Add(1)
		o.finish(nil, ErrClosed)
	}
}
