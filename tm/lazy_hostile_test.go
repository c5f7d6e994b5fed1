package tm

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/stretchr/testify/require"

	"github.com/asyncsip/asyncsip/reactor"
)

// Hostile and unusual requests through a Server twice: once with a route
// that calls c.Req() first (the parsed path) and once with the same route
// not calling it (the lazy path, lazy.go and splice.go). Whatever the
// path, a peer must see the same thing on the wire: the same responses,
// the same requests relayed to the same addresses, meaning the same
// (sipgo's reading, readMsg), and the same errors returned to the route
// and drops counted.

// hostileRoute is what the request route of a case does.
type hostileRoute struct {
	follow  bool   // calls FollowRoute
	dest    string // SetDestination
	target  string // Relay's target ("" relays to the Request-URI)
	forward bool   // Forward instead of Relay
	reply   int    // Reply(reply, reason) instead of relaying
	reason  string
	branch  bool // a Branch route (that adds a header)
	screen  bool // a Screen route that lets everything pass
	// failure, when set, is what the Failure route relays to (serial
	// forking); "reply" makes it answer 480 instead.
	failure string
	// replyReq makes the Reply route call c.Req() and c.Branch().Req().
	replyReq bool
	// suspend makes the request route suspend; hostileRun.resume then
	// does the rest of it.
	suspend bool
}

// hostileCase sends script's messages through a rig whose request route
// does rt; want, when set, is the messages the lazy run must send (as
// rig.expect describes them), checked besides the equality of both runs.
type hostileCase struct {
	name   string
	cfg    Config
	rt     hostileRoute
	script func(h *hostileRun)
	want   []string
	// wantErr, when set, is an error every run's route must have got.
	wantErr error
	// tcp adds a TCP transport (hostileRun.tcp) next to the rig's UDP one.
	tcp bool
}

// fakeTCP is a TCP transport on the proxy's address that records what it
// sends; it has a connection to every address but 127.0.0.9.
type fakeTCP struct{ *fakeTP }

func (f fakeTCP) Protocol() string                 { return "TCP" }
func (f fakeTCP) HasConn(addr netip.AddrPort) bool { return addr.Addr() != attackerAddr.Addr() }

// hostileRun is one run of a case: the rig and what the route saw.
type hostileRun struct {
	r       *rig
	errs    []string
	errv    []error
	resumes []func() // resume the suspended routes, in the order they suspended
	tcp     fakeTCP
	lazy    int // request routes that ran without a sipgo request
	routes  int
}

var hostileKey = []byte("lazy-hostile-route-key-0123456789")

func newHostileRun(t *testing.T, tc hostileCase, materialise bool) *hostileRun {
	h := &hostileRun{}
	cfg := tc.cfg
	cfg.Security.RouteKey = hostileKey
	rt := tc.rt
	act := func(c *Context) {
		if rt.follow {
			c.FollowRoute()
		}
		if rt.dest != "" {
			h.err("SetDestination", c.SetDestination(rt.dest))
		}
		switch {
		case rt.reply != 0:
			h.err("Reply", c.Reply(rt.reply, rt.reason))
		case rt.forward:
			h.err("Forward", c.Forward())
		case rt.target != "":
			h.err("Relay", c.Relay(rt.target))
		default:
			h.err("Relay", c.Relay())
		}
	}
	routes := Routes{Request: func(c *Context) {
		h.routes++
		if materialise {
			_ = c.Req()
		}
		if c.lazy() {
			h.lazy++
		}
		if !rt.suspend {
			act(c)
			return
		}
		res, err := c.Suspend()
		if err != nil {
			h.err("Suspend", err)
			return
		}
		h.resumes = append(h.resumes, func() { res.Resume(func() { act(c) }) })
	}}
	if rt.failure != "" {
		routes.Failure = func(c *Context) {
			if rt.failure == "reply" {
				h.err("Failure Reply", c.Reply(480, ""))
				return
			}
			h.err("Failure Relay", c.Relay(rt.failure))
		}
	}
	if rt.replyReq {
		routes.Reply = func(c *Context) {
			_ = c.Req()
			_ = c.Branch().Req()
		}
	}
	if rt.branch {
		routes.Branch = func(c *Context) { c.Branch().Req().AppendHeader(sip.NewHeader("X-Branch", "1")) }
	}
	if rt.screen {
		routes.Screen = func(*sip.Request, netip.AddrPort) bool { return false }
	}
	h.r = newRig(t, cfg, routes)
	if tc.tcp {
		h.tcp = fakeTCP{&fakeTP{}}
		h.r.s.AddTransport(h.tcp)
	}
	return h
}

func (h *hostileRun) err(what string, err error) {
	if err != nil {
		h.errs = append(h.errs, what+": "+err.Error())
		h.errv = append(h.errv, err)
	}
}

// lastTo returns the last request sent to dst (nil when none).
func (h *hostileRun) lastTo(dst netip.AddrPort, method sip.RequestMethod) *sip.Request {
	for i := len(h.r.tp.out) - 1; i >= 0; i-- {
		if req, ok := h.r.tp.out[i].msg.(*sip.Request); ok && h.r.tp.out[i].to == dst && req.Method == method {
			return req
		}
	}
	return nil
}

// answer makes the UAS at dst answer the last method sent to it.
func (h *hostileRun) answer(dst netip.AddrPort, method sip.RequestMethod, code int, toTag string) {
	if req := h.lastTo(dst, method); req != nil {
		h.r.recvMsg(dst, respond(req, code, toTag))
	}
}

// recvTCP delivers raw over the TCP transport.
func (h *hostileRun) recvTCP(from netip.AddrPort, raw string) {
	h.r.s.Receive(h.r.g.Loop(0), []byte(raw), from, h.tcp)
	h.r.run()
}

// resume resumes the route that suspended first and is not resumed yet;
// false when none is left.
func (h *hostileRun) resume() bool {
	if len(h.resumes) == 0 {
		return false
	}
	f := h.resumes[0]
	h.resumes = h.resumes[1:]
	f()
	h.r.run()
	return true
}

// answerNew is answer for a request sent after the first n messages.
func (h *hostileRun) answerNew(n int, dst netip.AddrPort, method sip.RequestMethod, code int, toTag string) {
	for _, s := range h.r.tp.out[n:] {
		if req, ok := s.msg.(*sip.Request); ok && s.to == dst && req.Method == method {
			h.answer(dst, method, code, toTag)
			return
		}
	}
}

// dialogRoutes returns the Route lines the caller of the dialog whose
// INVITE was relayed to dst uses: the Record-Route values, reversed.
func (h *hostileRun) dialogRoutes(dst netip.AddrPort) string {
	if req := h.lastTo(dst, sip.INVITE); req != nil {
		return routeLines(req.GetHeaders("Record-Route"), true)
	}
	return ""
}

// call sets up the dialog callID through the proxy: INVITE, 200, and
// returns the caller's Route lines.
func (h *hostileRun) call(callID string) string {
	h.r.recv(uacAddr, invite(callID, "z9hG4bK-"+callID))
	h.answer(uasAddr, sip.INVITE, 200, "b1")
	return h.dialogRoutes(uasAddr)
}

func describeSent(out []sent) []string {
	d := []string{}
	for _, s := range out {
		if s.msg == nil {
			d = append(d, "-- over TCP:")
			continue
		}
		d = append(d, s.to.String()+" "+short(s.msg))
	}
	return d
}

