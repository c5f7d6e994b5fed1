package tm

import (
	"net/netip"
	"strconv"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/asyncsip/asyncsip/reactor"
)

type txState uint8

const (
	stTrying txState = iota // client: Calling/Trying; server: Trying
	stProceeding
	stCompleted
	stConfirmed // INVITE server: ACK received
	stAccepted  // INVITE server after 2xx (RFC 6026)
	stTerminated
)

// serverTx is an RFC 3261 §17.2 server transaction, owned by one loop.
type serverTx struct {
	s               *Server
	ls              *loopState
	key             string
	req             *sip.Request
	src             netip.AddrPort // where the request came from
	dst             netip.AddrPort // where responses go (§18.2.2, RFC 3581)
	tp              Transport
	invite          bool
	state           txState
	last            []byte // last response sent, for retransmissions
	code            int    // status of the last response sent
	toTag           string
	timer           *reactor.Timer // G (retransmit): &timerT once armed
	timer2          *reactor.Timer // H, I, J, L (end): &timer2T once armed
	timerT, timer2T reactor.Timer  // armed in place (Loop.Arm)
	fin             bool           // a final response was sent (or the request dropped)
	gInt            time.Duration
	ctx             *Context
}

// serverKey is the §17.2.3 matching key: branch, sent-by and method (ACK
// matches its INVITE). Requests without the magic cookie fall back to the
// RFC 2543 identity: Call-ID, CSeq number, From tag and top Via.
func serverKey(req *sip.Request, method sip.RequestMethod) string {
	return string(appendServerKey(nil, req, method))
}

// appendServerKey appends serverKey's bytes to b: lookups use it with a
// per-loop buffer (ls.lookupKey), so a retransmission allocates no key.
func appendServerKey(b []byte, req *sip.Request, method sip.RequestMethod) []byte {
	via := req.Via()
	if method == sip.ACK {
		method = sip.INVITE
	}
	br, _ := via.Params.Get("branch")
	if len(br) > 7 && br[:7] == "z9hG4bK" {
		b = append(b, br...)
	} else {
		ft, _ := req.From().Params.Get("tag")
		b = append(b, "2543|"...)
		b = append(b, *req.CallID()...)
		b = append(b, '|')
		b = strconv.AppendUint(b, uint64(req.CSeq().SeqNo), 10)
		b = append(b, '|')
		b = append(b, ft...)
	}
	b = append(b, '|')
	b = append(b, via.Host...)
	b = append(b, ':')
	b = strconv.AppendInt(b, int64(via.Port), 10)
	b = append(b, '|')
	return append(b, method...)
}

// lookupKey returns serverKey(req, method) in ls's key buffer, valid until
// the next call: index maps with string(key), which does not allocate.
func (ls *loopState) lookupKey(req *sip.Request, method sip.RequestMethod) []byte {
	ls.kbuf = appendServerKey(ls.kbuf[:0], req, method)
	return ls.kbuf
}

// responseAddr is where responses to req go: the source IP (received) and
// the rport if asked for, else the Via port (RFC 3261 §18.2.2, RFC 3581).
func responseAddr(req *sip.Request, src netip.AddrPort) netip.AddrPort {
	via := req.Via()
	if _, ok := via.Params.Get("rport"); ok {
		return src
	}
	port := via.Port
	if port <= 0 {
		port = 5060
	}
	return netip.AddrPortFrom(src.Addr(), uint16(port))
}

func (s *Server) newServerTx(ls *loopState, key string, req *sip.Request, src netip.AddrPort, tp Transport) *serverTx {
	t := &serverTx{
		s: s, ls: ls, key: key, req: req, src: src, tp: tp,
		dst:    responseAddr(req, src),
		invite: req.Method == sip.INVITE,
		state:  stTrying,
	}
	if t.invite {
		t.state = stProceeding
	}
	ls.stx[key] = t
	s.txBytes.Add(liveTxBytes)
	s.stats.stxCreated.Add(1)
	s.stats.inProgress.Add(1)
	return t
}

// tag returns the To tag of the responses this proxy makes for the
// transaction, made on first use: a relayed call never needs one.
func (t *serverTx) tag() string {
	if t.toTag == "" {
		t.toTag = t.s.toTag(t.ls)
	}
	return t.toTag
}

// retransmit handles a retransmitted request: re-send the last response.
func (t *serverTx) retransmit() {
	t.s.stats.retransAbsorbed.Add(1)
	switch t.state {
	case stProceeding, stCompleted:
		if t.last != nil {
			_ = t.s.send(t.ls, t.tp, t.last, t.dst)
		}
	}
}

