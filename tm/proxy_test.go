package tm

import (
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestInviteCallFlowWithRecordRoute(t *testing.T) {
	r := newRig(t, Config{}, Routes{Request: relayAll})
	r.recv(uacAddr, invite("call-1", "z9hG4bK-a1"))
	out := r.expect("127.0.0.1:5061 100", "127.0.0.1:5062 INVITE")
	fwd := out[1].msg.(*sip.Request)
	vias := fwd.GetHeaders("Via")
	require.Len(t, vias, 2)
	br, _ := fwd.Via().Params.Get("branch")
	assert.True(t, r.s.ours(br), "top Via is ours: %s", br)
	rrv := fwd.RecordRoute().Value()
	assert.Equal(t, "<sip:127.0.0.1:5060;lr;sig="+r.s.routeMAC("call-1", "a1", "")+">", rrv)
	assert.EqualValues(t, 69, *fwd.MaxForwards())

	r.recvMsg(uasAddr, respond(fwd, 180, "b1"))
	out = r.expect("127.0.0.1:5061 180")
	assert.Len(t, out[0].msg.GetHeaders("Via"), 1, "our Via stripped")

	ok := respond(fwd, 200, "b1")
	r.recvMsg(uasAddr, ok)
	r.expect("127.0.0.1:5061 200")
	// A 2xx retransmission after the client transaction ended is forwarded too.
	r.recvMsg(uasAddr, ok)
	r.expect("127.0.0.1:5061 200")

	// ACK and BYE come back through the Record-Route.
	rt := "Route: " + rrv + "\r\n" // the Record-Route, signed for this dialog
	ack := request("ACK", "sip:bob@127.0.0.1:5062", "call-1", "z9hG4bK-a2", 1, rt)
	ack = replaceTo(ack)
	r.recv(uacAddr, ack)
	out = r.expect("127.0.0.1:5062 ACK")
	assert.Nil(t, out[0].msg.(*sip.Request).Route(), "our Route removed")

	bye := replaceTo(request("BYE", "sip:bob@127.0.0.1:5062", "call-1", "z9hG4bK-a3", 2, rt))
	r.recv(uacAddr, bye)
	out = r.expect("127.0.0.1:5062 BYE")
	assert.Nil(t, out[0].msg.(*sip.Request).RecordRoute(), "no Record-Route in-dialog")
	r.recvMsg(uasAddr, respond(out[0].msg, 200, ""))
	r.expect("127.0.0.1:5061 200")

	// Everything ends: all timers run out and no transaction is left.
	r.advance(time.Minute)
	r.take()
	assert.Empty(t, r.s.loops[0].stx)
	assert.Empty(t, r.s.loops[0].ctx)
	st := r.s.Stats()
	assert.Equal(t, st.ServerTxCreated, st.ServerTxDone)
	assert.Equal(t, st.ClientTxCreated, st.ClientTxDone)
}

func replaceTo(raw string) string {
	return replaceOnce(raw, "To: <sip:bob@127.0.0.1>", "To: <sip:bob@127.0.0.1>;tag=b1")
}

func TestRetransmittedInviteAbsorbed(t *testing.T) {
	r := newRig(t, Config{}, Routes{Request: relayAll})
	inv := invite("call-2", "z9hG4bK-r1")
	r.recv(uacAddr, inv)
	r.expect("127.0.0.1:5061 100", "127.0.0.1:5062 INVITE")
	r.recv(uacAddr, inv)
	r.expect("127.0.0.1:5061 100") // last response re-sent, nothing forwarded
	assert.EqualValues(t, 1, r.s.Stats().RetransAbsorbed)
}

func TestTimerAandB(t *testing.T) {
	r := newRig(t, Config{}, Routes{Request: relayAll})
	r.recv(uacAddr, invite("call-3", "z9hG4bK-t1"))
	r.take()
	// Timer A: 0.5, 1, 2, 4, 8, 16 s (cumulative 0.5 1.5 3.5 7.5 15.5 31.5).
	for _, d := range []time.Duration{500, 1000, 2000, 4000, 8000, 16000} {
		r.advance(d * time.Millisecond)
		r.expect("127.0.0.1:5062 INVITE")
	}
	r.advance(500 * time.Millisecond) // Timer B = 64*T1 = 32 s
	r.expect("127.0.0.1:5061 408")
}

func TestTimerEandFForOptions(t *testing.T) {
	r := newRig(t, Config{}, Routes{Request: relayAll})
	r.recv(uacAddr, request("OPTIONS", "sip:bob@127.0.0.1:5062", "call-4", "z9hG4bK-o1", 1, ""))
	r.expect("127.0.0.1:5062 OPTIONS")
	var n int
	for i := 0; i < 40; i++ {
		r.advance(time.Second)
		for _, s := range r.take() {
			if short(s.msg) == "OPTIONS" {
				n++
			} else {
				assert.Equal(t, "408", short(s.msg))
				assert.GreaterOrEqual(t, i, 31)
				assert.Equal(t, 10, n, "Timer E retransmissions") // 0.5 1.5 3.5 7.5 11.5 ... capped at T2
				return
			}
		}
	}
	t.Fatal("no 408 after Timer F")
}

func TestTimerCCancelsThenTimesOut(t *testing.T) {
	r := newRig(t, Config{Timers: Timers{TimerC: 10 * time.Second}}, Routes{Request: relayAll})
	r.recv(uacAddr, invite("call-5", "z9hG4bK-c1"))
	out := r.expect("127.0.0.1:5061 100", "127.0.0.1:5062 INVITE")
	r.recvMsg(uasAddr, respond(out[1].msg, 180, "b1"))
	r.expect("127.0.0.1:5061 180")
	r.advance(10 * time.Second)
	out = r.expect("127.0.0.1:5062 CANCEL")
	cb, _ := out[0].msg.Via().Params.Get("branch")
	ib, _ := r.tp.out[1].msg.Via().Params.Get("branch")
	assert.Equal(t, ib, cb, "CANCEL uses the INVITE's branch")
	// The UAS ignores everything: the guard answers 408 upstream.
	var got []string
	for i := 0; i < 40; i++ {
		r.advance(time.Second)
		for _, s := range r.take() {
			got = append(got, short(s.msg))
		}
	}
	assert.Contains(t, got, "408")
}

func TestNonTwoXXFinalRetransmittedUntilAck(t *testing.T) {
	r := newRig(t, Config{}, Routes{Request: relayAll})
	r.recv(uacAddr, invite("call-6", "z9hG4bK-g1"))
	out := r.expect("127.0.0.1:5061 100", "127.0.0.1:5062 INVITE")
	r.recvMsg(uasAddr, respond(out[1].msg, 486, "b1"))
	r.expect("127.0.0.1:5062 ACK", "127.0.0.1:5061 486")
	r.advance(500 * time.Millisecond) // Timer G
	r.expect("127.0.0.1:5061 486")
	ack := replaceTo(request("ACK", "sip:bob@127.0.0.1:5062", "call-6", "z9hG4bK-g1", 1, ""))
	r.recv(uacAddr, ack)
	r.expect() // absorbed hop by hop
	r.advance(10 * time.Second)
	r.expect() // no more retransmissions
}

func TestCancelBeforeAnyResponse(t *testing.T) {
	r := newRig(t, Config{}, Routes{Request: relayAll})
	r.recv(uacAddr, invite("call-7", "z9hG4bK-x1"))
	out := r.expect("127.0.0.1:5061 100", "127.0.0.1:5062 INVITE")
	fwd := out[1].msg
	r.recv(uacAddr, request("CANCEL", "sip:bob@127.0.0.1:5062", "call-7", "z9hG4bK-x1", 1, ""))
	r.expect("127.0.0.1:5061 200") // no CANCEL before a provisional (RFC 3261 §9.1)
	r.recvMsg(uasAddr, respond(fwd, 180, "b1"))
	r.expect("127.0.0.1:5062 CANCEL", "127.0.0.1:5061 180")
	r.recvMsg(uasAddr, respond(fwd, 487, "b1"))
	r.expect("127.0.0.1:5062 ACK", "127.0.0.1:5061 487")
}

func TestCancelCrossingOK(t *testing.T) {
	r := newRig(t, Config{}, Routes{Request: relayAll})
	r.recv(uacAddr, invite("call-8", "z9hG4bK-y1"))
	out := r.expect("127.0.0.1:5061 100", "127.0.0.1:5062 INVITE")
	fwd := out[1].msg
	r.recvMsg(uasAddr, respond(fwd, 180, "b1"))
	r.expect("127.0.0.1:5061 180")
	r.recv(uacAddr, request("CANCEL", "sip:bob@127.0.0.1:5062", "call-8", "z9hG4bK-y1", 1, ""))
	r.expect("127.0.0.1:5061 200", "127.0.0.1:5062 CANCEL")
	r.recvMsg(uasAddr, respond(fwd, 200, "b1"))
	r.expect("127.0.0.1:5061 200") // the 2xx still goes upstream
}

func TestCancelUnknownGets481(t *testing.T) {
	r := newRig(t, Config{}, Routes{Request: relayAll})
	r.recv(uacAddr, request("CANCEL", "sip:bob@127.0.0.1:5062", "nope", "z9hG4bK-n1", 1, ""))
	r.expect("127.0.0.1:5061 481")
}

func TestFailureRouteSerialForking(t *testing.T) {
	r := newRig(t, Config{}, Routes{
		Request: relayAll,
		Failure: func(c *Context) {
			if c.Resp.StatusCode == 486 && len(c.Branches()) == 1 {
				require.NoError(t, c.Relay("sip:bob@127.0.0.1:5063"))
			}
		},
	})
	r.recv(uacAddr, invite("call-9", "z9hG4bK-f1"))
	out := r.expect("127.0.0.1:5061 100", "127.0.0.1:5062 INVITE")
	r.recvMsg(uasAddr, respond(out[1].msg, 486, "b1"))
	out = r.expect("127.0.0.1:5062 ACK", "127.0.0.1:5063 INVITE")
	assert.Equal(t, "sip:bob@127.0.0.1:5063", out[1].msg.(*sip.Request).Recipient.String())
	r.recvMsg(uas2Addr, respond(out[1].msg, 200, "b2"))
	r.expect("127.0.0.1:5061 200")
}

func TestParallelForkBestResponse(t *testing.T) {
	cases := []struct {
		name  string
		codes [2]int
		want  string
	}{
		{"6xx wins", [2]int{404, 603}, "603"},
		{"lowest class", [2]int{503, 486}, "486"},
		{"503 becomes 500", [2]int{503, 503}, "500"},
		{"challenge preferred", [2]int{404, 407}, "407"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, Config{}, Routes{Request: func(c *Context) {
				_ = c.Relay("sip:bob@127.0.0.1:5062", "sip:bob@127.0.0.1:5063")
			}})
			r.recv(uacAddr, invite("call-f", "z9hG4bK-p1"))
			out := r.expect("127.0.0.1:5061 100", "127.0.0.1:5062 INVITE", "127.0.0.1:5063 INVITE")
			r.recvMsg(uasAddr, respond(out[1].msg, tc.codes[0], "b1"))
			r.recvMsg(uas2Addr, respond(out[2].msg, tc.codes[1], "b2"))
			var finals []string
			for _, s := range r.take() {
				if s.to == uacAddr {
					finals = append(finals, short(s.msg))
				}
			}
			assert.Equal(t, []string{tc.want}, finals)
		})
	}
}

