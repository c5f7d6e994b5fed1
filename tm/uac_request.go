package tm

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"github.com/emiago/sipgo/sip"
)

// Building the requests the proxy originates: out of dialog (NewRequest)
// and within a dialog (DialogState, CallDialogs).

// ErrNoDialog: CallDialogs was given an INVITE and a response that do not
// make a dialog this proxy record-routed.
var ErrNoDialog = errors.New("tm: no record-routed dialog")

// OutOfDialog describes a request the proxy sends outside any dialog, for
// Server.NewRequest: an OPTIONS probe, a NOTIFY, a MESSAGE.
type OutOfDialog struct {
	// Method is the request method (OPTIONS, NOTIFY, MESSAGE, REGISTER…).
	Method sip.RequestMethod
	// Target is the Request-URI ("sip:gw1@192.0.2.10:5060"), and the To
	// URI unless To is set.
	Target string
	// To is the To URI (default Target).
	To string
	// From is the From URI (default "sip:" and the advertised address of
	// the server's first transport).
	From string
	// Contact, when set, is sent as the Contact URI.
	Contact string
	// Headers are appended as they are (Event, Subscription-State,
	// Expires…).
	Headers []sip.Header
	// ContentType and Body are the body, if any.
	ContentType string
	Body        []byte
}

// NewRequest builds an out-of-dialog request ready for Send: the
// Request-URI, From with a fresh tag, To, a fresh Call-ID, CSeq 1 and
// Max-Forwards 70. The Call-ID and the From tag carry 128 and 64 bits from
// crypto/rand, so nobody off the path can forge an answer that matches
// them. It is safe from any goroutine.
func (s *Server) NewRequest(r OutOfDialog) (*sip.Request, error) {
	if r.Method == "" {
		return nil, fmt.Errorf("%w: no method", ErrNotOriginable)
	}
	ruri, err := parseTarget(r.Target)
	if err != nil {
		return nil, err
	}
	to := ruri
	if r.To != "" {
		if to, err = parseTarget(r.To); err != nil {
			return nil, err
		}
	}
	from, err := s.defaultFrom(r.From)
	if err != nil {
		return nil, err
	}
	req := newRequest(r.Method, ruri)
	appendDialogHeaders(req, from, randomHex(8), to, "", randomHex(16), 1)
	if r.Contact != "" {
		c, err := parseTarget(r.Contact)
		if err != nil {
			return nil, err
		}
		req.AppendHeader(&sip.ContactHeader{Address: c})
	}
	for _, h := range r.Headers {
		req.AppendHeader(h)
	}
	setBody(req, r.ContentType, r.Body)
	if err := checkInjection(req); err != nil {
		return nil, err
	}
	return req, nil
}

// defaultFrom returns the From URI: uri, or our first transport's address.
func (s *Server) defaultFrom(uri string) (sip.Uri, error) {
	if uri != "" {
		return parseTarget(uri)
	}
	if len(s.tps) == 0 {
		return sip.Uri{}, fmt.Errorf("%w: no From given and no transport to name", ErrNotOriginable)
	}
	host, port := s.tps[0].Advertised()
	return sip.Uri{Scheme: "sip", Host: host, Port: port}, nil
}

// DialogState is what one side of a dialog needs to send requests within
// it (RFC 3261 §12.2.1.1): the local and remote URIs and tags, the remote
// target, the route set and the local CSeq. Its fields are plain strings so
// that a dialog store can keep and share it. CallDialogs fills it for both
// sides of a call this proxy record-routed.
type DialogState struct {
	// CallID is the dialog's Call-ID.
	CallID string
	// LocalURI and LocalTag go in From, RemoteURI and RemoteTag in To.
	LocalURI, LocalTag   string
	RemoteURI, RemoteTag string
	// RemoteTarget is the Request-URI: the remote side's Contact.
	RemoteTarget string
	// RouteSet are the Route URIs, in order: the first is the next hop.
	RouteSet []string
	// LocalCSeq is the CSeq number of the last request sent on this side;
	// Request uses the next one and stores it here.
	LocalCSeq uint32
}

// Request builds the next request of method within the dialog: Request-URI
// the remote target, Route the route set, From and To with both tags, the
// dialog's Call-ID, CSeq LocalCSeq+1 (stored back), Max-Forwards 70, and
// hdrs appended. Send sends it to the first Route (a strict router is
// handled as RFC 3261 §12.2.1.1 says), else to the remote target.
func (d *DialogState) Request(method sip.RequestMethod, hdrs ...sip.Header) (*sip.Request, error) {
	if d.CallID == "" || d.LocalTag == "" || d.RemoteTag == "" {
		return nil, fmt.Errorf("%w: dialog state without Call-ID or tags", ErrNotOriginable)
	}
	target, err := parseTarget(d.RemoteTarget)
	if err != nil {
		return nil, fmt.Errorf("remote target: %w", err)
	}
	local, err := parseTarget(d.LocalURI)
	if err != nil {
		return nil, fmt.Errorf("local URI: %w", err)
	}
	remote, err := parseTarget(d.RemoteURI)
	if err != nil {
		return nil, fmt.Errorf("remote URI: %w", err)
	}
	req := newRequest(method, target)
	for _, r := range d.RouteSet {
		u, err := parseTarget(strings.Trim(strings.TrimSpace(r), "<>"))
		if err != nil {
			return nil, fmt.Errorf("route set: %w", err)
		}
		req.AppendHeader(&sip.RouteHeader{Address: u})
	}
	d.LocalCSeq++
	appendDialogHeaders(req, local, d.LocalTag, remote, d.RemoteTag, d.CallID, d.LocalCSeq)
	for _, h := range hdrs {
		req.AppendHeader(h)
	}
	setBody(req, "", nil)
	if err := checkInjection(req); err != nil {
		return nil, err
	}
	return req, nil
}