func runHostile(t *testing.T, cases []hostileCase) {
	t.Helper()
	lazyRuns := 0
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var runs [2]*hostileRun
			for i := range runs {
				runs[i] = newHostileRun(t, tc, i == 1)
				tc.script(runs[i])
				runs[i].r.run()
			}
			lz, pa := runs[0], runs[1]
			lazyRuns += lz.lazy
			require.Zero(t, pa.lazy, "the materialising route ran lazily")
			got, ref := lz.r.tp.out, pa.r.tp.out
			if tc.tcp {
				// What went over TCP, after what went over UDP.
				got = append(append([]sent(nil), got...), sent{})
				got = append(got, lz.tcp.out...)
				ref = append(append([]sent(nil), ref...), sent{})
				ref = append(ref, pa.tcp.out...)
			}
			t.Logf("routes %d, lazily %d: %v", lz.routes, lz.lazy, describeSent(got))
			if tc.want != nil {
				require.Equal(t, tc.want, describeSent(got), "messages sent (lazy)")
			}
			require.Equal(t, describeSent(ref), describeSent(got), "messages sent: materialised vs lazy")
			for j := range got {
				if got[j].msg == nil {
					continue
				}
				s1, h1, b1 := readMsg(got[j].msg, lz.r.s.tag)
				s2, h2, b2 := readMsg(ref[j].msg, pa.r.s.tag)
				require.Equal(t, s2, s1, "message %d start line\nlazy:\n%s\nmaterialised:\n%s", j, got[j].msg, ref[j].msg)
				require.Equal(t, b2, b1, "message %d body", j)
				require.Equal(t, h2, h1, "message %d headers\nlazy:\n%s\nmaterialised:\n%s", j, got[j].msg, ref[j].msg)
			}
			require.Equal(t, pa.errs, lz.errs, "errors returned to the route")
			if tc.wantErr != nil {
				for i, run := range runs {
					found := false
					for _, err := range run.errv {
						found = found || errors.Is(err, tc.wantErr)
					}
					require.True(t, found, "run %d: errors %q, want %v", i, run.errs, tc.wantErr)
				}
			}
			require.Equal(t, pa.routes, lz.routes, "request routes run")
			st1, st2 := lz.r.s.Stats(), pa.r.s.Stats()
			type drops struct {
				Parse, Invalid, Stray, Route, Source, Via, Unsigned, RouteSet, Screened, Panics uint64
			}
			d := func(s StatsSnapshot) drops {
				return drops{s.DropParse, s.DropInvalid, s.DropStray, s.DropRoute, s.DropSource, s.DropVia,
					s.DropUnsigned, s.DropRouteSet, s.DropScreened, s.Panics}
			}
			require.Equal(t, d(st2), d(st1), "drops counted")
			require.Zero(t, st1.Panics, "no panic")
		})
	}
	t.Logf("%d request routes ran lazily", lazyRuns)
}

// req returns a request from the UAC (request()) with the header lines of
// extra; edit replaces, in order, old/new pairs once each.
func hostileReq(method, ruri, callID, branch string, cseq int, extra string, edit ...string) string {
	raw := request(method, ruri, callID, branch, cseq, extra)
	for i := 0; i+1 < len(edit); i += 2 {
		raw = replaceOnce(raw, edit[i], edit[i+1])
	}
	return raw
}

// In-dialog requests must come along our signed Record-Route, whichever
// path reads them.
func TestLazyHostileInDialogRoutes(t *testing.T) {
	const bob = "sip:bob@127.0.0.1:5062"
	tampered := func(routes string) string {
		i := strings.Index(routes, ";sig=")
		if i < 0 {
			return routes
		}
		b := []byte(routes)
		j := i + len(";sig=")
		if b[j] == '0' {
			b[j] = '1'
		} else {
			b[j] = '0'
		}
		return string(b)
	}
	inDialog := func(method string, cseq int, routes func(h *hostileRun, rs string) string) func(h *hostileRun) {
		return func(h *hostileRun) {
			rs := h.call("hd-1")
			n := len(h.r.tp.out)
			h.r.recv(uacAddr, dialogRequest(method, bob, "hd-1", "z9hG4bK-hd-"+method, cseq, false, routes(h, rs)))
			if method != "ACK" {
				h.answerNew(n, uasAddr, sip.RequestMethod(method), 200, "")
			}
		}
	}
	setup := []string{"127.0.0.1:5061 100", "127.0.0.1:5062 INVITE", "127.0.0.1:5061 200"}
	with := func(more ...string) []string { return append(append([]string(nil), setup...), more...) }
	var cases []hostileCase
	for _, m := range []struct {
		method string
		cseq   int
	}{{"BYE", 2}, {"ACK", 1}, {"INVITE", 2}} {
		refused := with("127.0.0.1:5061 403")
		relayed := with("127.0.0.1:5062 " + m.method)
		if m.method == "ACK" {
			refused = with()
		} else if m.method == "INVITE" {
			relayed = with("127.0.0.1:5061 100", "127.0.0.1:5062 INVITE", "127.0.0.1:5061 200")
		} else {
			relayed = with("127.0.0.1:5062 BYE", "127.0.0.1:5061 200")
		}
		cases = append(cases,
			hostileCase{name: m.method + " signed", script: inDialog(m.method, m.cseq, func(_ *hostileRun, rs string) string { return rs }), want: relayed},
			hostileCase{name: m.method + " no Route", script: inDialog(m.method, m.cseq, func(*hostileRun, string) string { return "" }), want: refused},
			hostileCase{name: m.method + " unsigned", script: inDialog(m.method, m.cseq, func(*hostileRun, string) string {
				return "Route: <sip:127.0.0.1:5060;lr>\n"
			}), want: refused},
			hostileCase{name: m.method + " tampered", script: inDialog(m.method, m.cseq, func(_ *hostileRun, rs string) string { return tampered(rs) }), want: refused},
			hostileCase{name: m.method + " uppercase sig", script: inDialog(m.method, m.cseq, func(_ *hostileRun, rs string) string {
				i := strings.Index(rs, ";sig=")
				return rs[:i] + ";sig=" + strings.ToUpper(rs[i+5:i+21]) + rs[i+21:]
			})},
			hostileCase{name: m.method + " SIG parameter name", script: inDialog(m.method, m.cseq, func(_ *hostileRun, rs string) string {
				return strings.Replace(rs, ";sig=", ";SIG=", 1)
			})},
			hostileCase{name: m.method + " two sig parameters", script: inDialog(m.method, m.cseq, func(_ *hostileRun, rs string) string {
				i := strings.Index(rs, ";sig=")
				return rs[:i] + ";sig=0123456789abcdef" + rs[i:]
			})},
			hostileCase{name: m.method + " replayed from another dialog", script: func(h *hostileRun) {
				rs := h.call("hd-other")
				h.r.recv(uacAddr, dialogRequest(m.method, bob, "hd-2", "z9hG4bK-hd2-"+m.method, m.cseq, false, rs))
			}, want: with(refused[3:]...)},
			hostileCase{name: m.method + " signed for another From tag", script: func(h *hostileRun) {
				rs := h.call("hd-3")
				raw := dialogRequest(m.method, bob, "hd-3", "z9hG4bK-hd3-"+m.method, m.cseq, false, rs)
				raw = replaceOnce(raw, "tag=a1", "tag=a9")
				h.r.recv(uacAddr, raw)
			}, want: refused},
			hostileCase{name: m.method + " signed twice (double Record-Route), one field", script: inDialog(m.method, m.cseq, func(h *hostileRun, rs string) string {
				v := strings.TrimSuffix(strings.TrimPrefix(rs, "Route: "), "\n")
				return "Route: " + v + ", " + v + "\n"
			})},
			hostileCase{name: m.method + " signed twice, two fields", script: inDialog(m.method, m.cseq, func(h *hostileRun, rs string) string { return rs + rs })},
			hostileCase{name: m.method + " signed then ours unsigned", script: inDialog(m.method, m.cseq, func(h *hostileRun, rs string) string {
				return rs + "Route: <sip:127.0.0.1:5060;lr>\n"
			})},
			hostileCase{name: m.method + " unsigned then signed", script: inDialog(m.method, m.cseq, func(h *hostileRun, rs string) string {
				return "Route: <sip:127.0.0.1:5060;lr>\n" + rs
			}), want: refused},
			hostileCase{name: m.method + " signed then foreign", script: inDialog(m.method, m.cseq, func(h *hostileRun, rs string) string {
				return rs + "Route: <sip:127.0.0.3:5060;lr>\n"
			})},
			hostileCase{name: m.method + " signed three times", script: inDialog(m.method, m.cseq, func(h *hostileRun, rs string) string { return rs + rs + rs })},
			hostileCase{name: m.method + " forged flow token", script: inDialog(m.method, m.cseq, func(h *hostileRun, rs string) string {
				u := "sip:flow-7f00000113c4-0011223344556677@127.0.0.1:5060;transport=tcp;lr"
				return "Route: <" + h.r.signedURI("hd-1", u) + ">\n"
			})},
			hostileCase{name: m.method + " flow token for another address", script: inDialog(m.method, m.cseq, func(h *hostileRun, rs string) string {
				tok := h.r.s.flowToken(netip.MustParseAddrPort("127.0.0.3:5090"))
				u := "sip:" + tok + "@127.0.0.1:5060;lr"
				return "Route: <" + h.r.signedURI("hd-1", u) + ">\n"
			})},
			hostileCase{name: m.method + " signed Route with header parameters", script: inDialog(m.method, m.cseq, func(h *hostileRun, rs string) string {
				return strings.Replace(rs, ">\n", ">;x=1\n", 1)
			})},
			hostileCase{name: m.method + " to the proxy itself", script: func(h *hostileRun) {
				h.call("hd-4")
				h.r.recv(uacAddr, dialogRequest(m.method, "sip:127.0.0.1:5060", "hd-4", "z9hG4bK-hd4-"+m.method, m.cseq, false, ""))
			}},
			hostileCase{name: m.method + " strict-routed to us", script: func(h *hostileRun) {
				rs := h.call("hd-5")
				ours := strings.TrimSuffix(strings.TrimPrefix(rs, "Route: <"), ">\n")
				n := len(h.r.tp.out)
				h.r.recv(uacAddr, dialogRequest(m.method, ours, "hd-5", "z9hG4bK-hd5-"+m.method, m.cseq, false, "Route: <"+bob+">\n"))
				if m.method != "ACK" {
					h.answerNew(n, uasAddr, sip.RequestMethod(m.method), 200, "")
				}
			}},
		)
	}
	runHostile(t, cases)
}

