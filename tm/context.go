package tm

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/asyncsip/asyncsip/reactor"
	"github.com/asyncsip/asyncsip/tm/internal/sipindex"
)

// Errors returned by Context actions.
var (
	// ErrFinalSent: the transaction already has a final response.
	ErrFinalSent = errors.New("tm: final response already sent")
	// ErrNoTransaction: the action needs a transaction (ACK has none).
	ErrNoTransaction = errors.New("tm: no transaction for this request")
	// ErrWrongRoute: the action is not allowed in this kind of route.
	ErrWrongRoute = errors.New("tm: action not allowed in this route")
	// ErrCancelled: the INVITE was cancelled; Relay sent nothing (a route
	// that does nothing more gets 487 sent for it).
	ErrCancelled = errors.New("tm: request cancelled")
	// ErrSuspended: the context is already suspended.
	ErrSuspended = errors.New("tm: context already suspended")
	// ErrMaxBreadth: a Relay asked for more parallel branches than
	// Config.MaxBreadth (RFC 5393); nothing was sent (a route that does
	// nothing more gets 440 sent for it).
	ErrMaxBreadth = errors.New("tm: too many parallel branches")
	// ErrInjection: a header value holds CR or LF; nothing was sent.
	ErrInjection = errors.New("tm: CR/LF in a header value")
	// ErrLoop: the next hop is this proxy itself; nothing was sent (a
	// route that does nothing more gets 404 or 481 sent for a request
	// addressed to this proxy without a Route, 482 otherwise).
	ErrLoop = errors.New("tm: request would loop back to this proxy")
	// ErrRouteNotAllowed: a request carries a Route header chosen by its
	// sender (not our signed Record-Route) and the route did not call FollowRoute;
	// 403 was sent.
	ErrRouteNotAllowed = errors.New("tm: request carries a Route chosen by its sender (call FollowRoute to follow it)")
	// ErrBadTarget: a target or destination URI did not parse.
	ErrBadTarget = errors.New("tm: bad target URI")
)

// RouteKind says which route a Context is running.
type RouteKind uint8

// Route kinds.
const (
	RouteNone RouteKind = iota
	RouteRequest
	RouteReply
	RouteFailure
	RouteBranch
)

func (k RouteKind) String() string {
	return [...]string{"none", "request", "reply", "failure", "branch"}[k]
}

// Context is the processing context of one transaction: what every route
// receives. It survives suspension: edits to Req(), the destination, flags and
// values made before an await are there after it. A Context is used only on
// its owner loop.
type Context struct {
	// req is the request being processed, once materialised (Req); nil
	// on the lazy path (lazy.go) until something asks for it.
	req *sip.Request
	// The lazy path's request: its bytes (owned), and what was read of
	// them without materialising.
	raw      []byte
	method   sip.RequestMethod
	callID   string // a view of raw
	hasToTag bool
	ruri     sip.Uri
	ruriRead bool
	ruriOrig bool             // Relay without targets: a branch keeps the Request-URI as received
	cuts     [2]sipindex.Span // the Route values looseRoute removes, in raw
	// Resp is the response a reply route runs for, or the best response a
	// failure route runs for; nil in the request route.
	Resp *sip.Response

	s      *Server
	ls     *loopState
	stx    *serverTx
	routes *Routes
	src    netip.AddrPort
	tp     Transport
	log    *slog.Logger

	values map[string]any
	flags  uint64
	dst    string

	kind         RouteKind
	acted        bool // final reply, relay, forward or drop in this route run
	dropped      bool
	cancelled    bool
	final        bool // a final response went upstream
	looseRt      bool
	flow         netip.AddrPort // connection named by the last Route we removed (recordroute.go)
	flowProto    string
	signed       bool // the Route values of ours removed were signed for this dialog (recordroute.go)
	foreignRoute bool // an initial request carries a Route that does not name us
	followRoute  bool // the route allowed that Route (FollowRoute)

	suspended bool
	gen       uint32
	bound     *reactor.Timer
	aborts    []func()
	cont      func(*Context)     // what runs after the route (runRoute)
	relayErr  error              // the last Relay's failure, answered by afterRequest
	hops      map[string]NextHop // next hops looked up by Relay (lookup.go)

	branches []*Branch
	branch0  [1]*Branch // branches' first backing array
	branchA  Branch     // the first spliced branch
	ruris    [1]sip.Uri // Relay's target list when it has none
	cur      *Branch
	queue    []queued
	failing  bool
	ended    bool

	start         time.Time     // arrival, on the loop clock (end.go)
	endDone       bool          // Routes.End ran
	endCode       int           // final status sent upstream (end.go)
	branchTimeout time.Duration // SetBranchTimeout (end.go)
}

type queued struct {
	br   *Branch
	resp *sip.Response
}