func TestAuthChallengesMerged(t *testing.T) {
	r := newRig(t, Config{}, Routes{Request: func(c *Context) {
		_ = c.Relay("sip:bob@127.0.0.1:5062", "sip:bob@127.0.0.1:5063")
	}})
	r.recv(uacAddr, invite("call-a", "z9hG4bK-au"))
	out := r.take()
	r1 := respond(out[1].msg, 401, "b1")
	r1.AppendHeader(sip.NewHeader("WWW-Authenticate", `Digest realm="a", nonce="1"`))
	r2 := respond(out[2].msg, 407, "b2")
	r2.AppendHeader(sip.NewHeader("Proxy-Authenticate", `Digest realm="b", nonce="2"`))
	r.recvMsg(uasAddr, r1)
	r.recvMsg(uas2Addr, r2)
	var final sip.Message
	for _, s := range r.take() {
		if s.to == uacAddr {
			final = s.msg
		}
	}
	require.NotNil(t, final)
	assert.Len(t, final.GetHeaders("WWW-Authenticate"), 1)
	assert.Len(t, final.GetHeaders("Proxy-Authenticate"), 1)
}

func TestAbandonedRouteAndPanic(t *testing.T) {
	r := newRig(t, Config{}, Routes{Request: func(c *Context) {
		if c.Method() == sip.MESSAGE {
			panic("boom")
		}
	}})
	r.recv(uacAddr, request("OPTIONS", "sip:bob@127.0.0.1:5062", "c-ab", "z9hG4bK-ab", 1, ""))
	r.expect("127.0.0.1:5061 500")
	r.recv(uacAddr, request("MESSAGE", "sip:bob@127.0.0.1:5062", "c-pa", "z9hG4bK-pa", 1, ""))
	r.expect("127.0.0.1:5061 500")
	st := r.s.Stats()
	assert.EqualValues(t, 1, st.Abandoned)
	assert.EqualValues(t, 1, st.Panics)
}