// Initial requests: Route chosen by the sender, Max-Forwards, loops,
// unusual Vias and header forms, Content-Length.
func TestLazyHostileInitial(t *testing.T) {
	const bob = "sip:bob@127.0.0.1:5062"
	send := func(raw string) func(h *hostileRun) {
		return func(h *hostileRun) {
			h.r.recv(uacAddr, raw)
			h.answer(uasAddr, sip.INVITE, 486, "b1")
			h.answer(uasAddr, sip.OPTIONS, 200, "b1")
		}
	}
	inv := func(extra string, edit ...string) func(h *hostileRun) {
		return send(hostileReq("INVITE", bob, "hi-1", "z9hG4bK-hi-1", 1, extra, edit...))
	}
	mf := func(v string) func(h *hostileRun) {
		return inv("", "Max-Forwards: 70\r\n", v)
	}
	via := func(v string) func(h *hostileRun) {
		return inv("", "Via: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-hi-1\r\n", v)
	}
	foreign := "Route: <sip:127.0.0.3:5060;lr>\n"
	relayed := []string{"127.0.0.1:5061 100", "127.0.0.1:5062 INVITE", "127.0.0.1:5062 ACK", "127.0.0.1:5061 486"}
	cases := []hostileCase{
		{name: "plain", script: inv(""), want: relayed},
		{name: "foreign Route", script: inv(foreign), want: []string{"127.0.0.1:5061 403"}},
		{name: "foreign Route, FollowRoute", rt: hostileRoute{follow: true}, script: inv(foreign),
			want: []string{"127.0.0.1:5061 100", "127.0.0.3:5060 INVITE"}},
		{name: "foreign Route, target", rt: hostileRoute{target: bob}, script: inv(foreign), want: []string{"127.0.0.1:5061 403"}},
		{name: "our Route then foreign", script: inv("Route: <sip:127.0.0.1:5060;lr>\n" + foreign), want: []string{"127.0.0.1:5061 403"}},
		{name: "our Route twice then foreign", script: inv("Route: <sip:127.0.0.1:5060;lr>\nRoute: <sip:127.0.0.1:5060;lr>\n" + foreign)},
		{name: "our Route three times", script: inv("Route: <sip:127.0.0.1:5060;lr>, <sip:127.0.0.1:5060;lr>, <sip:127.0.0.1:5060;lr>\n")},
		{name: "our Route preloaded", script: inv("Route: <sip:127.0.0.1:5060;lr>\n"), want: relayed},
		{name: "our Route by IPv4 without port", script: inv("Route: <sip:127.0.0.1;lr>\n")},
		{name: "our Route with a signature of nothing", script: inv("Route: <sip:127.0.0.1:5060;lr;sig=zz>\n")},
		{name: "our Route uppercase scheme", script: inv("Route: <SIP:127.0.0.1:5060;LR>\n")},
		{name: "Route without brackets", script: inv("Route: sip:127.0.0.1:5060;lr\n")},
		{name: "empty Route element", script: inv("Route: <sip:127.0.0.1:5060;lr>,\n")},
		{name: "Route naming us by another port", script: inv("Route: <sip:127.0.0.1:5070;lr>\n")},
		{name: "Max-Forwards 0", script: mf("Max-Forwards: 0\r\n"), want: []string{"127.0.0.1:5061 483"}},
		{name: "Max-Forwards 00", script: mf("Max-Forwards: 00\r\n")},
		{name: "Max-Forwards 1", script: mf("Max-Forwards: 1\r\n"), want: relayed},
		{name: "Max-Forwards absent", script: mf(""), want: relayed},
		{name: "Max-Forwards garbage", script: mf("Max-Forwards: abc\r\n")},
		{name: "Max-Forwards negative", script: mf("Max-Forwards: -1\r\n")},
		{name: "Max-Forwards 255", script: mf("Max-Forwards: 255\r\n")},
		{name: "Max-Forwards 256", script: mf("Max-Forwards: 256\r\n")},
		{name: "Max-Forwards huge", script: mf("Max-Forwards: 4294967296\r\n")},
		{name: "Max-Forwards 2^32-1", script: mf("Max-Forwards: 4294967295\r\n")},
		{name: "Max-Forwards empty", script: mf("Max-Forwards: \r\n")},
		{name: "Max-Forwards 1 with trailing text", script: mf("Max-Forwards: 1 x\r\n")},
		{name: "Max-Forwards twice", script: mf("Max-Forwards: 5\r\nMax-Forwards: 0\r\n")},
		{name: "Max-Forwards compact-cased", script: mf("max-forwards: 0\r\n"), want: []string{"127.0.0.1:5061 483"}},
		{name: "Request-URI is us", script: send(hostileReq("INVITE", "sip:bob@127.0.0.1:5060", "hi-2", "z9hG4bK-hi-2", 1, ""))},
		{name: "Request-URI is us without user", script: send(hostileReq("INVITE", "sip:127.0.0.1:5060", "hi-2", "z9hG4bK-hi-2", 1, ""))},
		{name: "Request-URI is us, default port", script: send(hostileReq("INVITE", "sip:bob@127.0.0.1", "hi-2", "z9hG4bK-hi-2", 1, ""))},
		{name: "Request-URI is us, uppercase scheme", script: send(hostileReq("INVITE", "SIP:bob@127.0.0.1:5060", "hi-2", "z9hG4bK-hi-2", 1, ""))},
		{name: "Request-URI is us, OPTIONS", script: send(hostileReq("OPTIONS", "sip:127.0.0.1:5060", "hi-3", "z9hG4bK-hi-3", 1, ""))},
		{name: "SetDestination is us", rt: hostileRoute{dest: "127.0.0.1:5060"}, script: inv("")},
		{name: "SetDestination", rt: hostileRoute{dest: "127.0.0.1:5063"}, script: inv(""),
			want: []string{"127.0.0.1:5061 100", "127.0.0.1:5063 INVITE"}},
		{name: "SetDestination with CRLF", rt: hostileRoute{dest: "127.0.0.1:5063\r\nX-Evil: 1"}, script: inv("")},
		{name: "target with CRLF", rt: hostileRoute{target: "sip:bob@127.0.0.1:5062\r\nX-Evil: 1"}, script: inv("")},
		// Found by this test: badURI read only the user and host, and a
		// parameter's value went on the wire with its line break (both paths).
		{name: "target with LF in a parameter", rt: hostileRoute{target: "sip:bob@127.0.0.1:5062;x=a\nX-Evil: 1"}, script: inv(""),
			wantErr: ErrInjection},
		{name: "target with CR in a URI header", rt: hostileRoute{target: "sip:bob@127.0.0.1:5062?X-A=1\r"}, script: inv(""),
			wantErr: ErrInjection},
		{name: "target with LF in the password", rt: hostileRoute{target: "sip:bob:pw\nX@127.0.0.1:5062"}, script: inv("")},
		{name: "target with headers", rt: hostileRoute{target: "sip:bob@127.0.0.1:5062?X-Evil=1"}, script: inv("")},
		{name: "target is us", rt: hostileRoute{target: "sip:bob@127.0.0.1:5060"}, script: inv("")},
		{name: "Reply with CRLF in reason", rt: hostileRoute{reply: 404, reason: "Nope\r\nX-Evil: 1"}, script: inv("")},
		{name: "Reply 404", rt: hostileRoute{reply: 404}, script: inv(""), want: []string{"127.0.0.1:5061 404"}},
		{name: "Reply 100", rt: hostileRoute{reply: 100}, script: inv("")},
		{name: "Branch route", rt: hostileRoute{branch: true}, script: inv("")},
		{name: "Screen route", rt: hostileRoute{screen: true}, script: inv("")},
		{name: "Forward", rt: hostileRoute{forward: true}, script: inv("")},
		{name: "Forward, Max-Forwards absent", rt: hostileRoute{forward: true}, script: mf("")},
		{name: "Forward, Max-Forwards 1", rt: hostileRoute{forward: true}, script: mf("Max-Forwards: 1\r\n")},
		{name: "Forward, our Route preloaded", rt: hostileRoute{forward: true}, script: inv("Route: <sip:127.0.0.1:5060;lr>\n")},
		{name: "Forward, foreign Route", rt: hostileRoute{forward: true}, script: inv(foreign)},
		{name: "Forward, foreign Route, FollowRoute", rt: hostileRoute{forward: true, follow: true}, script: inv(foreign)},
		{name: "Forward, Via IPv6 rport", rt: hostileRoute{forward: true}, script: via("Via: SIP/2.0/UDP [2001:db8::1];rport;branch=z9hG4bK-hi-1\r\n")},
		{name: "Forward, Via received other", rt: hostileRoute{forward: true}, script: via("Via: SIP/2.0/UDP 127.0.0.1:5061;received=10.0.0.1;branch=z9hG4bK-hi-1\r\n")},
		{name: "Forward, SetDestination", rt: hostileRoute{forward: true, dest: "127.0.0.1:5063"}, script: inv("")},
		{name: "Forward, SetDestination is us", rt: hostileRoute{forward: true, dest: "127.0.0.1:5060"}, script: inv("")},
		{name: "Forward, Request-URI is us", rt: hostileRoute{forward: true}, script: send(hostileReq("INVITE", "sip:bob@127.0.0.1:5060", "hi-2", "z9hG4bK-hi-2", 1, ""))},
		{name: "Forward, retransmitted", rt: hostileRoute{forward: true}, script: func(h *hostileRun) {
			raw := hostileReq("OPTIONS", bob, "hi-10", "z9hG4bK-hi-10", 1, "")
			h.r.recv(uacAddr, raw)
			h.r.recv(uacAddr, raw)
			h.answer(uasAddr, sip.OPTIONS, 200, "b1")
		}},
		{name: "Forward, compact", rt: hostileRoute{forward: true}, script: send(strings.ReplaceAll(
			"OPTIONS sip:bob@127.0.0.1:5062 SIP/2.0\nv: SIP/2.0/UDP 127.0.0.1:5061;BRANCH=z9hG4bK-hi-11;rport\n"+
				"f: <sip:alice@127.0.0.1>;TAG=a1\nt: <sip:bob@127.0.0.1>\ni: hi-11\ncseq: 1 OPTIONS\nl: 0\n\n", "\n", "\r\n"))},
		{name: "Proxy-Require", script: inv("Proxy-Require: foo\n"), want: []string{"127.0.0.1:5061 420"}},
		{name: "Proxy-Require lowercase", script: inv("proxy-require: foo\n")},
		{name: "Proxy-Require empty", script: inv("Proxy-Require: \n")},
		{name: "Via received same", script: via("Via: SIP/2.0/UDP 127.0.0.1:5061;received=127.0.0.1;branch=z9hG4bK-hi-1\r\n")},
		{name: "Via received other", script: via("Via: SIP/2.0/UDP 127.0.0.1:5061;received=10.0.0.1;branch=z9hG4bK-hi-1\r\n")},
		{name: "Via received empty", script: via("Via: SIP/2.0/UDP 127.0.0.1:5061;received=;branch=z9hG4bK-hi-1\r\n")},
		{name: "Via received IPv6", script: via("Via: SIP/2.0/UDP 127.0.0.1:5061;received=[::1];branch=z9hG4bK-hi-1\r\n")},
		{name: "Via rport", script: via("Via: SIP/2.0/UDP 127.0.0.1:5061;rport;branch=z9hG4bK-hi-1\r\n")},
		{name: "Via rport filled", script: via("Via: SIP/2.0/UDP 127.0.0.1:5061;rport=7777;branch=z9hG4bK-hi-1\r\n")},
		{name: "Via rport empty value", script: via("Via: SIP/2.0/UDP 127.0.0.1:5061;rport=;branch=z9hG4bK-hi-1\r\n")},
		{name: "Via RPORT uppercase", script: via("Via: SIP/2.0/UDP 127.0.0.1:5061;RPORT;branch=z9hG4bK-hi-1\r\n")},
		{name: "Via Received uppercase", script: via("Via: SIP/2.0/UDP 10.0.0.9:5061;RECEIVED=1.2.3.4;branch=z9hG4bK-hi-1\r\n")},
		{name: "Via rport twice", script: via("Via: SIP/2.0/UDP 127.0.0.1:5061;rport;rport;branch=z9hG4bK-hi-1\r\n")},
		{name: "Via BRANCH uppercase", script: via("Via: SIP/2.0/UDP 127.0.0.1:5061;BRANCH=z9hG4bK-hi-1\r\n")},
		{name: "Via branch twice", script: via("Via: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-hi-1;branch=z9hG4bK-x\r\n")},
		{name: "Via no branch", script: via("Via: SIP/2.0/UDP 127.0.0.1:5061\r\n")},
		{name: "Via RFC 2543 branch", script: via("Via: SIP/2.0/UDP 127.0.0.1:5061;branch=1\r\n")},
		{name: "Via no port", script: via("Via: SIP/2.0/UDP 127.0.0.1;branch=z9hG4bK-hi-1\r\n")},
		{name: "Via other host", script: via("Via: SIP/2.0/UDP pc33.example.com:5061;branch=z9hG4bK-hi-1\r\n")},
		{name: "Via IPv6", script: via("Via: SIP/2.0/UDP [2001:db8::1]:5061;branch=z9hG4bK-hi-1\r\n")},
		{name: "Via IPv6 without brackets", script: via("Via: SIP/2.0/UDP 2001:db8::1;branch=z9hG4bK-hi-1\r\n")},
		{name: "Via IPv6 rport", script: via("Via: SIP/2.0/UDP [2001:db8::1];rport;branch=z9hG4bK-hi-1\r\n")},
		{name: "Via IPv4-mapped", script: via("Via: SIP/2.0/UDP [::ffff:127.0.0.1]:5061;branch=z9hG4bK-hi-1\r\n")},
		{name: "Via maddr ttl", script: via("Via: SIP/2.0/UDP 127.0.0.1:5061;maddr=224.2.0.1;ttl=16;branch=z9hG4bK-hi-1\r\n")},
		{name: "Via lowercase transport", script: via("Via: SIP/2.0/udp 127.0.0.1:5061;branch=z9hG4bK-hi-1\r\n")},
		{name: "Via TCP over UDP", script: via("Via: SIP/2.0/TCP 127.0.0.1:5061;branch=z9hG4bK-hi-1\r\n")},
		{name: "Via two in one field", script: via("Via: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-hi-1, SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK-up\r\n")},
		{name: "Via two in one field, no space", script: via("Via: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-hi-1,SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK-up;received=1.2.3.4\r\n")},
		{name: "Via space before parameters", script: via("Via: SIP/2.0/UDP 127.0.0.1:5061 ;branch=z9hG4bK-hi-1\r\n")},
		{name: "Via space around equals", script: via("Via: SIP/2.0/UDP 127.0.0.1:5061;branch = z9hG4bK-hi-1\r\n")},
		{name: "Via compact, mixed-case names", script: send(strings.ReplaceAll(
			"INVITE sip:bob@127.0.0.1:5062 SIP/2.0\nv: SIP/2.0/UDP 127.0.0.1:5061;BRANCH=z9hG4bK-hi-9;rport\nmAX-fORWARDS: 3\n"+
				"f: <sip:alice@127.0.0.1>;TAG=a1\nt: <sip:bob@127.0.0.1>\ni: hi-9\ncseq: 1 INVITE\nm: <sip:alice@127.0.0.1:5061>\n"+
				"rOUTE: <sip:127.0.0.1:5060;lr>\nl: 0\n\n", "\n", "\r\n"))},
		{name: "Content-Length absent", script: inv("", "Content-Length: 0\r\n", "")},
		{name: "Content-Length larger than body", script: inv("", "Content-Length: 0\r\n", "Content-Length: 10\r\n")},
		{name: "Content-Length smaller than body", script: send(strings.Replace(
			hostileReq("INVITE", bob, "hi-1", "z9hG4bK-hi-1", 1, "", "Content-Length: 0\r\n", "Content-Length: 2\r\n"), "\r\n\r\n", "\r\n\r\nv=0\r\n", 1))},
		{name: "Content-Length absent with body", script: send(strings.Replace(
			hostileReq("INVITE", bob, "hi-1", "z9hG4bK-hi-1", 1, "Content-Type: application/sdp\n", "Content-Length: 0\r\n", ""), "\r\n\r\n", "\r\n\r\nv=0\r\n", 1))},
		{name: "Content-Length negative", script: inv("", "Content-Length: 0\r\n", "Content-Length: -1\r\n")},
		{name: "Content-Length twice", script: inv("", "Content-Length: 0\r\n", "Content-Length: 0\r\nl: 0\r\n")},
		{name: "CRLF injected in a header value", script: inv("X-A: 1\rX-B: 2\n")},
		{name: "To tag, no Route, Request-URI elsewhere", script: send(replaceTo(hostileReq("INVITE", "sip:victim@127.0.0.3:5060", "hi-4", "z9hG4bK-hi-4", 1, "")))},
		{name: "REGISTER", script: send(hostileReq("REGISTER", "sip:127.0.0.1:5062", "hi-5", "z9hG4bK-hi-5", 1, ""))},
		{name: "OPTIONS", script: send(hostileReq("OPTIONS", bob, "hi-6", "z9hG4bK-hi-6", 1, ""))},
		{name: "unknown method", script: send(hostileReq("FOO", bob, "hi-7", "z9hG4bK-hi-7", 1, ""))},
		{name: "sips Request-URI", script: send(hostileReq("INVITE", "sips:bob@127.0.0.1:5062", "hi-8", "z9hG4bK-hi-8", 1, ""))},
		{name: "Request-URI with transport=tcp", script: send(hostileReq("INVITE", "sip:bob@127.0.0.1:5062;transport=tcp", "hi-8", "z9hG4bK-hi-8", 1, ""))},
		{name: "Request-URI with maddr", script: send(hostileReq("INVITE", "sip:bob@127.0.0.1:5062;maddr=127.0.0.3", "hi-8", "z9hG4bK-hi-8", 1, ""))},
		{name: "Request-URI IPv6", script: send(hostileReq("INVITE", "sip:bob@[::1]:5062", "hi-8", "z9hG4bK-hi-8", 1, ""))},
		{name: "Request-URI with password", script: send(hostileReq("INVITE", "sip:bob:secret@127.0.0.1:5062", "hi-8", "z9hG4bK-hi-8", 1, ""))},
		{name: "Record-Route already present", script: inv("Record-Route: <sip:10.0.0.1;lr>\n")},
		{name: "Contact list", script: inv("", "Contact: <sip:alice@127.0.0.1:5061>\r\n", "Contact: <sip:a@1.2.3.4>, <sip:b@1.2.3.5>;q=0.5\r\n")},
		{name: "From without tag", script: inv("", "tag=a1", "")},
		{name: "From tag twice", script: inv("", "tag=a1", "tag=a1;tag=a2")},
		{name: "To tag empty", script: inv("", "To: <sip:bob@127.0.0.1>", "To: <sip:bob@127.0.0.1>;tag=")},
		{name: "Call-ID with spaces", script: inv("", "Call-ID: hi-1", "Call-ID:   hi-1  ")},
		{name: "CSeq method differs", script: inv("", "CSeq: 1 INVITE", "CSeq: 1 BYE")},
		{name: "Timestamp", script: inv("Timestamp: 54 0.5\n")},
	}
	runHostile(t, cases)
}

