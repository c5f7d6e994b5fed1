package tm

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/emiago/sipgo/sip"

	"github.com/asyncsip/asyncsip/reactor"
)

// Branch is one outgoing branch of a relayed request.
type Branch struct {
	// req is the request sent on this branch (Req).
	req *sip.Request
	// Index is the position of the branch in Context.Branches.
	Index int

	c          *Context
	tx         *clientTx
	resp       *sip.Response // final response (real or synthesized)
	wire       []byte        // a 2xx relayed from the index (indexed.go), parsed into resp when asked for
	code       int
	provisonal bool
	done       bool
	dropped    bool
	cancelWant bool
	cancelSent bool
	timerC     *reactor.Timer // &timerCT once armed
	guard      *reactor.Timer
	timerCT    reactor.Timer // armed in place (Loop.Arm)
}

// Req returns the request sent on this branch: a copy of Context.Req() with
// its own Request-URI. A Branch route may edit it.
func (b *Branch) Req() *sip.Request {
	if b.req == nil && b.tx != nil {
		b.req = b.tx.request() // a spliced branch (splice.go): parsed on first use
	}
	return b.req
}

// method is the branch request's method.
func (b *Branch) method() sip.RequestMethod {
	if b.req != nil {
		return b.req.Method
	}
	return b.c.Method()
}

// Drop stops the branch from being sent (in a Branch route).
func (b *Branch) Drop() { b.dropped = true }

// Code returns the final status of the branch (0 while pending).
func (b *Branch) Code() int { return b.code }

// A Branch is the txUser of its client transaction.
func (b *Branch) txResponse(resp *sip.Response) { b.c.onBranchResponse(b, resp) }
func (b *Branch) txTimeout()                    { b.c.branchFailed(b, 408, "Request Timeout") }
func (b *Branch) tx2xxRetrans(resp *sip.Response) bool {
	if b.c.holds2xx(b) {
		return true // the 2xx itself has not gone upstream yet: the UAS retransmits again
	}
	if first := b.Response(); first != nil && first.StatusCode == resp.StatusCode && sameToTag(first, resp) {
		// A retransmission goes upstream as the 2xx did: with the body
		// the reply route gave it (a media relay's SDP).
		if body := first.Body(); string(body) != string(resp.Body()) {
			resp.SetBody(body)
		}
	}
	b.c.forward2xxRetrans(resp)
	return true
}

// holds2xx reports whether a 2xx of b has not been relayed yet: a reply
// route suspended on it, or queued behind a suspended route.
func (c *Context) holds2xx(b *Branch) bool {
	if c.suspended && c.kind == RouteReply && c.cur == b && c.Resp != nil && c.Resp.StatusCode/100 == 2 {
		return true
	}
	for _, q := range c.queue {
		if q.br == b && q.resp.StatusCode/100 == 2 {
			return true
		}
	}
	return false
}

func sameToTag(a, b *sip.Response) bool {
	ta, tb := a.To(), b.To()
	if ta == nil || tb == nil {
		return false
	}
	x, _ := ta.Params.Get("tag")
	y, _ := tb.Params.Get("tag")
	return x == y
}

// Response returns the branch's final response, if any.
func (b *Branch) Response() *sip.Response {
	if b.resp == nil && b.wire != nil {
		// A 2xx relayed as bytes (indexed.go): parsed on first use.
		if m, err := parse(b.c.ls.parser, b.wire, b.c.s.lim); err == nil {
			b.resp, _ = m.(*sip.Response)
		}
		b.wire = nil
	}
	return b.resp
}