// Req returns the request being processed as a sipgo request. Routes may
// edit it; relayed branches are copies of it. A route that only reads the
// method, the Request-URI or the Call-ID should use Method, Recipient and
// CallID: they do not build the sipgo request.
func (c *Context) Req() *sip.Request {
	if c.req == nil {
		c.materialise()
	}
	return c.req
}

// Method returns the request's method.
func (c *Context) Method() sip.RequestMethod {
	if c.req == nil {
		return c.method
	}
	return c.req.Method
}

// Recipient returns the Request-URI (as edited by the route, once Req was
// called).
func (c *Context) Recipient() sip.Uri {
	if c.req != nil {
		return c.req.Recipient
	}
	if !c.ruriRead {
		ix := c.index()
		// c.raw is owned and never written: the URI's strings may view it.
		if err := sip.ParseUri(unsafeString(ix.Bytes(ix.RequestURI)), &c.ruri); err != nil {
			// lazyEligible took only what sipgo parses; should it not,
			// the parsed request says what the parser makes of it.
			return c.Req().Recipient
		}
		c.ruriRead = true
	}
	return c.ruri
}

// CallID returns the request's Call-ID.
func (c *Context) CallID() string {
	if c.req == nil {
		return c.callID
	}
	if id := c.req.CallID(); id != nil {
		return string(*id)
	}
	return ""
}

// toTagged reports whether the request has a To tag (is in-dialog).
func (c *Context) toTagged() bool {
	if c.req == nil {
		return c.hasToTag
	}
	return hasToTag(c.req)
}

// Loop returns the owner loop of the transaction.
func (c *Context) Loop() *reactor.Loop { return c.ls.loop }

// Kind returns the route being run.
func (c *Context) Kind() RouteKind { return c.kind }

// Source returns the address the request came from.
func (c *Context) Source() netip.AddrPort { return c.src }

// Transport returns the transport the request came in on.
func (c *Context) Transport() Transport { return c.tp }

// Cancelled reports whether a CANCEL arrived for this INVITE.
func (c *Context) Cancelled() bool { return c.cancelled }

// FinalSent reports whether a final response was sent upstream.
func (c *Context) FinalSent() bool { return c.final }

// LooseRouted reports whether the request carried a Route to this proxy that
// tm removed (an in-dialog request record-routed through us).
func (c *Context) LooseRouted() bool { return c.looseRt }

// InDialog reports whether the request is in-dialog (it has a To tag) and
// came along a Record-Route this proxy signed for its dialog, so relaying
// it follows the dialog's route set. An in-dialog request without one is
// refused 403 by tm before any route runs, unless
// Security.AllowUnsignedInDialog is set: then InDialog is false for it and
// the route treats it like any request from its source.
func (c *Context) InDialog() bool { return c.signed && c.toTagged() }

// ForeignRoute reports whether the request still carries a Route header
// after tm removed those naming this proxy, and did not come along our
// signed Record-Route: a route set chosen by its sender. Relay and Forward refuse to follow it (403)
// unless the route calls FollowRoute.
func (c *Context) ForeignRoute() bool { return c.foreignRoute }

// FollowRoute lets Relay and Forward send a request along the Route
// headers its sender put in (preloaded routes of a trusted peer).
// Without it such a request is refused 403 "Route Not Allowed", so a
// caller-supplied Route never silently overrides the route's choice of
// target. Call it only for senders you trust to pick the path.
func (c *Context) FollowRoute() { c.followRoute = true }

// refuseForeignRoute returns ErrRouteNotAllowed when the request carries a
// sender-chosen Route the route did not allow.
func (c *Context) refuseForeignRoute() error {
	if !c.foreignRoute || c.followRoute {
		return nil
	}
	c.s.stats.countDrop("routeset")
	// Like every Relay failure, nothing is answered here: the route decides,
	// else afterRequest answers 403 "Route Not Allowed" (relayerror.go).
	return c.relayFailed(ErrRouteNotAllowed)
}

// Branch returns the branch a reply route runs for, or the one a branch
// route is about to send (nil elsewhere).
func (c *Context) Branch() *Branch { return c.cur }

// Branches returns the branches relayed so far.
func (c *Context) Branches() []*Branch { return c.branches }

// Logger returns a logger carrying the Call-ID, CSeq, loop and transaction
// key ("tx", absent for a request without transaction).
func (c *Context) Logger() *slog.Logger {
	if c.log == nil {
		args := []any{"call_id", c.CallID(), "cseq", c.cseq(), "loop", c.ls.loop.ID()}
		if c.stx != nil {
			args = append(args, "tx", c.stx.key)
		}
		c.log = c.s.log.With(args...)
	}
	return c.log
}