// Transactions: retransmissions, CANCEL of a lazy INVITE, ACK for 2xx and
// non-2xx, responses from another source.
func TestLazyHostileTransactions(t *testing.T) {
	const bob = "sip:bob@127.0.0.1:5062"
	cases := []hostileCase{
		{name: "retransmitted INVITE", script: func(h *hostileRun) {
			raw := invite("ht-1", "z9hG4bK-ht-1")
			h.r.recv(uacAddr, raw)
			h.r.recv(uacAddr, raw)
			h.answer(uasAddr, sip.INVITE, 180, "b1")
			h.r.recv(uacAddr, raw)
			h.answer(uasAddr, sip.INVITE, 486, "b1")
			h.r.recv(uacAddr, raw)
			h.r.recv(uacAddr, dialogRequest("ACK", bob, "ht-1", "z9hG4bK-ht-1", 1, false, ""))
			h.r.recv(uacAddr, raw)
		}},
		{name: "retransmitted BYE", script: func(h *hostileRun) {
			rs := h.call("ht-2")
			bye := dialogRequest("BYE", bob, "ht-2", "z9hG4bK-ht-2b", 2, false, rs)
			h.r.recv(uacAddr, bye)
			h.r.recv(uacAddr, bye)
			h.answer(uasAddr, sip.BYE, 200, "")
			h.r.recv(uacAddr, bye)
		}},
		{name: "CANCEL before any response", script: func(h *hostileRun) {
			h.r.recv(uacAddr, invite("ht-3", "z9hG4bK-ht-3"))
			h.r.recv(uacAddr, request("CANCEL", bob, "ht-3", "z9hG4bK-ht-3", 1, ""))
			h.answer(uasAddr, sip.INVITE, 180, "b1")
			h.answer(uasAddr, sip.CANCEL, 200, "")
			h.answer(uasAddr, sip.INVITE, 487, "b1")
			h.r.recv(uacAddr, dialogRequest("ACK", bob, "ht-3", "z9hG4bK-ht-3", 1, false, ""))
		}},
		{name: "CANCEL after 180", script: func(h *hostileRun) {
			h.r.recv(uacAddr, invite("ht-4", "z9hG4bK-ht-4"))
			h.answer(uasAddr, sip.INVITE, 180, "b1")
			h.r.recv(uacAddr, request("CANCEL", bob, "ht-4", "z9hG4bK-ht-4", 1, ""))
			h.answer(uasAddr, sip.CANCEL, 200, "")
			h.answer(uasAddr, sip.INVITE, 487, "b1")
			h.r.recv(uacAddr, dialogRequest("ACK", bob, "ht-4", "z9hG4bK-ht-4", 1, false, ""))
		}},
		{name: "CANCEL with another branch", script: func(h *hostileRun) {
			h.r.recv(uacAddr, invite("ht-5", "z9hG4bK-ht-5"))
			h.r.recv(uacAddr, request("CANCEL", bob, "ht-5", "z9hG4bK-other", 1, ""))
		}},
		{name: "CANCEL from another source", script: func(h *hostileRun) {
			h.r.recv(uacAddr, invite("ht-6", "z9hG4bK-ht-6"))
			h.r.recv(attackerAddr, request("CANCEL", bob, "ht-6", "z9hG4bK-ht-6", 1, ""))
		}},
		{name: "ACK for 2xx, stateless", script: func(h *hostileRun) {
			rs := h.call("ht-7")
			h.r.recv(uacAddr, dialogRequest("ACK", bob, "ht-7", "z9hG4bK-ht-7a", 1, false, rs))
			h.r.recv(uacAddr, dialogRequest("ACK", bob, "ht-7", "z9hG4bK-ht-7a", 1, false, rs))
		}},
		{name: "ACK for 2xx, Forward", rt: hostileRoute{forward: true}, script: func(h *hostileRun) {
			rs := h.call("ht-8")
			h.r.recv(uacAddr, dialogRequest("ACK", bob, "ht-8", "z9hG4bK-ht-8a", 1, false, rs))
		}},
		{name: "ACK for 2xx, Relay to a target", rt: hostileRoute{target: "sip:bob@127.0.0.1:5063"}, script: func(h *hostileRun) {
			rs := h.call("ht-9")
			h.r.recv(uacAddr, dialogRequest("ACK", bob, "ht-9", "z9hG4bK-ht-9a", 1, false, rs))
		}},
		{name: "ACK for 2xx, SetDestination", rt: hostileRoute{dest: "127.0.0.1:5063"}, script: func(h *hostileRun) {
			rs := h.call("ht-10")
			h.r.recv(uacAddr, dialogRequest("ACK", bob, "ht-10", "z9hG4bK-ht-10a", 1, false, rs))
		}},
		{name: "ACK to us, our To tag", rt: hostileRoute{reply: 404}, script: func(h *hostileRun) {
			h.r.recv(uacAddr, invite("ht-11", "z9hG4bK-ht-11"))
			var tag string
			for _, s := range h.r.tp.out {
				if r, ok := s.msg.(*sip.Response); ok {
					tag, _ = r.To().Params.Get("tag")
				}
			}
			ack := request("ACK", bob, "ht-11", "z9hG4bK-ht-11", 1, "")
			h.r.recv(uacAddr, replaceOnce(ack, "To: <sip:bob@127.0.0.1>", "To: <sip:bob@127.0.0.1>;tag="+tag))
			h.r.recv(uacAddr, replaceOnce(request("ACK", bob, "ht-11", "z9hG4bK-ht-11x", 1, ""), "To: <sip:bob@127.0.0.1>", "To: <sip:bob@127.0.0.1>;tag="+tag))
		}},
		// Found by this review: an ACK (no transaction, no 483 check) with
		// Max-Forwards 0 went on with Max-Forwards 4294967295 (uint32 0-1):
		// a loop of ACKs never ended. RFC 3261 §16.3 step 3: not forwarded.
		{name: "ACK for 2xx, Max-Forwards 0", script: func(h *hostileRun) {
			rs := h.call("ht-19")
			ack := dialogRequest("ACK", bob, "ht-19", "z9hG4bK-ht-19a", 1, false, rs)
			h.r.recv(uacAddr, replaceOnce(ack, "Max-Forwards: 70", "Max-Forwards: 0"))
			h.r.recv(uacAddr, replaceOnce(ack, "Max-Forwards: 70", "Max-Forwards: 1"))
		}, want: []string{"127.0.0.1:5061 100", "127.0.0.1:5062 INVITE", "127.0.0.1:5061 200", "127.0.0.1:5062 ACK"}},
		{name: "ACK for 2xx, Max-Forwards 0, Forward", rt: hostileRoute{forward: true}, script: func(h *hostileRun) {
			rs := h.call("ht-20")
			ack := dialogRequest("ACK", bob, "ht-20", "z9hG4bK-ht-20a", 1, false, rs)
			h.r.recv(uacAddr, replaceOnce(ack, "Max-Forwards: 70", "Max-Forwards: 0"))
		}, want: []string{"127.0.0.1:5062 INVITE", "127.0.0.1:5061 200"}},
		// Found by this review: Relay(target) for an ACK set the
		// Request-URI without the injection check of a branch.
		{name: "ACK for 2xx, Relay to a target with LF", rt: hostileRoute{target: "sip:bob@127.0.0.1:5062;x=a\nX-Evil: 1"}, script: func(h *hostileRun) {
			h.r.recv(uacAddr, dialogRequest("ACK", bob, "ht-21", "z9hG4bK-ht-21a", 1, false, h.r.signedRoute("ht-21", "sip:127.0.0.1:5060;lr")))
		}, want: []string{}, wantErr: ErrInjection},
		{name: "serial forking from the failure route", rt: hostileRoute{failure: "sip:bob@127.0.0.1:5063"}, script: func(h *hostileRun) {
			h.r.recv(uacAddr, invite("ht-22", "z9hG4bK-ht-22"))
			h.answer(uasAddr, sip.INVITE, 486, "b1")
			h.answer(uas2Addr, sip.INVITE, 180, "c1")
			h.answer(uas2Addr, sip.INVITE, 200, "c1")
			h.r.recv(uacAddr, dialogRequest("ACK", bob, "ht-22", "z9hG4bK-ht-22a", 1, false, h.dialogRoutes(uas2Addr)))
		}, want: []string{"127.0.0.1:5061 100", "127.0.0.1:5062 INVITE", "127.0.0.1:5062 ACK", "127.0.0.1:5063 INVITE",
			"127.0.0.1:5061 180", "127.0.0.1:5061 200", "127.0.0.1:5062 ACK"}},
		{name: "failure route replies", rt: hostileRoute{failure: "reply"}, script: func(h *hostileRun) {
			h.r.recv(uacAddr, invite("ht-23", "z9hG4bK-ht-23"))
			h.answer(uasAddr, sip.INVITE, 486, "b1")
			h.r.recv(uacAddr, dialogRequest("ACK", bob, "ht-23", "z9hG4bK-ht-23", 1, false, ""))
		}},
		{name: "reply route reads the request", rt: hostileRoute{replyReq: true, failure: "sip:bob@127.0.0.1:5063"}, script: func(h *hostileRun) {
			h.r.recv(uacAddr, invite("ht-24", "z9hG4bK-ht-24"))
			h.answer(uasAddr, sip.INVITE, 183, "b1")
			h.answer(uasAddr, sip.INVITE, 503, "b1")
			h.answer(uas2Addr, sip.INVITE, 200, "c1")
		}},
		{name: "serial forking after CANCEL", rt: hostileRoute{failure: "sip:bob@127.0.0.1:5063"}, script: func(h *hostileRun) {
			h.r.recv(uacAddr, invite("ht-25", "z9hG4bK-ht-25"))
			h.answer(uasAddr, sip.INVITE, 180, "b1")
			h.r.recv(uacAddr, request("CANCEL", bob, "ht-25", "z9hG4bK-ht-25", 1, ""))
			h.answer(uasAddr, sip.CANCEL, 200, "")
			h.answer(uasAddr, sip.INVITE, 487, "b1")
		}},
		{name: "suspended, other messages meanwhile", rt: hostileRoute{suspend: true}, script: func(h *hostileRun) {
			raw := invite("ht-26", "z9hG4bK-ht-26")
			h.r.recv(uacAddr, raw)
			h.r.recv(uacAddr, raw)
			h.r.recv(uacAddr, request("OPTIONS", bob, "ht-27", "z9hG4bK-ht-27", 1, "Route: <sip:127.0.0.1:5060;lr>\n"))
			h.r.recv(uasAddr, "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK-stray\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:b@c>;tag=2\r\nCall-ID: ht-28\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n")
			for h.resume() {
			}
			h.answer(uasAddr, sip.INVITE, 200, "b1")
			h.answer(uasAddr, sip.OPTIONS, 200, "b1")
		}},
		{name: "suspended, cancelled meanwhile", rt: hostileRoute{suspend: true}, script: func(h *hostileRun) {
			h.r.recv(uacAddr, invite("ht-29", "z9hG4bK-ht-29"))
			h.r.recv(uacAddr, request("CANCEL", bob, "ht-29", "z9hG4bK-ht-29", 1, ""))
			h.resume()
		}},
		{name: "suspended in-dialog BYE", rt: hostileRoute{suspend: true}, script: func(h *hostileRun) {
			h.r.recv(uacAddr, invite("ht-30", "z9hG4bK-ht-30"))
			h.resume()
			h.answer(uasAddr, sip.INVITE, 200, "b1")
			rs := h.dialogRoutes(uasAddr)
			h.r.recv(uacAddr, dialogRequest("BYE", bob, "ht-30", "z9hG4bK-ht-30b", 2, false, rs))
			h.r.recv(uacAddr, invite("ht-31", "z9hG4bK-ht-31"))
			h.resume() // the BYE
			h.answer(uasAddr, sip.BYE, 200, "")
			h.resume() // the INVITE
		}, want: []string{"127.0.0.1:5061 100", "127.0.0.1:5062 INVITE", "127.0.0.1:5061 200", "127.0.0.1:5061 100",
			"127.0.0.1:5062 BYE", "127.0.0.1:5061 200", "127.0.0.1:5062 INVITE"}},
		{name: "TCP in, UDP out: double Record-Route with a flow token", tcp: true, want: []string{
			"127.0.0.1:5062 INVITE", "127.0.0.1:5062 ACK", "127.0.0.1:5062 403", "-- over TCP:",
			"127.0.0.1:5061 100", "127.0.0.1:5061 200", "127.0.0.1:5061 BYE", "127.0.0.1:5061 BYE", "127.0.0.1:5061 BYE"}, script: func(h *hostileRun) {
			const bobUDP = "sip:bob@127.0.0.1:5062;transport=udp"
			raw := replaceOnce(request("INVITE", bobUDP, "ht-40", "z9hG4bK-ht-40", 1, ""), "SIP/2.0/UDP", "SIP/2.0/TCP")
			h.recvTCP(uacAddr, raw)
			h.answer(uasAddr, sip.INVITE, 200, "b1")
			inv := h.lastTo(uasAddr, sip.INVITE)
			if inv == nil {
				return
			}
			rr := inv.GetHeaders("Record-Route")
			// The caller's ACK and BYE over TCP, the callee's BYE over UDP.
			tcpReq := func(raw string) string { return replaceOnce(raw, "SIP/2.0/UDP", "SIP/2.0/TCP") }
			h.recvTCP(uacAddr, tcpReq(dialogRequest("ACK", bobUDP, "ht-40", "z9hG4bK-ht-40a", 1, false, routeLines(rr, true))))
			h.r.recv(uasAddr, dialogRequest("BYE", "sip:alice@127.0.0.1:5061;transport=tcp", "ht-40", "z9hG4bK-ht-40b", 2, true, routeLines(rr, false)))
			h.r.recv(uasAddr, dialogRequest("BYE", "sip:alice@127.0.0.1:5061", "ht-40", "z9hG4bK-ht-40c", 3, true, routeLines(rr, false)))
			if len(rr) == 2 {
				// Only the flow token's value.
				h.r.recv(uasAddr, dialogRequest("BYE", "sip:alice@127.0.0.1:5061", "ht-40", "z9hG4bK-ht-40d", 4, true, "Route: "+rr[1].Value()+"\n"))
				// Forged: the token's address changed, the signature kept.
				forged := strings.Replace(rr[1].Value(), flowPrefix+"7f000001", flowPrefix+"7f000009", 1)
				if forged == rr[1].Value() {
					panic("no flow token to forge in " + forged)
				}
				h.r.recv(uasAddr, dialogRequest("BYE", "sip:alice@127.0.0.1:5061", "ht-40", "z9hG4bK-ht-40e", 5, true, routeLines(rr[:1], false)+"Route: "+forged+"\n"))
			}
		}},
		{name: "TCP in from a source without connection", tcp: true, script: func(h *hostileRun) {
			raw := replaceOnce(request("INVITE", "sip:bob@127.0.0.1:5062;transport=udp", "ht-41", "z9hG4bK-ht-41", 1, ""), "SIP/2.0/UDP 127.0.0.1:5061", "SIP/2.0/TCP 127.0.0.9:5099")
			h.recvTCP(attackerAddr, raw)
			h.answer(uasAddr, sip.INVITE, 200, "b1")
			if inv := h.lastTo(uasAddr, sip.INVITE); inv != nil {
				rr := inv.GetHeaders("Record-Route")
				h.r.recv(uasAddr, dialogRequest("BYE", "sip:alice@127.0.0.9:5099", "ht-41", "z9hG4bK-ht-41b", 2, true, routeLines(rr, false)))
			}
		}},
		{name: "ACK without To tag", script: func(h *hostileRun) {
			h.r.recv(uacAddr, request("ACK", bob, "ht-12", "z9hG4bK-ht-12", 1, ""))
		}},
		{name: "response from another source", script: func(h *hostileRun) {
			h.r.recv(uacAddr, invite("ht-13", "z9hG4bK-ht-13"))
			if req := h.lastTo(uasAddr, sip.INVITE); req != nil {
				h.r.recvMsg(thirdAddr, respond(req, 200, "evil"))
				h.r.recvMsg(uasAddr, respond(req, 180, "b1"))
				h.r.recvMsg(attackerAddr, respond(req, 486, "evil"))
			}
			h.answer(uasAddr, sip.INVITE, 200, "b1")
		}},
		{name: "response with forged Via below ours", script: func(h *hostileRun) {
			h.r.recv(uacAddr, invite("ht-14", "z9hG4bK-ht-14"))
			if req := h.lastTo(uasAddr, sip.INVITE); req != nil {
				resp := respond(req, 200, "b1")
				v := resp.GetHeaders("Via")[1].(*sip.ViaHeader)
				v.Host = "127.0.0.9"
				h.r.recvMsg(uasAddr, resp)
			}
		}},
		{name: "timeout", script: func(h *hostileRun) {
			h.r.recv(uacAddr, invite("ht-15", "z9hG4bK-ht-15"))
			for i := 0; i < 80; i++ {
				h.r.advance(time.Second)
			}
		}},
		{name: "non-INVITE timeout and late retransmission", script: func(h *hostileRun) {
			raw := request("OPTIONS", bob, "ht-16", "z9hG4bK-ht-16", 1, "")
			h.r.recv(uacAddr, raw)
			for i := 0; i < 40; i++ {
				h.r.advance(time.Second)
			}
			h.r.recv(uacAddr, raw)
		}},
		{name: "same branch, another method", script: func(h *hostileRun) {
			h.r.recv(uacAddr, request("OPTIONS", bob, "ht-17", "z9hG4bK-ht-17", 1, ""))
			h.r.recv(uacAddr, request("MESSAGE", bob, "ht-17", "z9hG4bK-ht-17", 2, ""))
		}},
		{name: "same branch, another source", script: func(h *hostileRun) {
			h.r.recv(uacAddr, request("OPTIONS", bob, "ht-18", "z9hG4bK-ht-18", 1, ""))
			h.r.recv(attackerAddr, request("OPTIONS", bob, "ht-18", "z9hG4bK-ht-18", 1, ""))
		}},
	}
	runHostile(t, cases)
}