// Relay forwards the request statefully (RFC 3261 §16.6). With no targets it
// sends one branch to the Request-URI; each target ("sip:…" URI) starts a
// parallel branch with that Request-URI. The next hop is the destination set
// with SetDestination, else the first Route, else the Request-URI. Relay is
// allowed in the request and failure routes (the latter is serial forking).
// For an ACK or a request without transaction it forwards statelessly.
//
// When Relay returns an error, nothing was sent and nothing was answered:
// the route decides (another target, its own reply, or nothing). A request
// route that then does nothing gets the answer that fits the failure —
// 404 or 481 for a request addressed to this proxy without a Route, 482
// for another next hop that is this proxy, 404 for a host that does not
// resolve, 503 for no route, 440, 487 — instead of Config.AbandonCode.
// A failure route that does nothing sends the best response upstream.
// When the next hop needs a DNS lookup (Config.Lookup), Relay returns nil
// and suspends the route until it completes; a lookup that fails is
// answered the same way once the route is over.
func (c *Context) Relay(targets ...string) error {
	if err := c.refuseForeignRoute(); err != nil {
		return err
	}
	if c.stx == nil {
		// An ACK for a 2xx (or another request without transaction) goes
		// on statelessly, to the first target when one is given.
		if len(targets) > 0 {
			u, err := parseTarget(targets[0])
			if err != nil {
				return err
			}
			if badURI(&u) {
				return fmt.Errorf("%w: Request-URI", ErrInjection)
			}
			c.Req().Recipient = u
		}
		return c.Forward()
	}
	if c.kind != RouteRequest && c.kind != RouteFailure {
		return fmt.Errorf("%w: Relay in %s route", ErrWrongRoute, c.kind)
	}
	if c.final {
		return ErrFinalSent
	}
	if c.cancelled && c.stx.invite {
		return c.relayFailed(ErrCancelled)
	}
	if len(targets)+c.pendingBranches() > c.s.cfg.MaxBreadth {
		// RFC 5393 §5: more parallel branches than allowed.
		return c.relayFailed(fmt.Errorf("%w: %d parallel branches > %d", ErrMaxBreadth, len(targets), c.s.cfg.MaxBreadth))
	}
	var uris []sip.Uri
	if len(targets) == 0 {
		uris = c.ruris[:0]
	} else {
		uris = make([]sip.Uri, 0, len(targets))
	}
	for _, t := range targets {
		u, err := parseTarget(t)
		if err != nil {
			return c.relayFailed(err)
		}
		uris = append(uris, u)
	}
	c.ruriOrig = len(uris) == 0
	if len(uris) == 0 {
		uris = append(uris, c.Recipient())
	}
	return c.relayResolving(uris)
}

// relayTo starts one branch per URI; it fails when none could be sent.
func (c *Context) relayTo(uris []sip.Uri) error {
	c.stx.sendTrying()
	sent := 0
	var lastErr error
	for _, u := range uris {
		if err := c.startBranch(u); err != nil {
			lastErr = err
			continue
		}
		sent++
	}
	if sent == 0 {
		// RFC 3261 §16.6 step 8 / §16.9: nothing could be sent; the route
		// decides, else afterRequest answers (relayerror.go).
		return c.relayFailed(lastErr)
	}
	c.relayErr = nil
	c.acted = true
	return nil
}

// startBranch builds, routes and sends one branch: by splicing the
// request's bytes when it is not materialised and no Branch route may edit
// it (splice.go), else as a clone of the sipgo request.
func (c *Context) startBranch(ruri sip.Uri) error {
	if c.lazy() && c.routes.Branch == nil {
		return c.startSplicedBranch(ruri)
	}
	return c.startParsedBranch(ruri)
}

