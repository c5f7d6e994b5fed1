package e2e

import (
	"fmt"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/stretchr/testify/require"

	"github.com/asyncsip/asyncsip"
	"github.com/asyncsip/asyncsip/internal/e2e/e2etest"
	"github.com/asyncsip/asyncsip/tm"
)

// Hostile and unusual requests through a real server over UDP on
// 127.0.0.1, twice: with a request route that calls c.Req() first (the
// parsed path) and with the same route not calling it (the lazy path,
// tm/lazy.go, tm/splice.go). The caller and the callee must receive the
// same messages (sipgo's reading; the proxy's port, its own branch and the
// To tags it makes up left out).
//
// What a request caused is collected up to a marker: after each step the
// caller sends an OPTIONS the route relays to the callee, which answers
// it; the proxy runs one loop, so what it sent because of the step left
// before the marker did. Two markers follow each step, so that an ACK the
// proxy sends on a response of the callee is counted too.

const lazyHostileKey = "lazy-hostile-e2e-route-key-0123456789"

// lhRun is one server and the two peers of a run.
type lhRun struct {
	t        *testing.T
	proxy    netip.AddrPort
	uac, uas *e2etest.UDPPeer
	marker   int
	seen     map[string]bool // datagrams received (a retransmission is seen again)
	compact  int             // requests the callee got with a compact Call-ID ("i:")
	// got is what the caller (uac) and the callee (uas) received, per
	// step, normalised.
	got []string
}

// lhCase is a step list: each sends raw requests from the caller, built
// from the run (its callee's port, the Route lines of a dialog).
type lhCase struct {
	name  string
	steps []func(r *lhRun) string
	// want, when set, must be in what the last step of both runs got;
	// wantNot must not.
	want, wantNot string
}

func newLHRun(t *testing.T, uac, uas *e2etest.UDPPeer, materialise bool) *lhRun {
	cfg := asyncsip.Config{Workers: 1}
	cfg.Core.Security.RouteKey = []byte(lazyHostileKey)
	srv := e2etest.StartServer(t, cfg, tm.Routes{Request: func(c *tm.Context) {
		if materialise {
			_ = c.Req()
		}
		_ = c.Relay()
	}})
	return &lhRun{t: t, proxy: srv.Addrs()[0], uac: uac, uas: uas, seen: map[string]bool{}}
}

// norm is what a peer reads of raw: the start line and the headers in
// order, with the proxy's port, the branch of a Via naming the proxy and
// a To tag not made by the callee ("uas") replaced.
func (r *lhRun) norm(raw string) string {
	raw = strings.ReplaceAll(raw, r.proxy.String(), "127.0.0.1:1")
	msg, err := sip.ParseMessage([]byte(raw))
	if err != nil {
		return "unparsable: " + raw
	}
	var b strings.Builder
	var hs []sip.Header
	switch m := msg.(type) {
	case *sip.Request:
		fmt.Fprintf(&b, "%s %s\n", m.Method, m.Recipient.String())
		hs = m.Headers()
	case *sip.Response:
		fmt.Fprintf(&b, "%d %s\n", m.StatusCode, m.Reason)
		hs = m.Headers()
	}
	for _, h := range hs {
		v := h.Value()
		switch x := h.(type) {
		case *sip.ViaHeader:
			if x.Host == "127.0.0.1" && x.Port == 1 {
				c := x.Clone()
				c.Params.Remove("branch")
				v = c.Value()
			}
		case *sip.ToHeader:
			if tag, ok := x.Params.Get("tag"); ok && tag != "uas" {
				c := sip.HeaderClone(x).(*sip.ToHeader)
				c.Params.Remove("tag")
				v = c.Value() + ";tag=PROXY"
			}
		}
		fmt.Fprintf(&b, "%s: %s\n", strings.ToLower(h.Name()), v)
	}
	b.WriteString(string(msg.Body()))
	return b.String()
}

// lhAnswer is the callee's response to a request, its headers copied
// whatever their form (compact, any case: a spliced request keeps them as
// the caller wrote them): 200 for an OPTIONS, a BYE, a re-INVITE or an
// INVITE of a "dlg-" call, 486 for another INVITE.
func lhAnswer(req string) string {
	code, reason := 200, "OK"
	to := e2etest.Header(req, "To") + e2etest.Header(req, "t")
	if strings.HasPrefix(req, "INVITE ") && !strings.Contains(to, "tag=") &&
		!strings.HasPrefix(e2etest.Header(req, "Call-ID")+e2etest.Header(req, "i"), "dlg-") {
		code, reason = 486, "Busy Here"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "SIP/2.0 %d %s\r\n", code, reason)
	head, _, _ := strings.Cut(req, "\r\n\r\n")
	for _, line := range strings.Split(head, "\r\n")[1:] {
		name, _, _ := strings.Cut(line, ":")
		switch strings.ToLower(strings.TrimSpace(name)) {
		case "via", "v", "record-route", "from", "f", "call-id", "i", "cseq":
			b.WriteString(line + "\r\n")
		case "to", "t":
			if !strings.Contains(line, "tag=") {
				line += ";tag=uas"
			}
			b.WriteString(line + "\r\n")
		}
	}
	b.WriteString("Content-Length: 0\r\n\r\n")
	return b.String()
}