// rawTP records what the server sends, parsable or not.
type rawTP struct{ out []rawOut }

type rawOut struct {
	to  netip.AddrPort
	raw []byte
}

func (f *rawTP) Send(_ *reactor.Loop, b []byte, to netip.AddrPort) error {
	f.out = append(f.out, rawOut{to, append([]byte(nil), b...)})
	return nil
}
func (f *rawTP) Protocol() string          { return "UDP" }
func (f *rawTP) Advertised() (string, int) { return "127.0.0.1", 5060 }
func (f *rawTP) LocalAddr() netip.AddrPort { return proxyAddr }

// lazyDiffRun receives data once on a fresh server whose request route
// relays to 127.0.0.1:5062, after calling c.Req() when materialise is set,
// runs its timers out, and returns what it sent, the panics recovered (in
// routes and on the loop) and the transactions left.
func lazyDiffRun(data []byte, materialise bool) (out []rawOut, tag string, lazy bool, panics uint64, left int) {
	clk := reactor.NewFakeClock(time.Unix(1_700_000_000, 0))
	g := reactor.NewManualGroup(1, clk)
	s := NewServer(g.Loops(), Config{Security: Security{RouteKey: hostileKey}}, Routes{Request: func(c *Context) {
		if materialise {
			_ = c.Req()
		}
		lazy = lazy || c.lazy()
		_ = c.SetDestination("127.0.0.1:5062")
		_ = c.Relay()
	}})
	tp := &rawTP{}
	s.AddTransport(tp)
	l := g.Loop(0)
	s.Receive(l, data, uacAddr, tp)
	s.Receive(l, data, uacAddr, tp) // a retransmission
	l.Advance(10 * time.Minute)
	left = len(s.loops[0].stx) + len(s.loops[0].ctx)
	return tp.out, s.tag, lazy, s.Stats().Panics + l.Stats().Panics, left
}

