package tm

import (
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/asyncsip/asyncsip/async"
	"github.com/asyncsip/asyncsip/reactor"
)

// The life of one originated request (uac.go has the API): its client
// transaction on the Call-ID's owner loop, the result posted back to the
// caller's loop, the bound, and the end that releases its slot.

// originated is one originated request. The first fields are set before
// start and read-only after; caller-side fields are touched on the
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
			if ct, ok := tp.(ConnTracker); ok && ct.HasConn(flow) {
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
	o.tx = s.startClientTx(ls, req, branch, dst, tp, o)
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

// txResponse gets the client transaction's responses (owner loop).
func (o *originated) txResponse(resp *sip.Response) {
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

// tx2xxRetrans: an originated request is never an INVITE (no Accepted
// state), so there are none to take.
func (o *originated) tx2xxRetrans(*sip.Response) bool { return false }

// txTimeout is Timer F, or a transport error reported by the transaction.
func (o *originated) txTimeout() {
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
