package siptest

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/emiago/sipgo/sip"

	"github.com/asyncsip/asyncsip/reactor"
)

// Originated is a request the proxy sent on its own (tm.Server.Send): an
// OPTIONS probe from a timer job, a BYE that ends a call, a NOTIFY. It is
// recorded as it went on the wire, with the proxy's Via, and the test
// answers it as the next hop would, like a relayed branch:
//
//	h.Run(func(l *reactor.Loop) { async.Launch(l, h.Server.Send(req, tm.SendOptions{}), report) })
//	h.Originated()[0].Respond(200)
type Originated struct {
	*sip.Request
	// Addr is the next hop it was sent to.
	Addr netip.AddrPort

	h         *Harness
	toTag     string
	retrans   int
	responses []*sip.Response
	events    []event
}

// Originated returns the requests the proxy originated (tm.Server.Send),
// in the order they were first sent; retransmissions are counted on each
// (Retransmissions), not listed.
func (h *Harness) Originated() []*Originated { return h.originated }

// Retransmissions returns how many times tm retransmitted the request
// (Timer E, as the clock advanced).
func (o *Originated) Retransmissions() int { return o.retrans }

// Responses returns the responses injected with Respond.
func (o *Originated) Responses() []*sip.Response { return o.responses }

// Respond makes the next hop answer the request with code, fed to the
// proxy from o.Addr — or from the address WithSource gives, to see tm drop
// a response that does not come from where its request went — built as
// Relayed.Respond builds it (the same options). It returns o.
func (o *Originated) Respond(code int, opts ...MessageOption) *Originated {
	o.h.t.Helper()
	resp := o.h.response("Originated.Respond", o.Request, o.Addr, &o.toTag, code, opts)
	var m message
	for _, opt := range opts {
		opt(&m)
	}
	if m.source.IsValid() && m.source != o.Addr {
		o.events = append(o.events, event{dir: dirIn, msg: resp, addr: m.source, note: "not the next hop"})
		o.h.receive([]byte(resp.String()), m.source)
		return o
	}
	o.responses = append(o.responses, resp)
	o.events = append(o.events, event{dir: dirIn, msg: resp, addr: o.Addr})
	o.h.receive([]byte(resp.String()), o.Addr)
	return o
}

// String returns the exchange: the request and every copy of it, and the
// responses injected.
func (o *Originated) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "--- siptest: originated %s %s (Call-ID %s): %d event(s)\n", o.Method, o.Recipient.String(), callID(o.Request), len(o.events))
	for i, e := range o.events {
		fmt.Fprintf(&b, "[%d] %s\n", i+1, e)
	}
	return b.String()
}

// sentOriginated records req if it is an originated request: the only Via
// is the proxy's (a relayed request keeps the Vias it came with, and the
// hop-by-hop ACK and CANCEL of a branch were matched before).
func (h *Harness) sentOriginated(req *sip.Request, e event) bool {
	if len(req.GetHeaders("Via")) != 1 {
		return false
	}
	key := topBranch(req) + "|" + string(req.Method)
	if o := h.originatedBy[key]; o != nil {
		o.retrans++
		e.note = joinNote(e.note, "retransmission")
		o.events = append(o.events, e)
		return true
	}
	o := &Originated{Request: req, Addr: e.addr, h: h}
	o.events = append(o.events, e)
	if !h.unreachable[e.addr] {
		h.originatedBy[key] = o
		h.originated = append(h.originated, o)
	}
	return true
}

// Group returns the harness's reactor group (one manual loop on the fake
// clock), for code that schedules timer jobs (Group.Every) or launches ops
// on it: jobs run as Clock.Advance reaches them.
func (h *Harness) Group() *reactor.Group { return h.group }

// Run runs fn on the harness's loop, as a timer job or a launch runs —
// outside any transaction — and then runs the loop until it is idle.
func (h *Harness) Run(fn func(l *reactor.Loop)) {
	h.t.Helper()
	if err := h.loop.Post(func() { fn(h.loop) }); err != nil {
		h.t.Fatalf("siptest: Run: %v", err)
	}
	h.settle()
}
