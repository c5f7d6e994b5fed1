package tm

import (
	"net/netip"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/asyncsip/asyncsip/reactor"
)

// clientTx is an RFC 3261 §17.1 client transaction, owned by one loop.
type clientTx struct {
	s       *Server
	ls      *loopState
	key     string // branch|method
	branch  string
	req     *sip.Request // as sent (kept for ACK and CANCEL construction)
	wire    []byte
	dst     netip.AddrPort
	tp      Transport
	invite  bool
	state   txState
	retr    *reactor.Timer // A or E: &retrT
	end     *reactor.Timer // B, F, D, K or M: &endT
	retrT   reactor.Timer  // armed in place (Loop.Arm): no allocation per arming
	endT    reactor.Timer
	onEnd   func() // t.endFired, made once
	rInt    time.Duration
	user    txUser
	ackWire []byte
}

// txUser gets what a client transaction reports, on its owner loop: a
// Branch of a relayed request, an originated request, or nobody (noUser:
// a CANCEL). An interface over pointers the transaction already has, not
// closures: starting a transaction allocates no callbacks.
type txUser interface {
	// txResponse gets every response except retransmissions absorbed by
	// the state machine.
	txResponse(resp *sip.Response)
	// txTimeout runs on Timer B/F or a transport error.
	txTimeout()
	// tx2xxRetrans gets the 2xx retransmissions (and 2xx from other forks)
	// that arrive in the RFC 6026 Accepted state; false means nobody takes
	// them (they are counted as absorbed).
	tx2xxRetrans(resp *sip.Response) bool
}

// noUser is the txUser of a transaction whose outcome nobody waits for.
type noUser struct{}

func (noUser) txResponse(*sip.Response)        {}
func (noUser) txTimeout()                      {}
func (noUser) tx2xxRetrans(*sip.Response) bool { return false }

func clientKey(branch string, method sip.RequestMethod) string { return branch + "|" + string(method) }

// startClientTx sends req (whose top Via carries branch) to dst and starts
// the §17.1 state machine.
func (s *Server) startClientTx(ls *loopState, req *sip.Request, branch string, dst netip.AddrPort, tp Transport,
	user txUser) *clientTx {
	t := &clientTx{
		s: s, ls: ls, key: clientKey(branch, req.Method), branch: branch, req: req,
		dst: dst, tp: tp, invite: req.Method == sip.INVITE, state: stTrying,
		user: user,
	}
	t.wire = append([]byte(nil), ls.w.bytes(req)...)
	t.start()
	return t
}

// start registers t, sends t.wire and arms its timers.
func (t *clientTx) start() {
	s, ls, tp, dst := t.s, t.ls, t.tp, t.dst
	t.retr, t.end = &t.retrT, &t.endT
	t.onEnd = t.endFired
	ls.ctx[t.key] = t
	s.stats.ctxCreated.Add(1)
	if err := s.send(ls, tp, t.wire, dst); err != nil {
		// RFC 3261 §8.1.3.1: a transport error is reported like a timeout,
		// but after this call returns so the caller sees a started tx.
		ls.loop.PostUrgent(func() { t.timeout() })
		return
	}
	tm := &s.timers
	if !t.reliable() {
		t.rInt = tm.T1
		ls.loop.Arm(t.retr, t.rInt, t.retransmit)
	}
	ls.loop.Arm(t.end, 64*tm.T1, t.onEnd) // Timer B or F
}

// startClientTxWire is startClientTx for a request already in wire form
// (a spliced branch, splice.go) with key clientKey(branch, method); t.wire
// is wire, which the caller hands over. The sipgo request is parsed from
// it only if asked for (request).
func (s *Server) startClientTxWire(ls *loopState, wire []byte, key, branch string, dst netip.AddrPort,
	tp Transport, user txUser) *clientTx {
	t := &clientTx{
		s: s, ls: ls, key: key, branch: branch, wire: wire,
		dst: dst, tp: tp, invite: key[len(branch)+1:] == string(sip.INVITE), state: stTrying,
		user: user,
	}
	t.start()
	return t
}

// request returns the request as sent, parsed from the wire when it was
// spliced (CANCEL and ACK construction, Branch.Req).
func (t *clientTx) request() *sip.Request {
	if t.req == nil {
		if m, err := parse(t.ls.parser, t.wire, t.s.lim); err == nil {
			t.req, _ = m.(*sip.Request)
		}
	}
	return t.req
}

// sentTo reports whether a response received from src over tp comes from
// where t was sent: the same address and port, over the same protocol (for
// a connection-oriented transport, src is the connection's peer, so this
// is the connection the request went out on or the one its peer opened).
func (t *clientTx) sentTo(src netip.AddrPort, tp Transport) bool {
	if src.Addr().Unmap() != t.dst.Addr().Unmap() || src.Port() != t.dst.Port() {
		return false
	}
	return tp == nil || strings.EqualFold(tp.Protocol(), t.tp.Protocol())
}

func (t *clientTx) reliable() bool { return t.tp.Protocol() != "UDP" }

// retransmit is Timer A (INVITE) or Timer E (non-INVITE).
func (t *clientTx) retransmit() {
	switch {
	case t.state == stTrying:
	case t.state == stProceeding && !t.invite:
	default:
		return
	}
	_ = t.s.send(t.ls, t.tp, t.wire, t.dst)
	if t.invite {
		t.rInt *= 2 // Timer A doubles without a cap
	} else if t.state == stProceeding {
		t.rInt = t.s.timers.T2
	} else {
		t.rInt = min(2*t.rInt, t.s.timers.T2)
	}
	t.retr.Reset(t.rInt) // the timer that just fired: re-armed, not reallocated
}