// CallDialogs returns the dialog state this proxy uses to send requests
// within a call it record-routed, towards each side: toCallee speaks for
// the caller (its From, tag and CSeq; Request-URI the callee's Contact;
// Route the Record-Route values between us and the callee), toCaller for
// the callee (Request-URI the caller's Contact; Route the values between
// us and the caller; first our own value facing that side when it names
// the connection the side is reached on, which Send follows while it is
// open). inv is the dialog-creating request as the proxy
// received it (Context.Req()) and resp a response with a To tag that
// passed through the proxy (Context.Resp in a reply route), carrying the
// whole Record-Route. A BYE built from each ends the call on both sides:
//
//	callee, caller, err := srv.CallDialogs(c.Req(), c.Resp)
//	byeCallee, _ := callee.Request(sip.BYE)
//	byeCaller, _ := caller.Request(sip.BYE)
//
// toCaller.LocalCSeq starts at 0: the callee's own CSeq is unknown to a
// proxy until the callee sends a request, so a dialog tracker should
// store the highest it relays.
func (s *Server) CallDialogs(inv *sip.Request, resp *sip.Response) (toCallee, toCaller DialogState, err error) {
	if inv == nil || resp == nil || inv.From() == nil || resp.To() == nil || inv.CallID() == nil || inv.CSeq() == nil {
		return toCallee, toCaller, fmt.Errorf("%w: INVITE or response incomplete", ErrNoDialog)
	}
	fromTag, _ := inv.From().Params.Get("tag")
	toTag, _ := resp.To().Params.Get("tag")
	callerContact, calleeContact := inv.Contact(), resp.Contact()
	switch {
	case fromTag == "" || toTag == "":
		return toCallee, toCaller, fmt.Errorf("%w: From or To tag missing", ErrNoDialog)
	case callerContact == nil || calleeContact == nil:
		return toCallee, toCaller, fmt.Errorf("%w: Contact missing", ErrNoDialog)
	}
	var rr []sip.Uri
	for _, h := range resp.GetHeaders("Record-Route") {
		if v, ok := h.(*sip.RecordRouteHeader); ok {
			rr = append(rr, v.Address)
		}
	}
	first, last := -1, -1
	for i := range rr {
		if s.isLocal(rr[i].Host, rr[i].Port) {
			if first < 0 {
				first = i
			}
			last = i
		}
	}
	if first < 0 {
		return toCallee, toCaller, fmt.Errorf("%w: no Record-Route of ours in the response", ErrNoDialog)
	}
	callID := string(*inv.CallID())
	toCallee = DialogState{
		CallID: callID, LocalURI: inv.From().Address.String(), LocalTag: fromTag,
		RemoteURI: resp.To().Address.String(), RemoteTag: toTag,
		RemoteTarget: calleeContact.Address.String(), LocalCSeq: inv.CSeq().SeqNo,
	}
	// Our value facing a side that is reached over a connection carries a
	// flow token: kept first, Send takes it off and uses the connection.
	if flow, _ := s.parseFlow(&rr[first]); flow.IsValid() {
		toCallee.RouteSet = append(toCallee.RouteSet, rr[first].String())
	}
	for i := first - 1; i >= 0; i-- { // added after us: reversed, nearest first
		toCallee.RouteSet = append(toCallee.RouteSet, rr[i].String())
	}
	toCaller = DialogState{
		CallID: callID, LocalURI: resp.To().Address.String(), LocalTag: toTag,
		RemoteURI: inv.From().Address.String(), RemoteTag: fromTag,
		RemoteTarget: callerContact.Address.String(),
	}
	if flow, _ := s.parseFlow(&rr[last]); flow.IsValid() {
		toCaller.RouteSet = append(toCaller.RouteSet, rr[last].String())
	}
	for _, u := range rr[last+1:] { // added before us: in order, nearest first
		toCaller.RouteSet = append(toCaller.RouteSet, u.String())
	}
	return toCallee, toCaller, nil
}

func newRequest(method sip.RequestMethod, ruri sip.Uri) *sip.Request {
	req := sip.NewRequest(method, ruri)
	req.SipVersion = "SIP/2.0"
	return req
}

func appendDialogHeaders(req *sip.Request, from sip.Uri, fromTag string, to sip.Uri, toTag, callID string, cseq uint32) {
	mf := sip.MaxForwardsHeader(70)
	req.AppendHeader(&mf)
	fh := &sip.FromHeader{Address: from, Params: sip.HeaderParams{{K: "tag", V: fromTag}}}
	req.AppendHeader(fh)
	th := &sip.ToHeader{Address: to, Params: sip.HeaderParams{}}
	if toTag != "" {
		th.Params.Add("tag", toTag)
	}
	req.AppendHeader(th)
	id := sip.CallIDHeader(callID)
	req.AppendHeader(&id)
	req.AppendHeader(&sip.CSeqHeader{SeqNo: cseq, MethodName: req.Method})
}

func setBody(req *sip.Request, ctype string, body []byte) {
	if len(body) > 0 && ctype != "" {
		req.AppendHeader(sip.NewHeader("Content-Type", ctype))
	}
	req.SetBody(body)
}

// randomHex returns 2n hex digits from crypto/rand.
func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails (Go 1.24+)
	return hex.EncodeToString(b)
}