// startParsedBranch is startBranch for a materialised request.
func (c *Context) startParsedBranch(ruri sip.Uri) error {
	s := c.s
	req := c.Req().Clone()
	req.Recipient = *ruri.Clone()
	if mf := req.MaxForwards(); mf != nil {
		v := *mf - 1
		req.ReplaceHeader(&v)
	} else {
		v := sip.MaxForwardsHeader(70)
		req.AppendHeader(&v)
	}
	b := &Branch{req: req, Index: len(c.branches), c: c}
	if fn := c.routes.Branch; fn != nil {
		k, cur := c.kind, c.cur
		c.kind, c.cur = RouteBranch, b
		c.call(func() { fn(c) })
		c.kind, c.cur = k, cur
		if b.dropped {
			return fmt.Errorf("%w: branch %d", errBranchDropped, b.Index)
		}
	}
	if err := checkInjection(b.req); err != nil {
		return err
	}
	dst, tp, forced, err := c.nextHop(b.req)
	if err != nil {
		return err
	}
	if c.dst == "" {
		// The next hop was the first Route; if that is a strict router the
		// message itself is rewritten for it (RFC 3261 §16.6 step 7).
		strictRoute(b.req)
	}
	if !forced {
		tp = c.largeSwitch(b.req, dst, tp)
	}
	host, port := tp.Advertised()
	if !s.cfg.NoRecordRoute && recordRoutable(b.req) {
		c.recordRoute(b.req, dst, tp)
	}
	branch := s.newBranch(c.ls, b.req.Via())
	via := &sip.ViaHeader{ProtocolName: "SIP", ProtocolVersion: "2.0", Transport: tp.Protocol(),
		Host: host, Port: port, Params: sip.HeaderParams{{K: "branch", V: branch}}}
	b.req.PrependHeader(via)
	c.branches = append(c.branches, b)
	b.tx = s.startClientTx(c.ls, b.req, branch, dst, tp, b)
	if b.req.Method == sip.INVITE {
		c.ls.loop.Arm(&b.timerCT, c.firstTimerC(), func() { c.timerC(b) })
		b.timerC = &b.timerCT
	}
	return nil
}

// nextHop picks where a request goes: the destination override, the first
// Route, or the Request-URI, and the transport that URI asks for (forced
// reports that it named one: ;transport= or sips:).
func (c *Context) nextHop(req *sip.Request) (dst netip.AddrPort, tp Transport, forced bool, err error) {
	return c.nextHopURI(firstRoute(req), &req.Recipient)
}

// nextHopURI is nextHop for a request whose first Route is route (nil
// for none) and Request-URI ruri.
func (c *Context) nextHopURI(route *sip.RouteHeader, ruri *sip.Uri) (dst netip.AddrPort, tp Transport, forced bool, err error) {
	var u sip.Uri
	fromRURI := false
	switch {
	case c.dst != "":
		if u, err = parseTarget(c.dst); err != nil {
			return netip.AddrPort{}, nil, false, err
		}
	case route != nil:
		u = route.Address
	case c.flow.IsValid() && c.flow != c.src:
		// The dialog's Record-Route named the connection this request
		// goes back on (a flow token): use it while it is open.
		if tp, err := c.s.transportFor(c.flow, c.flowProto); err == nil {
			if ct, ok := tp.(ConnTracker); ok && ct.HasConn(c.flow) {
				return c.flow, tp, true, nil
			}
		}
		u, fromRURI = *ruri, true
	default:
		u, fromRURI = *ruri, true
	}
	proto := uriTransport(&u)
	port := u.Port
	if port <= 0 {
		port = defaultPort(proto)
	}
	var addr netip.AddrPort
	if h, ok := c.lookedUp(&u); ok {
		addr = h.Addr
		if proto == "" {
			proto = h.Transport
		}
	} else if addr, err = c.s.resolve(u.Host, port); err != nil {
		return netip.AddrPort{}, nil, false, err
	}
	tp, err = c.s.transportFor(addr, proto)
	if err != nil {
		return netip.AddrPort{}, nil, false, err
	}
	if c.s.isSelf(addr) {
		return netip.AddrPort{}, nil, false, loopError(addr, fromRURI)
	}
	return addr, tp, proto != "", nil
}

