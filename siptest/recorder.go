package siptest

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/emiago/sipgo/sip"

	"github.com/asyncsip/asyncsip/tm"
)

// Result records what the proxy did with one request sent by
// Harness.Send, and keeps recording as the test goes on (downstream
// responses, completed awaits, timers): responses sent upstream, requests
// relayed or forwarded downstream, and awaits. Its String is the whole
// exchange, message by message, which the Assert functions print on
// failure.
type Result struct {
	// Req is the request as the test sent it.
	Req *sip.Request

	h       *Harness
	ctx     *tm.Context
	replies []*Reply
	relayed []*Relayed
	awaits  []*Await
	events  []event
}

// Reply is a response the proxy sent upstream for the request: one it made
// (100 Trying, a route's Reply, 487, 503…) or one it relayed from
// downstream.
type Reply struct {
	*sip.Response
	// Addr is where it was sent.
	Addr netip.AddrPort

	retransmission bool // the same bytes were sent upstream before
}

// Relayed is a request the proxy sent downstream: a stateful branch (see
// Result.Relayed) or a stateless forward (Result.Forwarded), as it went on
// the wire — with the proxy's Via on top, its Record-Route, Max-Forwards
// decremented.
type Relayed struct {
	*sip.Request
	// Addr is the next hop it was sent to.
	Addr netip.AddrPort
	// Stateless is true for a stateless forward (tm.Context.Forward, or
	// an ACK for a 2xx).
	Stateless bool

	h         *Harness
	res       *Result
	toTag     string
	retrans   int
	cancels   []*sip.Request
	acks      []*sip.Request
	responses []*sip.Response
}

// Context returns the tm.Context of the request's transaction, to look at
// what the routes left in it (Get, Flag, Destination, Cancelled…); nil for
// a request tm handled without running the request route (a CANCEL, an ACK
// for a non-2xx).
func (r *Result) Context() *tm.Context { return r.ctx }

// Replies returns the distinct responses sent upstream, in order, 100
// Trying included: a retransmission of a response (the same message sent
// again, by a timer or for a retransmitted request) is left out. Harness.Sent
// and AssertRepliesOnWire see every copy.
func (r *Result) Replies() []*Reply {
	out := make([]*Reply, 0, len(r.replies))
	for _, rp := range r.replies {
		if !rp.retransmission {
			out = append(out, rp)
		}
	}
	return out
}

// LastReply returns the last response sent upstream, or nil.
func (r *Result) LastReply() *Reply {
	if len(r.replies) == 0 {
		return nil
	}
	return r.replies[len(r.replies)-1]
}

// Final returns the first final (>= 200) response sent upstream, or nil.
func (r *Result) Final() *Reply {
	for _, rp := range r.replies {
		if rp.StatusCode >= 200 {
			return rp
		}
	}
	return nil
}

// codes returns the status codes of the distinct responses sent upstream
// (see Replies), in order.
func (r *Result) codes() []int { return statusCodes(r.Replies()) }

func statusCodes(replies []*Reply) []int {
	out := make([]int, 0, len(replies))
	for _, rp := range replies {
		out = append(out, rp.StatusCode)
	}
	return out
}

// Relayed returns the stateful branches sent downstream, in order (serial
// forking from a failure route appends to them).
func (r *Result) Relayed() []*Relayed { return r.sentDown(false) }

// Forwarded returns the requests forwarded statelessly.
func (r *Result) Forwarded() []*Relayed { return r.sentDown(true) }

func (r *Result) sentDown(stateless bool) []*Relayed {
	var out []*Relayed
	for _, x := range r.relayed {
		if x.Stateless == stateless {
			out = append(out, x)
		}
	}
	return out
}

// Branch returns Relayed()[i], or fails the test with the exchange when
// there is no such branch.
func (r *Result) Branch(i int) *Relayed {
	r.h.t.Helper()
	br := r.Relayed()
	if i < 0 || i >= len(br) {
		r.h.t.Fatalf("siptest: no relayed branch %d (%d relayed)\n%s", i, len(br), r)
	}
	return br[i]
}

// Awaits returns the awaits made by the routes of this transaction.
func (r *Result) Awaits() []*Await { return r.awaits }

// Await returns Awaits()[i], or fails the test with the exchange when there
// is no such await.
func (r *Result) Await(i int) *Await {
	r.h.t.Helper()
	if i < 0 || i >= len(r.awaits) {
		r.h.t.Fatalf("siptest: no await %d (%d awaited)\n%s", i, len(r.awaits), r)
	}
	return r.awaits[i]
}

// Suspended reports whether a route of the transaction waits on an await
// now.
func (r *Result) Suspended() bool {
	for _, w := range r.awaits {
		if w.state == AwaitPending || w.state == AwaitRunning {
			return true
		}
	}
	return false
}

// dropped reports whether the request got no answer at all: no final
// response, nothing sent downstream, and nothing awaited.
func (r *Result) dropped() bool {
	return r.Final() == nil && len(r.relayed) == 0 && !r.Suspended()
}

