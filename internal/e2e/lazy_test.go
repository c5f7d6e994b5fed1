package e2e

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/asyncsip/asyncsip/async"
	"github.com/asyncsip/asyncsip/reactor"
	"github.com/asyncsip/asyncsip/tm"
)

// Lazy requests (tm/lazy.go, tm/splice.go): a request the route does not
// ask for as a sipgo request is relayed by splicing its bytes; one it asks
// for (Context.Req) is cloned and serialized. Both must reach the callee
// meaning the same.

// lazyTestProxy is a benchProxy whose Record-Route key is fixed, so two
// proxies sign the same dialog alike.
func lazyTestProxy(route func(c *tm.Context)) *benchProxy {
	clk := reactor.NewFakeClock(time.Unix(1_700_000_000, 0))
	g := reactor.NewManualGroup(1, clk)
	cfg := tm.Config{Security: tm.Security{RouteKey: []byte("lazy-test-route-key")}}
	srv := tm.NewServer(g.Loops(), cfg, tm.Routes{Request: route})
	tp := &benchTP{}
	srv.AddTransport(tp)
	return &benchProxy{loop: g.Loop(0), srv: srv, tp: tp}
}

// lazyInvites are INVITEs written in different ways the lazy path takes.
var lazyInvites = map[string]string{
	"plain": "INVITE sip:bob@127.0.0.1:5062 SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-lazy-1;rport\r\n" +
		"Max-Forwards: 70\r\nFrom: <sip:alice@127.0.0.1:5061>;tag=a1\r\nTo: <sip:bob@127.0.0.1:5062>\r\n" +
		"Call-ID: lazy-1\r\nCSeq: 1 INVITE\r\nContact: <sip:alice@127.0.0.1:5061>\r\n" +
		"Content-Type: application/sdp\r\nContent-Length: " + itoa(len(benchSDP)) + "\r\n\r\n" + benchSDP,
	"compact, received, no Max-Forwards, two Vias in one field": "INVITE sip:bob@127.0.0.1:5062;transport=udp SIP/2.0\r\n" +
		"v: SIP/2.0/UDP 192.0.2.7:5070;branch=z9hG4bK-lazy-2,SIP/2.0/UDP 192.0.2.9;branch=z9hG4bK-up\r\n" +
		"f: \"Alice\" <sip:alice@example.com>;tag=a2\r\nt: Bob <sip:bob@example.com>\r\n" +
		"i: lazy-2@example.com\r\nCSeq: 7 INVITE\r\nm: <sip:alice@192.0.2.7:5070>;expires=60\r\n" +
		"X-Custom:  kept as written \r\nl: 0\r\n\r\n",
	"received replaced, rport filled, Timestamp": "INVITE sip:+15551234@127.0.0.1:5062;user=phone SIP/2.0\r\n" +
		"Via: SIP/2.0/TCP 10.1.1.1:5080;received=10.9.9.9;rport;branch=z9hG4bK-lazy-3\r\n" +
		"Via: SIP/2.0/UDP 10.1.1.2:5060;branch=z9hG4bK-below\r\n" +
		"Max-Forwards: 12\r\nTimestamp: 54\r\nFrom: sip:alice@example.com;tag=a3\r\nTo: sip:+15551234@example.com\r\n" +
		"Call-ID: lazy-3\r\nCSeq: 3 INVITE\r\nSupported: timer, 100rel\r\nContent-Length: 0\r\n\r\n",
}

// semantic is what a callee reads of a request: the start line and, per
// header name, the values in order (sipgo's reading, the branch of the
// proxy's own Via left out: it is random per branch).
func semantic(t *testing.T, wire []byte) (start string, hdrs map[string][]string, body string) {
	t.Helper()
	msg, err := sip.NewParser().ParseSIP(append([]byte(nil), wire...))
	if err != nil {
		t.Fatalf("relayed request does not parse: %v\n%s", err, wire)
	}
	req, ok := msg.(*sip.Request)
	if !ok {
		t.Fatalf("relayed message is not a request:\n%s", wire)
	}
	hdrs = map[string][]string{}
	for i, h := range req.Headers() {
		v := h.Value()
		if i == 0 {
			via, ok := h.(*sip.ViaHeader)
			if !ok {
				t.Fatalf("first header is %s, want our Via:\n%s", h.Name(), wire)
			}
			c := via.Clone()
			br, _ := c.Params.Get("branch")
			if !strings.HasPrefix(br, "z9hG4bK") {
				t.Fatalf("our Via has branch %q", br)
			}
			c.Params.Remove("branch")
			v = c.Value()
		}
		name := strings.ToLower(h.Name())
		hdrs[name] = append(hdrs[name], v)
	}
	return string(req.Method) + " " + req.Recipient.String(), hdrs, string(req.Body())
}