// Forward sends the request on statelessly (RFC 3261 §16.11): no client
// transaction, a branch derived from the incoming one so retransmissions get
// the same branch, and no state kept. The server transaction (if any) is
// released so retransmissions are forwarded again.
func (c *Context) Forward() error {
	if c.kind != RouteRequest {
		return fmt.Errorf("%w: Forward in %s route", ErrWrongRoute, c.kind)
	}
	if c.final {
		return ErrFinalSent
	}
	if err := c.refuseForeignRoute(); err != nil {
		return err
	}
	if c.lazy() {
		if done, err := c.forwardSpliced(); done {
			c.forwarded()
			return err
		}
	}
	s := c.s
	req := c.Req().Clone()
	if mf := req.MaxForwards(); mf != nil {
		if *mf == 0 {
			// RFC 3261 §16.3 step 3 for a request that is not answered
			// 483 (an ACK): not forwarded, rather than wrapped to 2^32-1.
			s.stats.countDrop("route")
			return fmt.Errorf("%w: Max-Forwards is 0", ErrLoop)
		}
		v := *mf - 1
		req.ReplaceHeader(&v)
	}
	dst, tp, _, err := c.nextHop(req)
	if err != nil {
		s.stats.countDrop("route")
		return err
	}
	host, port := tp.Advertised()
	branch := s.statelessBranch(c.ls, c.Req().Via(), c.Req().Recipient.String())
	via := &sip.ViaHeader{ProtocolName: "SIP", ProtocolVersion: "2.0", Transport: tp.Protocol(),
		Host: host, Port: port, Params: sip.HeaderParams{{K: "branch", V: branch}}}
	req.PrependHeader(via)
	s.stats.stateless.Add(1)
	err = s.sendMsg(c.ls, tp, req, dst)
	c.forwarded()
	return err
}

// forwarded ends the route's part after a stateless forward: the server
// transaction (if any) is released so retransmissions are forwarded again.
func (c *Context) forwarded() {
	c.acted = true
	if c.stx != nil {
		c.stx.ctx = nil
		c.stx.terminate()
		c.stx = nil
	}
}

// forwardResponseStateless sends a response that matches no transaction to
// the next Via, after removing ours (2xx retransmissions, responses to
// stateless forwards). Responses whose top Via is not ours are dropped.
func (s *Server) forwardResponseStateless(ls *loopState, resp *sip.Response) {
	via := resp.Via()
	br, _ := via.Params.Get("branch")
	if !s.ours(br) {
		s.stats.countDrop("stray")
		return
	}
	if !s.verifyBranch(ls, br, secondVia(resp)) {
		// Our branch, but the Via below it is not the one the request came
		// with (a forged response steering us to a third host), or the
		// branch was never ours.
		s.stats.countDrop("via")
		return
	}
	// On a stateful branch whose client transaction has ended, only a 2xx
	// to INVITE is still relayed (its retransmissions go upstream, RFC 3261
	// §16.7 step 5). Anything else is stray (RFC 6026 stops proxies from
	// forwarding those): a late 1xx, e.g. a 180 handed over between loops
	// after its 200 was read, would reach the UAC after the 200.
	if !isStatelessBranch(s, br) && (resp.StatusCode/100 != 2 || resp.CSeq().MethodName != sip.INVITE) {
		s.stats.countDrop("stray")
		return
	}
	resp.RemoveHeader("Via")
	next := resp.Via()
	if next == nil {
		s.stats.countDrop("stray")
		return
	}
	host := next.Host
	if r, ok := next.Params.Get("received"); ok && r != "" {
		host = r
	}
	port := next.Port
	if rp, ok := next.Params.Get("rport"); ok && rp != "" {
		if p, err := strconv.Atoi(rp); err == nil {
			port = p
		}
	}
	proto := strings.ToUpper(next.Transport)
	if port <= 0 {
		port = defaultPort(proto)
	}
	addr, err := s.resolve(host, port)
	if err != nil {
		s.stats.countDrop("route")
		return
	}
	tp, err := s.transportFor(addr, proto)
	if err != nil {
		tp, err = s.transportFor(addr, "") // a Via transport we lack: as before, by family
	}
	if err != nil {
		s.stats.countDrop("route")
		return
	}
	s.stats.stateless.Add(1)
	_ = s.sendMsg(ls, tp, resp, addr)
}