// String returns the exchange: every message received and sent for this
// request, with the awaits, in order.
func (r *Result) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "--- siptest: %s %s (Call-ID %s): %d event(s)\n", r.Req.Method, r.Req.Recipient.String(), callID(r.Req), len(r.events))
	for i, e := range r.events {
		fmt.Fprintf(&b, "[%d] %s\n", i+1, e)
	}
	return b.String()
}

func (r *Result) add(e event) { r.events = append(r.events, e) }

// Target returns the Request-URI the request was sent with.
func (x *Relayed) Target() string { return x.Recipient.String() }

// Result returns the Result of the transaction the request belongs to.
func (x *Relayed) Result() *Result { return x.res }

// Retransmissions returns how many times tm retransmitted the request
// (Timer A or E, as the clock advanced).
func (x *Relayed) Retransmissions() int { return x.retrans }

// Cancels returns the CANCELs tm sent for this branch.
func (x *Relayed) Cancels() []*sip.Request { return x.cancels }

// Cancelled reports whether tm sent a CANCEL for this branch.
func (x *Relayed) Cancelled() bool { return len(x.cancels) > 0 }

// Acks returns the ACKs tm sent for this branch's non-2xx final responses.
func (x *Relayed) Acks() []*sip.Request { return x.acks }

// Responses returns the responses injected with Respond.
func (x *Relayed) Responses() []*sip.Response { return x.responses }

// Respond makes the next hop answer the request with code, and feeds the
// response to the proxy from x.Addr, as a UAS would send it (Vias,
// Record-Route, From, To with a tag for code > 100 — the same tag for every
// response of this branch — Call-ID, CSeq; a Contact for a 1xx or 2xx to an
// INVITE). Options add headers (WithHeader, WithBody,
// WithToTag, WithContact). It returns the transaction's Result.
func (x *Relayed) Respond(code int, opts ...MessageOption) *Result {
	x.h.t.Helper()
	resp := x.h.response("Respond", x.Request, x.Addr, &x.toTag, code, opts)
	x.responses = append(x.responses, resp)
	x.res.add(event{dir: dirIn, msg: resp, addr: x.Addr})
	x.h.receive([]byte(resp.String()), x.Addr)
	return x.res
}

// response builds the answer of the next hop at addr to req, as a UAS
// would send it (see Relayed.Respond); *toTag is the tag of the answering
// side, chosen once and kept there. fn names the caller in failures.
func (h *Harness) response(fn string, req *sip.Request, addr netip.AddrPort, toTag *string, code int, opts []MessageOption) *sip.Response {
	h.t.Helper()
	if code < 100 || code > 699 {
		h.t.Fatalf("siptest: %s(%d): not a status code", fn, code)
	}
	m := &message{}
	for _, o := range opts {
		o(m)
	}
	resp := sip.NewResponse(code, tm.StatusText(code))
	for _, name := range []string{"Via", "Record-Route"} {
		for _, hd := range req.GetHeaders(name) {
			resp.AppendHeader(sip.HeaderClone(hd))
		}
	}
	resp.AppendHeader(sip.HeaderClone(req.From()))
	to := sip.HeaderClone(req.To()).(*sip.ToHeader)
	if m.toTag != "" {
		*toTag = m.toTag
	}
	if code > 100 && !to.Params.Has("tag") {
		if *toTag == "" {
			*toTag = randomTag()
		}
		to.Params.Add("tag", *toTag)
	}
	resp.AppendHeader(to)
	resp.AppendHeader(sip.HeaderClone(req.CallID()))
	resp.AppendHeader(sip.HeaderClone(req.CSeq()))
	if m.contact != "" || (req.Method == sip.INVITE && code > 100 && code < 300) {
		resp.AppendHeader(sip.NewHeader("Contact", addrSpec(m.contact, "sip:"+addr.String())))
	}
	for _, hd := range m.headers {
		if strings.ContainsAny(hd[0]+hd[1], "\r\n") || strings.ContainsAny(hd[0], ": ") {
			h.t.Fatalf("siptest: "+fn+": WithHeader(%q, %q): a header name or value with CR, LF, colon or space", hd[0], hd[1])
		}
		resp.AppendHeader(sip.NewHeader(hd[0], hd[1]))
	}
	if m.body != "" {
		resp.AppendHeader(sip.NewHeader("Content-Type", m.ctype))
	}
	resp.SetBody([]byte(m.body))
	removeHeaders(resp, m.without)
	return resp
}

// sent records a message the server handed to the transport.
func (h *Harness) sent(b []byte, to netip.AddrPort) error {
	msg, err := sip.ParseMessage(append([]byte(nil), b...))
	if err != nil {
		h.t.Errorf("siptest: the server sent an unparsable message to %s: %v\n%s", to, err, b)
		return nil
	}
	h.wire = append(h.wire, Sent{Msg: msg, To: to})
	e := event{dir: dirOut, msg: msg, addr: to}
	if h.unreachable[to] {
		e.note = "send failed: unreachable"
	}
	switch m := msg.(type) {
	case *sip.Response:
		h.sentResponse(m, e)
	case *sip.Request:
		h.sentRequest(m, e)
	}
	if h.unreachable[to] {
		return fmt.Errorf("%w: %s", errUnreachable, to)
	}
	return nil
}