// cseq is the request's CSeq value, from the index while the request is
// not materialised.
func (c *Context) cseq() string {
	if c.req == nil {
		ix := c.index()
		if f, ok := ix.Find(sipindex.KindCSeq); ok {
			return string(ix.Bytes(f.Value))
		}
	}
	return c.Req().CSeq().Value()
}

// Set stores a per-transaction value; it survives suspension (OpenSIPS AVPs).
func (c *Context) Set(key string, v any) {
	if c.values == nil {
		c.values = make(map[string]any, 4)
	}
	c.values[key] = v
}

// Get returns a per-transaction value.
func (c *Context) Get(key string) (any, bool) {
	v, ok := c.values[key]
	return v, ok
}

// Value returns the per-transaction value key as a T.
func Value[T any](c *Context, key string) (T, bool) {
	v, ok := c.values[key].(T)
	return v, ok
}

// SetFlag sets message flag n (0..63).
func (c *Context) SetFlag(n uint) { c.flags |= 1 << (n & 63) }

// ResetFlag clears message flag n.
func (c *Context) ResetFlag(n uint) { c.flags &^= 1 << (n & 63) }

// Flag reports message flag n.
func (c *Context) Flag(n uint) bool { return c.flags&(1<<(n&63)) != 0 }

// SetDestination sets the next hop for relayed branches (OpenSIPS $du),
// leaving the Request-URI alone: "sip:10.0.0.1:5060" or "10.0.0.1:5060".
func (c *Context) SetDestination(uri string) error {
	if uri == "" {
		c.dst = ""
		return nil
	}
	if _, err := parseTarget(uri); err != nil {
		return err
	}
	c.dst = uri
	return nil
}

// Destination returns the next-hop override, if any.
func (c *Context) Destination() string { return c.dst }

// parseTarget parses "sip:…", "sips:…" or a bare "host[:port]".
func parseTarget(s string) (sip.Uri, error) {
	var u sip.Uri
	in := s
	if !hasScheme(s) {
		in = "sip:" + s
	}
	if err := sip.ParseUri(in, &u); err != nil {
		return u, fmt.Errorf("%w: %q: %v", ErrBadTarget, s, err)
	}
	if u.Host == "" {
		return u, fmt.Errorf("%w: %q has no host", ErrBadTarget, s)
	}
	return u, nil
}

func hasScheme(s string) bool {
	for i := 0; i < len(s) && i < 6; i++ {
		if s[i] == ':' {
			p := s[:i]
			return p == "sip" || p == "sips" || p == "tel"
		}
	}
	return false
}

// Reply sends a response upstream. A 1xx keeps the transaction open; a
// final response ends it (and cancels pending branches). Extra headers are
// appended. Reply is allowed in the request and failure routes.
func (c *Context) Reply(code int, reason string, hdrs ...sip.Header) error {
	if c.stx == nil {
		return ErrNoTransaction
	}
	if c.kind == RouteReply || c.kind == RouteBranch {
		return fmt.Errorf("%w: Reply in %s route", ErrWrongRoute, c.kind)
	}
	if c.final {
		return ErrFinalSent
	}
	if code < 100 || code > 699 {
		return fmt.Errorf("tm: invalid status code %d", code)
	}
	if c.cancelled && c.stx.invite && code >= 300 {
		// The caller cancelled: whatever failure the route reports, the
		// INVITE is answered 487 (RFC 3261 §9.2).
		code, reason = 487, "Request Terminated"
	}
	if reason == "" {
		reason = StatusText(code)
	}
	if err := c.reply(code, reason, hdrs); err != nil {
		return err
	}
	if code >= 200 {
		c.acted = true
	}
	return nil
}

// Drop ends the route without an answer. In the request route the request
// is absorbed silently (its retransmissions too); in a reply route the
// provisional response being processed is not relayed (a final response
// cannot be dropped: RFC 3261 §16.7).
func (c *Context) Drop() {
	c.dropped = true
	c.acted = true
}

// sendUpstream sends resp on the server transaction and records finality.
func (c *Context) sendUpstream(resp *sip.Response) {
	if c.upstreamFinal(resp.StatusCode) {
		c.stx.respond(resp)
	}
}

// sendUpstreamWire is sendUpstream for a response already in wire form
// (relayed from the index, indexed.go).
func (c *Context) sendUpstreamWire(code int, wire []byte) {
	if c.upstreamFinal(code) {
		c.stx.respondWire(code, wire)
	}
}

// upstreamFinal records the finality of a response with code about to go
// upstream, and reports whether it goes (a second non-2xx final does not).
func (c *Context) upstreamFinal(code int) bool {
	if code >= 200 {
		if c.final && code >= 300 {
			return false
		}
		c.final = true
		c.cancelBranches()
	}
	return true
}