// next returns the next datagram p received from this run's proxy that
// it did not receive before (messages of the other run's proxy, and
// retransmissions, are skipped).
func (r *lhRun) next(p *e2etest.UDPPeer) string {
	r.t.Helper()
	for {
		msg, from := p.Next(5 * time.Second)
		if from != r.proxy || r.seen[msg] {
			continue
		}
		r.seen[msg] = true
		return msg
	}
}

// calleeAnswers reads the callee's messages until the request of Call-ID
// id, answering each request but ACK, and returns the others.
func (r *lhRun) calleeAnswers(id string) (got []string) {
	r.t.Helper()
	for {
		msg := r.next(r.uas)
		if strings.HasPrefix(msg, "SIP/2.0") {
			continue
		}
		if strings.Contains(msg, "\r\ni: ") {
			r.compact++
		}
		if !strings.HasPrefix(msg, "ACK ") {
			r.uas.SendTo(r.proxy, lhAnswer(msg))
		}
		if e2etest.Header(msg, "Call-ID")+e2etest.Header(msg, "i") == id {
			return got
		}
		got = append(got, "callee got "+r.norm(msg))
	}
}

// step sends raw from the caller, then two markers, and records what both
// peers received meanwhile.
func (r *lhRun) step(raw string) {
	r.t.Helper()
	if raw != "" {
		r.uac.SendTo(r.proxy, raw)
	}
	var uas, uac []string
	for m := 0; m < 2; m++ {
		r.marker++
		id := fmt.Sprintf("marker-%d", r.marker)
		r.uac.SendTo(r.proxy, e2etest.Request("OPTIONS", "sip:marker@127.0.0.1:"+strconv.Itoa(r.uas.Port()), "UDP", r.uac.Port(), id, ""))
		uas = append(uas, r.calleeAnswers(id)...)
		for {
			msg := r.next(r.uac)
			if e2etest.Header(msg, "Call-ID") == id {
				if !strings.HasPrefix(msg, "SIP/2.0 100 ") {
					break
				}
				continue
			}
			uac = append(uac, "caller got "+r.norm(msg))
		}
	}
	sort.Strings(uas)
	sort.Strings(uac)
	r.got = append(r.got, strings.Join(append(uac, uas...), "\n--\n"))
}

// dialog sets up the dialog callID (a "dlg-" call the callee answers
// 200) and returns the Route lines the caller uses in it: the
// Record-Route of the 200, reversed.
func (r *lhRun) dialog(callID string) string {
	r.t.Helper()
	r.uac.SendTo(r.proxy, lhReq("INVITE", r, callID, 1, ""))
	r.calleeAnswers(callID)
	for {
		msg := r.next(r.uac)
		if e2etest.Header(msg, "Call-ID") == callID && strings.HasPrefix(msg, "SIP/2.0 200 ") {
			rr := e2etest.Headers(msg, "Record-Route")
			require.NotEmpty(r.t, rr, "the 200 carries our Record-Route")
			var b strings.Builder
			for i := len(rr) - 1; i >= 0; i-- {
				b.WriteString("Route: " + rr[i] + "\r\n")
			}
			return b.String()
		}
	}
}

// lhReq is a request of the caller to the callee; routes are whole
// Route lines (CRLF-terminated); a cseq > 1 or routes make it in-dialog.
func lhReq(method string, r *lhRun, callID string, cseq int, routes string) string {
	ruri := "sip:bob@127.0.0.1:" + strconv.Itoa(r.uas.Port())
	to := "To: <sip:bob@127.0.0.1>"
	if cseq > 1 || routes != "" || method == "ACK" && strings.HasPrefix(callID, "dlg-") {
		to += ";tag=uas"
	}
	return fmt.Sprintf("%s %s SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:%d;branch=z9hG4bK-%s-%s-%d;rport\r\n"+
		"Max-Forwards: 70\r\nFrom: <sip:alice@127.0.0.1>;tag=a1\r\n%s\r\nCall-ID: %s\r\nCSeq: %d %s\r\n"+
		"Contact: <sip:alice@127.0.0.1:%d>\r\n%sContent-Length: 0\r\n\r\n",
		method, ruri, r.uac.Port(), callID, method, cseq, to, callID, cseq, method, r.uac.Port(), routes)
}