func TestLazyRelayMatchesMaterialised(t *testing.T) {
	for name, inv := range lazyInvites {
		t.Run(name, func(t *testing.T) {
			lazyP := lazyTestProxy(relayRoute)
			matP := lazyTestProxy(func(c *tm.Context) {
				_ = c.Req()
				_ = c.Relay()
			})
			for _, p := range []*benchProxy{lazyP, matP} {
				p.receive([]byte(inv), benchUAC)
				if len(p.tp.inv) == 0 {
					t.Fatalf("the INVITE was not relayed")
				}
			}
			s1, h1, b1 := semantic(t, lazyP.tp.inv)
			s2, h2, b2 := semantic(t, matP.tp.inv)
			if s1 != s2 || b1 != b2 {
				t.Fatalf("start line or body differ:\nlazy:         %s\nmaterialised: %s", lazyP.tp.inv, matP.tp.inv)
			}
			if len(h1) != len(h2) {
				t.Errorf("header names differ: lazy %d, materialised %d", len(h1), len(h2))
			}
			for n, v2 := range h2 {
				v1 := h1[n]
				if strings.Join(v1, "\n") != strings.Join(v2, "\n") {
					t.Errorf("%s: lazy %q, materialised %q", n, v1, v2)
				}
			}
			if t.Failed() {
				t.Logf("lazy:\n%s\nmaterialised:\n%s", lazyP.tp.inv, matP.tp.inv)
			}
			// The lazy proxy relayed the bytes as written (compact names
			// stay compact), the other serialized a sipgo request.
			if strings.Contains(inv, "\r\ni: ") {
				if !bytes.Contains(lazyP.tp.inv, []byte("\r\ni: ")) {
					t.Errorf("lazy proxy did not splice:\n%s", lazyP.tp.inv)
				}
				if bytes.Contains(matP.tp.inv, []byte("\r\ni: ")) {
					t.Errorf("materialised proxy spliced:\n%s", matP.tp.inv)
				}
			}
		})
	}
}

// A whole call relayed lazily and materialised: the ACK and BYE too
// (loose-routed along the dialog's signed Route, the ACK statelessly)
// reach the callee meaning the same.
func TestLazyCallMatchesMaterialised(t *testing.T) {
	lazyP := lazyTestProxy(relayRoute)
	matP := lazyTestProxy(func(c *tm.Context) {
		_ = c.Req()
		_ = c.Relay()
	})
	var invs, acks, byes [2][]byte
	for i, p := range []*benchProxy{lazyP, matP} {
		if err := p.call(5, false); err != nil {
			t.Fatal(err)
		}
		invs[i] = append([]byte(nil), p.tp.inv...)
		acks[i] = append([]byte(nil), p.tp.ack...)
		byes[i] = append([]byte(nil), p.tp.bye...)
	}
	// The ACK goes on statelessly: its branch is derived from the
	// request (the same on both proxies but for how each reads the
	// Request-URI), the rest must match.
	for _, pair := range [][2][]byte{invs, acks, byes} {
		s1, h1, b1 := semantic(t, pair[0])
		s2, h2, b2 := semantic(t, pair[1])
		if s1 != s2 || b1 != b2 || len(h1) != len(h2) {
			t.Fatalf("differ:\nlazy:\n%s\nmaterialised:\n%s", pair[0], pair[1])
		}
		for n, v2 := range h2 {
			if strings.Join(h1[n], "\n") != strings.Join(v2, "\n") {
				t.Errorf("%s: lazy %q, materialised %q", n, h1[n], v2)
			}
		}
	}
}

// Context.Req after a suspension: the loop's index held other messages
// meanwhile; the request is materialised from the Context's own bytes,
// with the edits tm made before the route (received, rport).
func TestLazyReqAfterSuspension(t *testing.T) {
	type seen struct {
		callID, method, ruri, ruriLazy, received, rport string
	}
	got := map[string]seen{}
	p := lazyTestProxy(func(c *tm.Context) {
		ruri := c.Recipient() // read lazily, before the suspension
		async.Await(c, async.Sleep(time.Millisecond), func(_ struct{}, err error) {
			if err != nil {
				return
			}
			req := c.Req()
			via := req.Via()
			rcv, _ := via.Params.Get("received")
			rp, _ := via.Params.Get("rport")
			got[c.CallID()] = seen{string(*req.CallID()), string(req.Method), req.Recipient.String(), ruri.String(), rcv, rp}
			_ = c.Relay()
		})
	})
	p.receive([]byte(lazyInvites["received replaced, rport filled, Timestamp"]), benchUAC)
	p.receive([]byte(lazyInvites["plain"]), benchUAC)
	p.receive(p.invite(9), benchUAC) // the loop's index now holds a third INVITE
	p.loop.Advance(time.Millisecond)
	want := map[string]seen{
		"lazy-3":  {"lazy-3", "INVITE", "sip:+15551234@127.0.0.1:5062;user=phone", "sip:+15551234@127.0.0.1:5062;user=phone", "127.0.0.1", "5061"},
		"lazy-1":  {"lazy-1", "INVITE", "sip:bob@127.0.0.1:5062", "sip:bob@127.0.0.1:5062", "127.0.0.1", "5061"},
		"bench-9": {"bench-9", "INVITE", "sip:bob@127.0.0.1:5062", "sip:bob@127.0.0.1:5062", "127.0.0.1", "5061"},
	}
	for id, w := range want {
		if g := got[id]; g != w {
			t.Errorf("%s: got %+v, want %+v", id, g, w)
		}
	}
	if len(got) != len(want) {
		t.Errorf("routes resumed for %d calls, want %d", len(got), len(want))
	}
}

// A route that asks for the request and edits it relays the edit.
func TestLazyReqEditRelayed(t *testing.T) {
	p := lazyTestProxy(func(c *tm.Context) {
		if c.Method() != sip.INVITE || c.CallID() != "lazy-1" || c.Recipient().User != "bob" {
			_ = c.Reply(500, "Unexpected")
			return
		}
		req := c.Req()
		req.AppendHeader(sip.NewHeader("X-Edited", "yes"))
		req.Recipient.User = "carol"
		if c.Recipient().User != "carol" {
			_ = c.Reply(500, "Recipient does not follow Req")
			return
		}
		_ = c.Relay()
	})
	p.receive([]byte(lazyInvites["plain"]), benchUAC)
	start, hdrs, _ := semantic(t, p.tp.inv)
	if start != "INVITE sip:carol@127.0.0.1:5062" {
		t.Errorf("start line %q, want the edited Request-URI", start)
	}
	if v := hdrs["x-edited"]; len(v) != 1 || v[0] != "yes" {
		t.Errorf("X-Edited %q, want the route's header", v)
	}
}