// lazyDiff reports how what a peer reads of the lazy run's messages (a)
// differs from the materialised run's (b); "" when it does not.
func lazyDiff(a, b []rawOut, tagA, tagB string) string {
	if len(a) != len(b) {
		return fmt.Sprintf("%d messages sent lazily, %d materialised", len(a), len(b))
	}
	for j := range a {
		if a[j].to != b[j].to {
			return fmt.Sprintf("message %d to %v lazily, %v materialised", j, a[j].to, b[j].to)
		}
		ma, errA := sip.ParseMessage(append([]byte(nil), a[j].raw...))
		mb, errB := sip.ParseMessage(append([]byte(nil), b[j].raw...))
		if (errA == nil) != (errB == nil) {
			return fmt.Sprintf("message %d: parse errors %v (lazy), %v (materialised)\nlazy:\n%s\nmaterialised:\n%s", j, errA, errB, a[j].raw, b[j].raw)
		}
		if errA != nil {
			continue
		}
		s1, h1, b1 := readMsg(ma, tagA)
		s2, h2, b2 := readMsg(mb, tagB)
		if s1 != s2 || b1 != b2 || fmt.Sprint(h1) != fmt.Sprint(h2) {
			return fmt.Sprintf("message %d differs\nlazy:\n%s\nmaterialised:\n%s", j, a[j].raw, b[j].raw)
		}
	}
	return ""
}