func TestLazyHostileOverUDP(t *testing.T) {
	e2etest.NoLeaks(t)
	uac, uas := e2etest.NewUDPPeer(t), e2etest.NewUDPPeer(t)
	edit := func(raw string, pairs ...string) string {
		for i := 0; i+1 < len(pairs); i += 2 {
			raw = strings.Replace(raw, pairs[i], pairs[i+1], 1)
		}
		return raw
	}
	plain := func(callID string, pairs ...string) func(r *lhRun) string {
		return func(r *lhRun) string { return edit(lhReq("INVITE", r, callID, 1, ""), pairs...) }
	}
	inDialog := func(method, callID string, cseq int, routes func(r *lhRun, rs string) string) []func(r *lhRun) string {
		var rs string
		return []func(r *lhRun) string{
			func(r *lhRun) string { rs = r.dialog(callID); return "" },
			func(r *lhRun) string { return lhReq(method, r, callID, cseq, routes(r, rs)) },
		}
	}
	signed := func(_ *lhRun, rs string) string { return rs }
	unsigned := func(*lhRun, string) string { return "Route: <sip:127.0.0.1:5060;lr>\r\n" }
	proxyRoute := func(r *lhRun, _ string) string { return "Route: <sip:" + r.proxy.String() + ";lr>\r\n" }
	tampered := func(_ *lhRun, rs string) string {
		i := strings.Index(rs, ";sig=") + len(";sig=")
		c := byte('0')
		if rs[i] == '0' {
			c = '1'
		}
		return rs[:i] + string(c) + rs[i+1:]
	}
	var cases []lhCase
	refused := func(method string) string {
		if method == "ACK" {
			return "" // dropped: the markers show nothing reached the callee
		}
		return "caller got 403 "
	}
	for _, m := range []struct {
		method string
		cseq   int
	}{{"BYE", 2}, {"ACK", 1}, {"INVITE", 2}} {
		cases = append(cases,
			lhCase{name: m.method + " signed", steps: inDialog(m.method, "dlg-s-"+m.method, m.cseq, signed), want: "callee got " + m.method},
			lhCase{name: m.method + " no Route", steps: inDialog(m.method, "dlg-n-"+m.method, m.cseq, func(*lhRun, string) string { return "" }), wantNot: "callee got "},
			lhCase{name: m.method + " unsigned Route", steps: inDialog(m.method, "dlg-u-"+m.method, m.cseq, unsigned), want: refused(m.method), wantNot: "callee got "},
			lhCase{name: m.method + " unsigned Route naming the proxy", steps: inDialog(m.method, "dlg-p-"+m.method, m.cseq, proxyRoute), wantNot: "callee got "},
			lhCase{name: m.method + " tampered", steps: inDialog(m.method, "dlg-t-"+m.method, m.cseq, tampered), want: refused(m.method), wantNot: "callee got "},
			lhCase{name: m.method + " double", steps: inDialog(m.method, "dlg-d-"+m.method, m.cseq, func(_ *lhRun, rs string) string { return rs + rs })},
			lhCase{name: m.method + " replayed from another dialog", steps: []func(r *lhRun) string{
				func(r *lhRun) string { return "" },
				func(r *lhRun) string {
					rs := r.dialog("dlg-o-" + m.method)
					return lhReq(m.method, r, "dlg-x-"+m.method, m.cseq, rs)
				},
			}, wantNot: "callee got "},
		)
	}
	cases = append(cases,
		lhCase{name: "plain", steps: []func(r *lhRun) string{plain("i-plain")}, want: "callee got INVITE "},
		lhCase{name: "retransmitted", steps: []func(r *lhRun) string{plain("i-retr"), plain("i-retr")}},
		lhCase{name: "foreign Route", steps: []func(r *lhRun) string{plain("i-foreign", "Contact:", "Route: <sip:127.0.0.3:5060;lr>\r\nContact:")}, want: "caller got 403 "},
		lhCase{name: "our Route preloaded", steps: []func(r *lhRun) string{func(r *lhRun) string {
			return edit(lhReq("INVITE", r, "i-pre", 1, ""), "Contact:", "Route: <sip:"+r.proxy.String()+";lr>\r\nContact:")
		}}},
		lhCase{name: "Max-Forwards 0", steps: []func(r *lhRun) string{plain("i-mf0", "Max-Forwards: 70", "Max-Forwards: 0")}, want: "caller got 483 "},
		lhCase{name: "Max-Forwards 1", steps: []func(r *lhRun) string{plain("i-mf1", "Max-Forwards: 70", "Max-Forwards: 1")}},
		lhCase{name: "Max-Forwards absent", steps: []func(r *lhRun) string{plain("i-mfa", "Max-Forwards: 70\r\n", "")}},
		lhCase{name: "Max-Forwards garbage", steps: []func(r *lhRun) string{plain("i-mfg", "Max-Forwards: 70", "Max-Forwards: x1")}},
		lhCase{name: "Max-Forwards huge", steps: []func(r *lhRun) string{plain("i-mfh", "Max-Forwards: 70", "Max-Forwards: 99999999999")}},
		lhCase{name: "Request-URI is the proxy", steps: []func(r *lhRun) string{func(r *lhRun) string {
			return edit(lhReq("INVITE", r, "i-loop", 1, ""), "sip:bob@127.0.0.1:"+strconv.Itoa(r.uas.Port()), "sip:bob@"+r.proxy.String())
		}}},
		lhCase{name: "Proxy-Require", steps: []func(r *lhRun) string{plain("i-preq", "Contact:", "Proxy-Require: foo\r\nContact:")}, want: "caller got 420 "},
		lhCase{name: "Via received and rport forms", steps: []func(r *lhRun) string{
			plain("i-v1", ";rport", ";received=10.0.0.1;rport=9"),
			plain("i-v2", ";rport", ";RPORT;Received=127.0.0.1"),
			plain("i-v3", ";rport", ""),
			plain("i-v4", ";branch=", ";BRANCH="),
		}},
		lhCase{name: "Via IPv6 sent-by", steps: []func(r *lhRun) string{plain("i-v6", "Via: SIP/2.0/UDP 127.0.0.1:", "Via: SIP/2.0/UDP [::1]:")}},
		lhCase{name: "two Vias in one field", steps: []func(r *lhRun) string{plain("i-v2f", ";rport\r\n", ";rport, SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK-below\r\n")}},
		lhCase{name: "compact and mixed-case headers", steps: []func(r *lhRun) string{plain("i-compact",
			"Via:", "v:", "From:", "f:", "To:", "t:", "Call-ID:", "i:", "Max-Forwards:", "mAX-fORWARDS:", "Content-Length:", "l:", "CSeq:", "cseq:")}},
		lhCase{name: "Content-Length absent", steps: []func(r *lhRun) string{plain("i-cla", "Content-Length: 0\r\n", "")}},
		lhCase{name: "Content-Length larger than the body", steps: []func(r *lhRun) string{plain("i-cll", "Content-Length: 0", "Content-Length: 40")}},
		lhCase{name: "Content-Length smaller than the body", steps: []func(r *lhRun) string{func(r *lhRun) string {
			return edit(lhReq("INVITE", r, "i-cls", 1, ""), "Content-Length: 0\r\n\r\n", "Content-Length: 2\r\n\r\nv=0\r\n")
		}}},
		lhCase{name: "CANCEL", steps: []func(r *lhRun) string{
			func(r *lhRun) string {
				return edit(lhReq("INVITE", r, "i-cancel", 1, ""), "Call-ID: i-cancel", "Call-ID: dlg-cancel")
			},
			func(r *lhRun) string {
				c := edit(lhReq("CANCEL", r, "i-cancel", 1, ""), "Call-ID: i-cancel", "Call-ID: dlg-cancel")
				return strings.Replace(c, "-CANCEL-1;", "-INVITE-1;", 1)
			},
		}},
	)

	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var got [2][]string
			var compact [2]int
			for i, materialise := range []bool{false, true} {
				r := newLHRun(t, uac, uas, materialise)
				r.t = t
				for _, s := range tc.steps {
					r.step(s(r))
				}
				got[i], compact[i] = r.got, r.compact
				if tc.want != "" {
					require.Contains(t, r.got[len(r.got)-1], tc.want, "materialise %v", materialise)
				}
				if tc.wantNot != "" {
					require.NotContains(t, r.got[len(r.got)-1], tc.wantNot, "materialise %v", materialise)
				}
			}
			if strings.HasPrefix(tc.name, "compact") {
				// The lazy path ran: it relays header names as written.
				require.Equal(t, [2]int{1, 0}, compact, "INVITEs relayed with a compact Call-ID (lazy, materialised)")
			}
			for j := range got[1] {
				require.Equal(t, got[1][j], got[0][j], "step %d: materialised (expected) vs lazy (actual)", j)
			}
		})
	}
}