// isStatelessBranch reports whether br, one of our branches, was made by
// Forward (no client transaction) rather than by a stateful branch.
func isStatelessBranch(s *Server, br string) bool { return s.branchKind(br) == 's' }

// secondVia returns the Via below the top one of resp (nil if none).
func secondVia(resp *sip.Response) *sip.ViaHeader {
	n := 0
	for _, h := range resp.Headers() {
		if v, ok := h.(*sip.ViaHeader); ok {
			if n == 1 {
				return v
			}
			n++
		}
	}
	return nil
}

// pendingBranches counts branches without a final response.
func (c *Context) pendingBranches() int {
	n := 0
	for _, b := range c.branches {
		if !b.done {
			n++
		}
	}
	return n
}

// checkInjection refuses a message whose header values would let CR or LF
// into the wire format (a route that copied untrusted data into a header).
// Parsed headers cannot contain them; only values set by code can. The
// check reads fields directly so it allocates nothing.
func checkInjection(m sip.Message) error {
	var hs []sip.Header
	switch v := m.(type) {
	case *sip.Request:
		hs = v.Headers()
		if badURI(&v.Recipient) {
			return fmt.Errorf("%w: Request-URI", ErrInjection)
		}
	case *sip.Response:
		hs = v.Headers()
		if hasCRLF(v.Reason) {
			return fmt.Errorf("%w: reason phrase", ErrInjection)
		}
	}
	for _, h := range hs {
		bad := false
		switch x := h.(type) {
		case *sip.ViaHeader, *sip.CSeqHeader, *sip.MaxForwardsHeader, *sip.ContentLengthHeader:
		case *sip.CallIDHeader:
			bad = hasCRLF(string(*x))
		case *sip.FromHeader:
			bad = hasCRLF(x.DisplayName) || badURI(&x.Address)
		case *sip.ToHeader:
			bad = hasCRLF(x.DisplayName) || badURI(&x.Address)
		case *sip.ContactHeader:
			bad = hasCRLF(x.DisplayName) || badURI(&x.Address)
		case *sip.RouteHeader:
			bad = badURI(&x.Address)
		case *sip.RecordRouteHeader:
			bad = badURI(&x.Address)
		default:
			bad = hasCRLF(h.Name()) || strings.ContainsAny(h.Name(), ": ") || hasCRLF(h.Value())
		}
		if bad {
			return fmt.Errorf("%w: header %q", ErrInjection, h.Name())
		}
	}
	return nil
}

func hasCRLF(s string) bool { return strings.ContainsAny(s, "\r\n") }

// badURI reports a URI with CR or LF in any part sipgo writes: a
// parameter's or URI header's value is written as it is (quoted when it
// has special characters), so a line break there splits the start line or
// the header it is in.
func badURI(u *sip.Uri) bool {
	if hasCRLF(u.User) || hasCRLF(u.Host) || hasCRLF(u.Password) || hasCRLF(u.Raw()) {
		return true
	}
	for _, ps := range [...]sip.HeaderParams{u.UriParams, u.Headers} {
		for _, kv := range ps {
			if hasCRLF(kv.K) || hasCRLF(kv.V) {
				return true
			}
		}
	}
	return false
}

// strictRoute applies RFC 3261 §16.6 step 7: when the next hop is a strict
// router (its Route URI has no ;lr), the Request-URI moves to the end of
// the Route set and the first Route becomes the Request-URI.
func strictRoute(req *sip.Request) bool {
	first := firstRoute(req)
	if first == nil || first.Address.UriParams.Has("lr") {
		return false
	}
	next := *first.Address.Clone()
	req.RemoveHeader("Route")
	req.AppendHeader(&sip.RouteHeader{Address: *req.Recipient.Clone()})
	req.Recipient = next
	return true
}
