package siptest

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strconv"
	"strings"

	"github.com/emiago/sipgo/sip"
)

// Addresses of the harness's in-memory network. Nothing is ever sent on a
// real socket; these only appear in Via, Contact and the recorder.
const (
	// DefaultUAC is where requests built here come from, unless
	// WithSource says otherwise.
	DefaultUAC = "127.0.0.1:5061"
	// DefaultProxy is the address of the proxy under test: its Via and
	// Record-Route carry it.
	DefaultProxy = "127.0.0.1:5060"
)

// MessageOption changes a request built by NewRequest and its helpers, or
// a response built by Relayed.Respond. Options that make no sense for a
// message are ignored.
type MessageOption func(*message)

// message collects what the options set.
type message struct {
	from, to, contact string // header values; "" means the default
	fromTag, toTag    string
	noToTag           bool
	callID            string
	cseq              uint32
	maxForwards       int
	source            netip.AddrPort
	branch            string
	routes            []string
	headers           [][2]string
	without           []string
	ctype             string
	body              string
}

// WithHeader appends a header (it may be given several times, also for the
// same name).
func WithHeader(name, value string) MessageOption {
	return func(m *message) { m.headers = append(m.headers, [2]string{name, value}) }
}

// WithoutHeader removes every header called name, defaults included (to
// test how a route or tm treats a request without Max-Forwards, Contact…).
func WithoutHeader(name string) MessageOption {
	return func(m *message) { m.without = append(m.without, name) }
}

// WithBody sets the body and its Content-Type; Content-Length follows.
func WithBody(contentType, body string) MessageOption {
	return func(m *message) { m.ctype, m.body = contentType, body }
}

// WithFrom sets the From URI or name-addr ("sip:alice@example.com" or
// `"Alice" <sip:alice@example.com>`). A tag is added unless it has one.
func WithFrom(addr string) MessageOption { return func(m *message) { m.from = addr } }

// WithTo sets the To URI or name-addr (default: the Request-URI).
func WithTo(addr string) MessageOption { return func(m *message) { m.to = addr } }

// WithToTag sets the To tag: the request is in-dialog; on a response it
// replaces the tag the harness would pick.
func WithToTag(tag string) MessageOption { return func(m *message) { m.toTag = tag } }

// WithFromTag sets the From tag (default: random).
func WithFromTag(tag string) MessageOption { return func(m *message) { m.fromTag = tag } }

// WithCallID sets the Call-ID (default: random).
func WithCallID(id string) MessageOption { return func(m *message) { m.callID = id } }

// WithCSeq sets the CSeq number (default 1; 2 for NewBye).
func WithCSeq(n uint32) MessageOption { return func(m *message) { m.cseq = n } }

// WithMaxForwards sets Max-Forwards (default 70).
func WithMaxForwards(n int) MessageOption { return func(m *message) { m.maxForwards = n } }

// WithBranch sets the branch of the top Via (default: a fresh RFC 3261
// branch).
func WithBranch(branch string) MessageOption { return func(m *message) { m.branch = branch } }

// WithContact sets the Contact URI or name-addr.
func WithContact(addr string) MessageOption { return func(m *message) { m.contact = addr } }

// WithRoute adds Route headers, in order (an in-dialog request that follows
// a route set, or a preloaded route).
func WithRoute(uris ...string) MessageOption {
	return func(m *message) { m.routes = append(m.routes, uris...) }
}

// WithSource makes the message come from addr ("ip:port"): Harness.Send
// delivers a request from there, and its Via and default Contact name it;
// Originated.Respond sends the response from there instead of the next hop
// (tm drops a response that does not come from where its request went). It
// panics on an address that does not parse, like the constructors.
func WithSource(addr string) MessageOption {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		panic(fmt.Sprintf("siptest: WithSource(%q): %v", addr, err))
	}
	return func(m *message) { m.source = ap }
}

// NewRequest returns a request ready to Send: method, Request-URI and every
// header a UAC puts in an out-of-dialog request — Via (UDP, sent-by the
// source, a fresh branch, rport), Max-Forwards: 70, From (with a tag), To
// (the Request-URI), Call-ID, CSeq 1, Contact (for methods that establish
// or refresh a target) and Content-Length — changed by opts.
//
// Like httptest.NewRequest it panics when the method or a URI does not
// parse: it is meant for literals in tests.
func NewRequest(method, ruri string, opts ...MessageOption) *sip.Request {
	m := &message{maxForwards: 70, cseq: 1}
	for _, o := range opts {
		o(m)
	}
	return m.request(method, ruri)
}

// NewRegister returns a REGISTER of contact for the address-of-record aor,
// with Expires: expires (0 removes the binding). The Request-URI is the
// domain of aor; From and To are aor.
func NewRegister(aor, contact string, expires int, opts ...MessageOption) *sip.Request {
	u := mustURI("NewRegister", aor)
	domain := sip.Uri{Scheme: u.Scheme, Host: u.Host, Port: u.Port}
	opts = append([]MessageOption{WithFrom(aor), WithTo(aor), WithContact(contact),
		WithHeader("Expires", strconv.Itoa(expires))}, opts...)
	return NewRequest("REGISTER", domain.String(), opts...)
}

// NewBye returns an in-dialog BYE for ruri (the remote target): it has a
// To tag and CSeq 2. Add the route set with WithRoute, the dialog's tags
// and Call-ID with WithFromTag, WithToTag and WithCallID — or use
// Dialog.Bye, which takes them from the INVITE and its 2xx.
func NewBye(ruri string, opts ...MessageOption) *sip.Request {
	opts = append([]MessageOption{WithToTag(randomTag()), WithCSeq(2)}, opts...)
	return NewRequest("BYE", ruri, opts...)
}