func TestMalformedInput(t *testing.T) {
	big := make([]byte, 70000)
	for i := range big {
		big[i] = 'a'
	}
	cases := []struct {
		name string
		raw  string
		want []string
	}{
		{"max-forwards zero", replaceOnce(invite("m1", "z9hG4bK-m1"), "Max-Forwards: 70", "Max-Forwards: 0"), []string{"127.0.0.1:5061 483"}},
		{"missing call-id", replaceOnce(invite("m2", "z9hG4bK-m2"), "Call-ID: m2\r\n", ""), nil},
		{"missing from", replaceOnce(invite("m3", "z9hG4bK-m3"), "From: <sip:alice@127.0.0.1>;tag=a1\r\n", ""), nil},
		// Over UDP, RFC 4475 §3.1.2.2 (clerr): answered 400.
		{"content-length too big", replaceOnce(invite("m4", "z9hG4bK-m4"), "Content-Length: 0", "Content-Length: 50"), []string{"127.0.0.1:5061 400"}},
		{"cseq method mismatch", replaceOnce(invite("m5", "z9hG4bK-m5"), "CSeq: 1 INVITE", "CSeq: 1 BYE"), []string{"127.0.0.1:5061 400"}},
		{"oversize", "INVITE sip:x@y SIP/2.0\r\n" + string(big) + "\r\n\r\n", nil},
		{"garbage", "hello world, this is not SIP\r\n\r\n", nil},
		{"response to nobody", "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKzz\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:b@c>\r\nCall-ID: r\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n", nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, Config{}, Routes{Request: relayAll})
			r.recv(uacAddr, tc.raw)
			r.expect(tc.want...)
			// The server keeps serving.
			r.recv(uacAddr, request("OPTIONS", "sip:bob@127.0.0.1:5062", "ok", "z9hG4bK-ok", 1, ""))
			r.expect("127.0.0.1:5062 OPTIONS")
		})
	}
}