// respond sends resp on the transaction and moves its state machine.
func (t *serverTx) respond(resp *sip.Response) {
	if t.state == stAccepted && resp.StatusCode >= 200 && resp.StatusCode < 300 {
		// Every 2xx of a forked INVITE goes upstream (RFC 3261 §16.7 step 5).
		_ = t.s.sendMsg(t.ls, t.tp, resp, t.dst)
		return
	}
	if t.state >= stCompleted {
		return // a final response was already sent
	}
	t.respondWire(resp.StatusCode, t.ls.w.bytes(resp))
}

// respondWire is respond for a response with status code already in wire
// form; wire is copied (it is the last response, kept for
// retransmissions).
func (t *serverTx) respondWire(code int, wire []byte) {
	if t.state == stAccepted && code >= 200 && code < 300 {
		_ = t.s.send(t.ls, t.tp, wire, t.dst)
		return
	}
	if t.state >= stCompleted {
		return // a final response was already sent
	}
	t.last = append(t.last[:0], wire...)
	t.code = code
	_ = t.s.send(t.ls, t.tp, t.last, t.dst)
	if code < 200 {
		t.state = stProceeding
		return
	}
	t.finalized()
	tm := &t.s.timers
	l := t.ls.loop
	switch {
	case t.invite && code < 300:
		// RFC 6026: Accepted absorbs INVITE retransmissions for Timer L.
		t.state = stAccepted
		t.last = nil
		t.timer2 = t.arm2(l, 64*tm.T1, t.terminate)
	case t.invite:
		t.state = stCompleted
		t.releaseInvite()
		if t.reliable() {
			t.timer2 = t.arm2(l, 64*tm.T1, t.timeoutH)
			return
		}
		t.gInt = tm.T1
		l.Arm(&t.timerT, t.gInt, t.timerG)
		t.timer = &t.timerT
		t.timer2 = t.arm2(l, 64*tm.T1, t.timeoutH)
	default:
		t.state = stCompleted
		if t.reliable() {
			t.timer2 = t.arm2(l, 0, t.terminate) // Timer J is 0 over streams
			return
		}
		if !t.entomb() {
			t.timer2 = t.arm2(l, 64*tm.T1, t.terminate) // Timer J
		}
	}
}

// arm2 arms the end timer in place and returns it.
func (t *serverTx) arm2(l *reactor.Loop, d time.Duration, fn func()) *reactor.Timer {
	l.Arm(&t.timer2T, d, fn)
	return &t.timer2T
}

func (t *serverTx) reliable() bool { return t.tp.Protocol() != "UDP" }

func (t *serverTx) timerG() {
	if t.state != stCompleted {
		return
	}
	_ = t.s.send(t.ls, t.tp, t.last, t.dst)
	t.gInt = min(2*t.gInt, t.s.timers.T2)
	t.timer.Reset(t.gInt) // the timer that just fired: re-armed, not reallocated
}

// timeoutH: no ACK came for a non-2xx final response.
func (t *serverTx) timeoutH() {
	if t.state == stCompleted {
		t.terminate()
	}
}

// ack handles the ACK for a non-2xx final response (hop by hop, absorbed).
func (t *serverTx) ack() {
	if t.state != stCompleted {
		t.s.stats.retransAbsorbed.Add(1)
		return
	}
	t.state = stConfirmed
	t.timer.Stop()
	t.timer2.Stop()
	d := t.s.timers.T4 // Timer I
	if t.reliable() {
		d = 0
	}
	t.timer2 = t.arm2(t.ls.loop, d, t.terminate)
}

func (t *serverTx) terminate() {
	if t.state == stTerminated {
		return
	}
	t.finalized()
	t.state = stTerminated
	t.timer.Stop()
	t.timer2.Stop()
	if t.ls.stx[t.key] == t {
		delete(t.ls.stx, t.key)
	}
	t.s.txBytes.Add(-liveTxBytes)
	t.s.stats.stxDone.Add(1)
	if t.ctx != nil {
		t.ctx.serverTxEnded()
	}
}

// absorb ends the transaction without a response (the route dropped the
// request): retransmissions are absorbed silently until Timer J.
func (t *serverTx) absorb() {
	if t.state >= stCompleted {
		return
	}
	t.finalized()
	t.last = nil
	if !t.invite && !t.reliable() && t.entomb() {
		return
	}
	t.state = stCompleted
	t.timer2 = t.arm2(t.ls.loop, 64*t.s.timers.T1, t.terminate)
}

// finalized counts the transaction out of the in-progress gauge once.
func (t *serverTx) finalized() {
	if !t.fin {
		t.fin = true
		t.s.stats.inProgress.Add(-1)
		if t.ctx != nil {
			code := t.code
			if code < 200 {
				code = 0 // absorbed or ended without a final response
			}
			t.ctx.runEnd(code)
		}
	}
}