// NewCancel returns the CANCEL of inv (RFC 3261 §9.1): same Request-URI,
// top Via (so the same branch), From, To, Call-ID and Route, CSeq number
// with method CANCEL. It comes from the same source as inv.
func NewCancel(inv *sip.Request) *sip.Request {
	can := sip.NewRequest(sip.CANCEL, *inv.Recipient.Clone())
	if v := inv.Via(); v != nil {
		can.AppendHeader(v.Clone())
	}
	mf := sip.MaxForwardsHeader(70)
	can.AppendHeader(&mf)
	for _, h := range inv.GetHeaders("Route") {
		can.AppendHeader(sip.HeaderClone(h))
	}
	for _, h := range []sip.Header{inv.From(), inv.To(), inv.CallID()} {
		if h != nil {
			can.AppendHeader(sip.HeaderClone(h))
		}
	}
	var seq uint32 = 1
	if cs := inv.CSeq(); cs != nil {
		seq = cs.SeqNo
	}
	can.AppendHeader(&sip.CSeqHeader{SeqNo: seq, MethodName: sip.CANCEL})
	can.SetBody(nil)
	can.SetSource(inv.MessageData.Source())
	return can
}

// request builds the message as text and parses it, so that the request is
// exactly what a peer would send.
func (m *message) request(method, ruri string) *sip.Request {
	if method == "" || strings.ContainsAny(method, " \r\n") {
		panic(fmt.Sprintf("siptest: NewRequest: bad method %q", method))
	}
	method = strings.ToUpper(method)
	u := mustURI("NewRequest", ruri)
	src := m.source
	if !src.IsValid() {
		src = netip.MustParseAddrPort(DefaultUAC)
	}
	host := src.Addr().String()
	if src.Addr().Is6() {
		host = "[" + host + "]"
	}
	branch := m.branch
	if branch == "" {
		branch = "z9hG4bK" + randomTag()
	}
	from := addrSpec(m.from, "sip:alice@example.com")
	fromTag := m.fromTag
	if fromTag == "" && !strings.Contains(from, ";tag=") {
		fromTag = randomTag()
	}
	if fromTag != "" {
		from += ";tag=" + fromTag
	}
	to := addrSpec(m.to, u.String())
	if m.toTag != "" {
		to += ";tag=" + m.toTag
	}
	callID := m.callID
	if callID == "" {
		callID = randomTag() + randomTag() + "@siptest"
	}
	var b strings.Builder
	line := func(name, value string) { b.WriteString(name + ": " + value + "\r\n") }
	b.WriteString(method + " " + u.String() + " SIP/2.0\r\n")
	line("Via", fmt.Sprintf("SIP/2.0/UDP %s:%d;branch=%s;rport", host, src.Port(), branch))
	line("Max-Forwards", strconv.Itoa(m.maxForwards))
	for _, r := range m.routes {
		line("Route", addrSpec(r, r))
	}
	line("From", from)
	line("To", to)
	line("Call-ID", callID)
	line("CSeq", fmt.Sprintf("%d %s", m.cseq, method))
	if m.contact != "" || wantsContact(method) {
		line("Contact", addrSpec(m.contact, fmt.Sprintf("sip:alice@%s:%d", host, src.Port())))
	}
	for _, h := range m.headers {
		if strings.ContainsAny(h[0]+h[1], "\r\n") || strings.ContainsAny(h[0], ": ") {
			panic(fmt.Sprintf("siptest: WithHeader(%q, %q): a header name or value with CR, LF, colon or space", h[0], h[1]))
		}
		line(h[0], h[1])
	}
	if m.body != "" {
		line("Content-Type", m.ctype)
	}
	line("Content-Length", strconv.Itoa(len(m.body)))
	b.WriteString("\r\n" + m.body)
	msg, err := sip.ParseMessage([]byte(b.String()))
	if err != nil {
		panic(fmt.Sprintf("siptest: NewRequest: the options make an unparsable request: %v\n%s", err, b.String()))
	}
	req, ok := msg.(*sip.Request)
	if !ok {
		panic("siptest: NewRequest: not a request")
	}
	removeHeaders(req, m.without)
	req.SetSource(src.String())
	return req
}

// removeHeaders removes every header whose name is one of names (case
// insensitive; sipgo's RemoveHeader wants the canonical spelling).
func removeHeaders(m interface {
	Headers() []sip.Header
	RemoveHeader(name string) bool
}, names []string) {
	for _, name := range names {
		for _, h := range m.Headers() {
			if strings.EqualFold(h.Name(), name) {
				m.RemoveHeader(h.Name())
			}
		}
	}
}

// wantsContact reports whether a UAC puts a Contact in method's requests:
// those that establish a dialog or refresh its target, and REGISTER.
func wantsContact(method string) bool {
	switch method {
	case "INVITE", "SUBSCRIBE", "NOTIFY", "REFER", "UPDATE", "REGISTER", "OPTIONS":
		return true
	}
	return false
}

// addrSpec returns v (or def when v is empty) as a name-addr: a bare URI is
// put in angle brackets.
func addrSpec(v, def string) string {
	if v == "" {
		v = def
	}
	if strings.Contains(v, "<") {
		return v
	}
	return "<" + v + ">"
}

func mustURI(fn, s string) sip.Uri {
	var u sip.Uri
	if err := sip.ParseUri(s, &u); err != nil || u.Host == "" && u.Scheme != "tel" {
		if err == nil {
			err = fmt.Errorf("no host")
		}
		panic(fmt.Sprintf("siptest: %s: bad URI %q: %v", fn, s, err))
	}
	return u
}

// randomTag returns 8 random hex digits (tags, branches, Call-IDs).
func randomTag() string { return fmt.Sprintf("%08x", rand.Uint32()) }