// timeout is Timer B or F: the peer never gave a final response.
func (t *clientTx) timeout() {
	if t.state != stTrying && t.state != stProceeding {
		return
	}
	// An INVITE that got a provisional response is bounded by Timer C in
	// the proxy core, not by Timer B (RFC 3261 §17.1.1.2).
	if t.invite && t.state == stProceeding {
		return
	}
	t.terminate()
	t.user.txTimeout()
}

// receive runs the state machine for a response matched to t.
func (t *clientTx) receive(resp *sip.Response) {
	code := resp.StatusCode
	switch t.state {
	case stTrying, stProceeding:
	case stAccepted:
		// RFC 6026 §7.2: 2xx retransmissions go on to the core; anything
		// else (a provisional overtaken by the 2xx, reordered on another
		// loop) is absorbed so it is never relayed after the final.
		if t.absorbs(code) || !t.user.tx2xxRetrans(resp) {
			t.s.stats.retransAbsorbed.Add(1)
		}
		return
	case stCompleted:
		t.absorb(code)
		return
	default:
		return
	}
	if code < 200 {
		t.provisional()
		t.user.txResponse(resp)
		return
	}
	if code < 300 {
		t.success()
		t.user.txResponse(resp)
		return
	}
	t.retr.Stop()
	t.end.Stop()
	switch {
	case t.invite:
		t.sendACK(resp)
		t.state = stCompleted
		d := 32 * time.Second // Timer D
		if t.reliable() {
			d = 0
		}
		t.ls.loop.Arm(t.end, d, t.onEnd)
	default:
		t.completed()
	}
	t.user.txResponse(resp)
}

// success moves t on a 2xx final response, received in Trying or
// Proceeding.
func (t *clientTx) success() {
	t.retr.Stop()
	t.end.Stop()
	if !t.invite {
		t.completed()
		return
	}
	// RFC 6026: the INVITE client transaction waits in Accepted for Timer
	// M, passing 2xx retransmissions on and absorbing late provisionals;
	// after it, stray 2xx are forwarded statelessly.
	t.state = stAccepted
	t.ls.loop.Arm(t.end, 64*t.s.timers.T1, t.onEnd)
}

// completed moves a non-INVITE t to Completed (Timer K).
func (t *clientTx) completed() {
	t.state = stCompleted
	d := t.s.timers.T4 // Timer K
	if t.reliable() {
		d = 0
	}
	t.ls.loop.Arm(t.end, d, t.onEnd)
}

// endFired is the end timer: Timer B or F before a final response (a
// timeout), then Timer D, K or M (the end of the transaction).
func (t *clientTx) endFired() {
	if t.state == stTrying || t.state == stProceeding {
		t.timeout()
		return
	}
	t.terminate()
}

// provisional moves t to Proceeding on a provisional response: Timer A
// stops; Timer E continues, at T2.
func (t *clientTx) provisional() {
	if t.state == stTrying {
		t.state = stProceeding
		if t.invite {
			t.retr.Stop()
		}
	}
}

// absorbs reports whether a response with status code, matched to t, is
// absorbed by the state machine without reaching the core: anything after
// a non-2xx final (Completed), and anything but a 2xx in Accepted.
func (t *clientTx) absorbs(code int) bool {
	switch t.state {
	case stCompleted:
		return true
	case stAccepted:
		return code < 200 || code >= 300
	}
	return false
}

// absorb counts a response that absorbs says is absorbed; a retransmitted
// non-2xx final of an INVITE gets the ACK again (§17.1.1.2).
func (t *clientTx) absorb(code int) {
	if t.state == stCompleted && t.invite && code >= 300 && t.ackWire != nil {
		_ = t.s.send(t.ls, t.tp, t.ackWire, t.dst)
	}
	t.s.stats.retransAbsorbed.Add(1)
}

// sendACK builds the hop-by-hop ACK for a non-2xx final (§17.1.1.3).
func (t *clientTx) sendACK(resp *sip.Response) {
	req := t.request()
	if req == nil {
		return
	}
	ack := sip.NewRequest(sip.ACK, *req.Recipient.Clone())
	ack.SipVersion = "SIP/2.0"
	ack.AppendHeader(req.Via().Clone())
	for _, h := range req.GetHeaders("Route") {
		ack.AppendHeader(sip.HeaderClone(h))
	}
	if h := req.MaxForwards(); h != nil {
		mf := sip.MaxForwardsHeader(70)
		ack.AppendHeader(&mf)
	}
	ack.AppendHeader(sip.HeaderClone(req.From()))
	ack.AppendHeader(sip.HeaderClone(resp.To()))
	ack.AppendHeader(sip.HeaderClone(req.CallID()))
	ack.AppendHeader(&sip.CSeqHeader{SeqNo: req.CSeq().SeqNo, MethodName: sip.ACK})
	cl := sip.ContentLengthHeader(0)
	ack.AppendHeader(&cl)
	t.ackWire = append([]byte(nil), t.ls.w.bytes(ack)...)
	_ = t.s.send(t.ls, t.tp, t.ackWire, t.dst)
}

func (t *clientTx) terminate() {
	if t.state == stTerminated {
		return
	}
	t.state = stTerminated
	t.retr.Stop()
	t.end.Stop()
	if t.ls.ctx[t.key] == t {
		delete(t.ls.ctx, t.key)
	}
	t.s.stats.ctxDone.Add(1)
}
