package siptest

import (
	"net/netip"

	"github.com/emiago/sipgo/sip"
)

// Dialog is the caller's side of a dialog set up by an INVITE and a
// response with a To tag (a 2xx, or a 1xx for an early dialog). It builds
// the ACK and later requests as a UAC does (RFC 3261 §12.2.1.1): the
// Request-URI is the callee's Contact, the Route set is the response's
// Record-Route in reverse order, From and To carry both tags, the Call-ID is
// the INVITE's and CSeq goes up for each new request.
type Dialog struct {
	inv    *sip.Request
	to     string // To header value, with the callee's tag
	target string
	routes []string
	cseq   uint32
}

// NewDialog returns the dialog of inv and resp (the INVITE as sent to the
// proxy and the response the proxy relayed back, e.g. res.LastReply()).
func NewDialog(inv *sip.Request, resp *sip.Response) *Dialog {
	d := &Dialog{inv: inv, target: inv.Recipient.String()}
	if cs := inv.CSeq(); cs != nil {
		d.cseq = cs.SeqNo
	}
	if resp == nil {
		return d
	}
	if to := resp.To(); to != nil {
		d.to = to.Value()
	}
	if c := resp.Contact(); c != nil {
		d.target = c.Address.String()
	}
	rr := resp.GetHeaders("Record-Route")
	for i := len(rr) - 1; i >= 0; i-- {
		d.routes = append(d.routes, rr[i].Value())
	}
	return d
}

// Target returns the remote target (the Request-URI of requests in the
// dialog).
func (d *Dialog) Target() string { return d.target }

// Routes returns the route set, as Route header values.
func (d *Dialog) Routes() []string { return d.routes }

// Ack returns the ACK for the 2xx: the INVITE's CSeq number, a new branch.
func (d *Dialog) Ack(opts ...MessageOption) *sip.Request {
	return d.build("ACK", d.cseq, opts)
}

// Bye returns a BYE in the dialog.
func (d *Dialog) Bye(opts ...MessageOption) *sip.Request { return d.Request("BYE", opts...) }

// Request returns a new request of method in the dialog, with the next
// CSeq number.
func (d *Dialog) Request(method string, opts ...MessageOption) *sip.Request {
	d.cseq++
	return d.build(method, d.cseq, opts)
}

func (d *Dialog) build(method string, cseq uint32, opts []MessageOption) *sip.Request {
	base := []MessageOption{WithCSeq(cseq), WithRoute(d.routes...)}
	if f := d.inv.From(); f != nil {
		base = append(base, WithFrom(f.Value()))
	}
	if d.to != "" {
		base = append(base, WithTo(d.to))
	}
	if id := d.inv.CallID(); id != nil {
		base = append(base, WithCallID(id.Value()))
	}
	if src := d.inv.MessageData.Source(); src != "" {
		base = append(base, WithSource(src))
	}
	return NewRequest(method, d.target, append(base, opts...)...)
}

// NewAck returns the ACK the caller sends for resp, the final response to
// inv. For a 2xx it is the dialog's ACK (see Dialog.Ack), routed through
// the proxy; for a non-2xx it is the hop-by-hop ACK of RFC 3261 §17.1.1.3:
// same branch and Request-URI as the INVITE, To from the response, which
// the proxy's server transaction absorbs.
func NewAck(inv *sip.Request, resp *sip.Response) *sip.Request {
	if resp != nil && resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return NewDialog(inv, resp).Ack()
	}
	var opts []MessageOption
	if v := inv.Via(); v != nil {
		if br, ok := v.Params.Get("branch"); ok {
			opts = append(opts, WithBranch(br))
		}
	}
	if f := inv.From(); f != nil {
		opts = append(opts, WithFrom(f.Value()))
	}
	if resp != nil && resp.To() != nil {
		opts = append(opts, WithTo(resp.To().Value()))
	} else if to := inv.To(); to != nil {
		opts = append(opts, WithTo(to.Value()))
	}
	if id := inv.CallID(); id != nil {
		opts = append(opts, WithCallID(id.Value()))
	}
	if cs := inv.CSeq(); cs != nil {
		opts = append(opts, WithCSeq(cs.SeqNo))
	}
	for _, h := range inv.GetHeaders("Route") {
		opts = append(opts, WithRoute(h.Value()))
	}
	if src := inv.MessageData.Source(); src != "" {
		opts = append(opts, WithSource(src))
	}
	return NewRequest("ACK", inv.Recipient.String(), opts...)
}

// InDialog returns req with the Route a UA puts on a request of a dialog
// this proxy record-routed: the proxy's Record-Route for the transport req
// arrives on, signed for req's dialog (its Call-ID and From tag), on top
// of any Route req already has. The proxy follows such a request
// (tm.Context.InDialog is true); an in-dialog request without it is
// refused 403 before any route runs (an ACK is dropped), as tm refuses one
// that did not come along its signed Record-Route. The value is
// tm.Server.SignedRoute's for the harness's transport of req's address
// family.
//
//	bye := h.Send(h.InDialog(siptest.NewBye("sip:bob@10.0.0.2:5060")))
//
// NewDialog builds the same Route from the Record-Route of a call set up
// through the harness.
func (h *Harness) InDialog(req *sip.Request) *sip.Request {
	h.t.Helper()
	tp := h.tp4
	if src, err := netip.ParseAddrPort(req.MessageData.Source()); err == nil && !src.Addr().Unmap().Is4() {
		tp = h.tp6
	}
	v := h.Server.SignedRoute(req, tp, netip.AddrPort{})
	if v == "" {
		h.t.Fatalf("siptest: InDialog: the request has no Call-ID or no From tag to sign for\n%s", req)
	}
	var u sip.Uri
	if _, err := sip.ParseAddressValue(v, &u, nil); err != nil {
		h.t.Fatalf("siptest: InDialog: tm's signed route %q: %v", v, err)
	}
	req.PrependHeader(&sip.RouteHeader{Address: u})
	return req
}