// FuzzLazyDifferential: any bytes received by a route that never asks
// for the sipgo request and by one that does produce the same messages
// (what a peer reads of them); nothing panics (route or loop) and no
// transaction is left once every timer ran.
func FuzzLazyDifferential(f *testing.F) {
	seedCorpus(f)
	r := newRig(&testing.T{}, Config{Security: Security{RouteKey: hostileKey}}, Routes{})
	signed := r.signedRoute("fz-d", "sip:127.0.0.1:5060;lr")
	for _, s := range []string{
		dialogRequest("BYE", "sip:bob@127.0.0.1:5062", "fz-d", "z9hG4bK-fzd", 2, false, signed),
		dialogRequest("ACK", "sip:bob@127.0.0.1:5062", "fz-d", "z9hG4bK-fzd", 1, false, signed),
		dialogRequest("INVITE", "sip:bob@127.0.0.1:5062", "fz-d", "z9hG4bK-fzd", 3, false, signed+signed),
		request("INVITE", "sip:bob@127.0.0.1:5062", "fz-r", "z9hG4bK-fzr", 1, "Route: <sip:127.0.0.1:5060;lr>\nRecord-Route: <sip:10.0.0.1;lr>\n"),
		strings.ReplaceAll("INVITE sip:bob@127.0.0.1:5062 SIP/2.0\nv: SIP/2.0/UDP [::1]:5061;BRANCH=z9hG4bK-c;rport;received=1.2.3.4\n"+
			"f: <sip:alice@127.0.0.1>;tag=a1\nt: <sip:bob@127.0.0.1>\ni: fz-c\ncseq: 1 INVITE\nmax-forwards: 1\nl: 3\n\nabc", "\n", "\r\n"),
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		a, tagA, lazyA, pA, leftA := lazyDiffRun(data, false)
		b, tagB, lazyB, pB, leftB := lazyDiffRun(data, true)
		if lazyB {
			t.Fatal("the materialising route ran lazily")
		}
		if pA != 0 || pB != 0 {
			t.Fatalf("panics: %d lazy, %d materialised (lazy path taken: %v)", pA, pB, lazyA)
		}
		if leftA != 0 || leftB != 0 {
			t.Fatalf("transactions left after all timers: %d lazy, %d materialised (lazy path taken: %v)", leftA, leftB, lazyA)
		}
		if d := lazyDiff(a, b, tagA, tagB); d != "" {
			t.Fatalf("lazy path taken: %v: %s", lazyA, d)
		}
	})
}