func replaceOnce(s, old, new string) string {
	for i := 0; i+len(old) <= len(s); i++ {
		if s[i:i+len(old)] == old {
			return s[:i] + new + s[i+len(old):]
		}
	}
	panic("replaceOnce: not found: " + old)
}

// A provisional response overtaken by the 2xx (reordered between loops) is
// never relayed after the final; 2xx retransmissions still are.
func TestLateProvisionalAfterOKAbsorbed(t *testing.T) {
	r := newRig(t, Config{}, Routes{Request: relayAll})
	r.recv(uacAddr, invite("late-1", "z9hG4bK-late"))
	out := r.expect("127.0.0.1:5061 100", "127.0.0.1:5062 INVITE")
	ok := respond(out[1].msg, 200, "b1")
	r.recvMsg(uasAddr, ok)
	r.expect("127.0.0.1:5061 200")
	r.recvMsg(uasAddr, respond(out[1].msg, 180, "b1"))
	r.expect()
	r.recvMsg(uasAddr, ok)
	r.expect("127.0.0.1:5061 200")
	// After Timer M and Timer L, a stray 2xx is still forwarded by Via.
	r.advance(64 * 500 * time.Millisecond)
	r.take()
	r.recvMsg(uasAddr, ok)
	r.expect("127.0.0.1:5061 200")
}