func (h *Harness) sentResponse(resp *sip.Response, e event) {
	res := h.results[responseKey(resp)]
	if res == nil {
		h.stray = append(h.stray, e)
		return
	}
	if e.note == "" {
		rp := &Reply{Response: resp, Addr: e.addr, retransmission: res.sentBefore(resp, e.addr)}
		if rp.retransmission {
			e.note = "retransmission"
		}
		res.replies = append(res.replies, rp)
	}
	res.add(e)
}

// sentBefore reports whether resp, as serialized, was already sent to addr
// for this request: tm retransmits the bytes it sent.
func (r *Result) sentBefore(resp *sip.Response, addr netip.AddrPort) bool {
	s := resp.String()
	for _, rp := range r.replies {
		if rp.Addr == addr && rp.StatusCode == resp.StatusCode && rp.String() == s {
			return true
		}
	}
	return false
}

func (h *Harness) sentRequest(req *sip.Request, e event) {
	vias := req.GetHeaders("Via")
	top := topBranch(req)
	method := string(req.Method)
	if x := h.outgoing[top+"|"+method]; x != nil {
		x.retrans++
		e.note = joinNote(e.note, "retransmission")
		x.res.add(e)
		return
	}
	if method == "CANCEL" || method == "ACK" {
		if x := h.outgoing[top+"|INVITE"]; x != nil {
			if method == "CANCEL" {
				x.cancels = append(x.cancels, req)
			} else {
				x.acks = append(x.acks, req)
			}
			e.note = joinNote(e.note, "hop-by-hop, for the branch")
			x.res.add(e)
			return
		}
	}
	if h.sentOriginated(req, e) {
		return
	}
	var res *Result
	if len(vias) > 1 {
		if v, ok := vias[1].(*sip.ViaHeader); ok {
			br, _ := v.Params.Get("branch")
			res = h.results[br+"|"+method]
		}
	}
	if res == nil {
		h.stray = append(h.stray, e)
		return
	}
	x := &Relayed{Request: req, Addr: e.addr, Stateless: !h.isBranch(res, top), h: h, res: res}
	if x.Stateless {
		e.note = joinNote(e.note, "stateless")
	}
	if !h.unreachable[e.addr] { // a failed send is in the exchange only
		h.outgoing[top+"|"+method] = x
		res.relayed = append(res.relayed, x)
	}
	res.add(e)
}

// isBranch reports whether branch is the Via branch of one of the
// transaction's stateful branches.
func (h *Harness) isBranch(res *Result, branch string) bool {
	if res.ctx == nil {
		return false
	}
	for _, b := range res.ctx.Branches() {
		if v := b.Req().Via(); v != nil {
			if br, _ := v.Params.Get("branch"); br == branch {
				return true
			}
		}
	}
	return false
}

func joinNote(a, b string) string {
	if a == "" {
		return b
	}
	return a + ", " + b
}

// requestKey identifies the transaction of a request: top Via branch and
// method (RFC 3261 §17.2.3), or Call-ID and CSeq without a branch.
func requestKey(req *sip.Request) string {
	if br := topBranch(req); br != "" {
		return br + "|" + string(req.Method)
	}
	seq := uint32(0)
	if cs := req.CSeq(); cs != nil {
		seq = cs.SeqNo
	}
	return fmt.Sprintf("%s|%d|%s", callID(req), seq, req.Method)
}

// responseKey is the requestKey of the request a response answers.
func responseKey(resp *sip.Response) string {
	cs := resp.CSeq()
	if cs == nil {
		return ""
	}
	if br := topBranch(resp); br != "" {
		return br + "|" + string(cs.MethodName)
	}
	return fmt.Sprintf("%s|%d|%s", callID(resp), cs.SeqNo, cs.MethodName)
}

func topBranch(m sip.Message) string {
	if v := m.Via(); v != nil {
		if br, ok := v.Params.Get("branch"); ok && strings.HasPrefix(br, "z9hG4bK") {
			return br
		}
	}
	return ""
}

func callID(m sip.Message) string {
	if id := m.CallID(); id != nil {
		return id.Value()
	}
	return ""
}

// event is one line of a Result's exchange.
type event struct {
	dir  direction
	msg  sip.Message
	addr netip.AddrPort
	note string // for an await: its description when the event happened
}

type direction uint8

const (
	dirIn    direction = iota + 1 // to the proxy
	dirOut                        // from the proxy
	dirAwait                      // a route awaited an op
)

func (e event) String() string {
	if e.dir == dirAwait {
		return "await " + e.note
	}
	arrow := fmt.Sprintf("%s -> proxy", e.addr)
	if e.dir == dirOut {
		arrow = fmt.Sprintf("proxy -> %s", e.addr)
	}
	if e.note != "" {
		arrow += " (" + e.note + ")"
	}
	return arrow + "\n" + indent(e.msg.String())
}

func indent(s string) string {
	s = strings.TrimRight(strings.ReplaceAll(s, "\r\n", "\n"), "\n")
	return "    " + strings.ReplaceAll(s, "\n", "\n    ")
}