// addrURIParses accepts an address only when sipgo's address parser
// reads it (else the lazy path relayed a request the parsed path answers
// 400, and its spliced branch had no request for a 408: found by
// FuzzLazyDifferential, "From: A:"), and accepts the usual forms.
func TestLazyAddrURIParses(t *testing.T) {
	usual := []string{"<sip:alice@127.0.0.1>;tag=a1", "\"Alice\" <sip:alice@example.com>;tag=a2", "Bob <sips:bob@[::1]:5061;transport=tls>",
		"sip:alice@example.com;tag=a3", "<tel:+15551234>", "\"A \\\"q\\\" B\" <sip:a@b>", "*", "SIP:A@B"}
	odd := []string{"A:", "x", "<A:>", "\"x\" <A:>", "A:;tag=1", "<sip:a@b", "\"x <sip:a@b>", "\"x\";<sip:a@b>", "\"x\" sip:a@b",
		"<sip:a@b:xx>", "<sip:[::1>", "<ü:a>", "abc;tag=1", "<>", "\"\" <sip:a@b>", "\"\\\r\" <sip:a@b>", "<sip:a@b:99999999999999999999>", "A:>", "A:0"}
	for _, v := range append(usual, odd...) {
		var u sip.Uri
		var ps sip.HeaderParams
		_, err := sip.ParseAddressValue(v, &u, &ps)
		got := addrURIParses([]byte(v))
		if got && err != nil {
			t.Errorf("%q: accepted, sipgo: %v", v, err)
		}
		if got && err == nil {
			// What sipgo writes of it must read back the same.
			h := sip.FromHeader{DisplayName: "", Address: u, Params: ps}
			var u2 sip.Uri
			var ps2 sip.HeaderParams
			if _, err := sip.ParseAddressValue(h.Value(), &u2, &ps2); err != nil || u2.String() != u.String() {
				t.Errorf("%q: accepted, sipgo writes %q (%v)", v, h.Value(), err)
			}
		}
	}
	for _, v := range usual {
		require.True(t, addrURIParses([]byte(v)), v)
	}
}