func TestRelayAckToTargetAndNoSelfLoop(t *testing.T) {
	var errs []error
	r := newRig(t, Config{}, Routes{Request: func(c *Context) {
		errs = append(errs, c.Relay("sip:bob@127.0.0.1:5062"))
	}})
	// SIPp's ACK names the proxy itself in its Request-URI: with a target
	// it goes to the target, not round and round through the proxy.
	ack := replaceTo(request("ACK", "sip:bob@127.0.0.1:5060", "self-1", "z9hG4bK-self1", 1, r.signedRoute("self-1", "sip:127.0.0.1:5060;lr")))
	r.recv(uacAddr, ack)
	out := r.expect("127.0.0.1:5062 ACK")
	assert.Equal(t, "sip:bob@127.0.0.1:5062", out[0].msg.(*sip.Request).Recipient.String())

	// Without a target, an ACK whose next hop is the proxy is dropped.
	r2 := newRig(t, Config{Security: Security{RouteKey: []byte("a shared route key for tests")}},
		Routes{Request: func(c *Context) { errs = append(errs, c.Relay()) }})
	r2.recv(uacAddr, replaceTo(request("ACK", "sip:bob@127.0.0.1:5060", "self-1", "z9hG4bK-self1", 1, r2.signedRoute("self-1", "sip:127.0.0.1:5060;lr"))))
	r2.expect()
	assert.ErrorIs(t, errs[len(errs)-1], ErrLoop)
	assert.EqualValues(t, 1, r2.s.Stats().DropRoute)

	// A stateful relay to ourselves is refused (404, saying why), not
	// looped to 483.
	r2.recv(uacAddr, request("OPTIONS", "sip:bob@127.0.0.1:5060", "self-2", "z9hG4bK-self2", 1, ""))
	out = r2.expect("127.0.0.1:5061 404")
	assert.Equal(t, "Not Found (request addressed to this proxy, no Route)", out[0].msg.(*sip.Response).Reason)
	assert.ErrorIs(t, errs[len(errs)-1], ErrLoop)
}

func TestDrainRefusesNewButPassesInDialog(t *testing.T) {
	r := newRig(t, Config{}, Routes{Request: relayAll})
	r.s.Drain()
	r.recv(uacAddr, invite("dr-1", "z9hG4bK-dr1"))
	out := r.expect("127.0.0.1:5061 503")
	assert.NotEmpty(t, out[0].msg.GetHeaders("Retry-After"))
	bye := replaceTo(request("BYE", "sip:bob@127.0.0.1:5062", "dr-2", "z9hG4bK-dr2", 2, r.signedRoute("dr-2", "sip:127.0.0.1:5060;lr")))
	r.recv(uacAddr, bye)
	r.expect("127.0.0.1:5062 BYE")
}

func TestScanCallID(t *testing.T) {
	cases := []struct {
		raw  string
		want string
		ok   bool
	}{
		{invite("abc-1", "z9hG4bK-x"), "abc-1", true},
		{"INVITE sip:a@b SIP/2.0\r\ni:   compact@x  \r\n\r\n", "compact@x", true},
		{"INVITE sip:a@b SIP/2.0\r\ncall-id: lower\r\n\r\n", "lower", true},
		{"INVITE sip:a@b SIP/2.0\r\nVia: x\r\n\r\nCall-ID: in-body\r\n", "", false},
		{"garbage", "", false},
	}
	for _, tc := range cases {
		got, ok := scanCallID([]byte(tc.raw))
		assert.Equal(t, tc.ok, ok, tc.raw)
		assert.Equal(t, tc.want, got)
	}
}

// Two messages of one call, read by two loops, reach the owner in the
// order they were read.
func TestHandOffKeepsOrder(t *testing.T) {
	var seen []string
	r := newRigN(t, 2, Config{}, Routes{Request: func(c *Context) {
		seen = append(seen, string(c.Method()))
		_ = c.Reply(200, "")
	}})
	id := "order-1"
	owner := r.s.owner(id)
	other := r.s.loops[1-owner.loop.ID()]
	// The first message is read by the other loop and handed off; the
	// second is read by the owner itself before the hand-off has run.
	r.s.Receive(other.loop, []byte(request("MESSAGE", "sip:bob@127.0.0.1:5062", id, "z9hG4bK-o1", 1, "")), uacAddr, r.tp)
	r.s.Receive(owner.loop, []byte(request("INFO", "sip:bob@127.0.0.1:5062", id, "z9hG4bK-o2", 2, "")), uacAddr, r.tp)
	r.run()
	assert.Equal(t, []string{"MESSAGE", "INFO"}, seen)
}

// RFC 3261 §16.6 step 7: relaying to a strict router.
func TestRelayToStrictRouter(t *testing.T) {
	r := newRig(t, Config{}, Routes{Request: func(c *Context) { c.FollowRoute(); _ = c.Relay() }})
	raw := request("MESSAGE", "sip:bob@example.com", "strict-1", "z9hG4bK-st1", 1, "Route: <sip:127.0.0.1:5062>\n")
	r.recv(uacAddr, raw)
	out := r.expect("127.0.0.1:5062 MESSAGE")
	req := out[0].msg.(*sip.Request)
	assert.Equal(t, "sip:127.0.0.1:5062", req.Recipient.String())
	routes := req.GetHeaders("Route")
	require.Len(t, routes, 1)
	assert.Contains(t, routes[0].Value(), "sip:bob@example.com")
}
