package siptest_test

import (
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/asyncsip/asyncsip/siptest"
	"github.com/asyncsip/asyncsip/tm"
)

// relayTo relays new requests to target and in-dialog ones by their route.
func relayTo(target string) func(c *tm.Context) {
	return func(c *tm.Context) {
		if c.InDialog() || c.LooseRouted() {
			_ = c.Relay()
			return
		}
		_ = c.Relay(target)
	}
}

func TestReplyFromRoute(t *testing.T) {
	t.Parallel()
	h := siptest.NewHarness(t, func(c *tm.Context) {
		c.Set("seen", c.Recipient().User)
		_ = c.Reply(404, "", sip.NewHeader("X-Reason", "no route"))
	})
	res := h.Send(siptest.NewRequest("INVITE", "sip:+15551234@example.com"))
	siptest.AssertReplied(t, res, 404)
	siptest.AssertReplies(t, res, []int{404}, "a route that replies at once gets no 100 Trying")
	assert.Equal(t, 404, res.LastReply().StatusCode)
	final := res.Final()
	require.NotNil(t, final)
	assert.Equal(t, "Not Found", final.Reason)
	assert.Equal(t, siptest.DefaultUAC, final.Addr.String(), "sent back to the source (rport)")
	siptest.AssertHeader(t, final, "X-Reason", "no route")
	assert.True(t, final.To().Params.Has("tag"))
	assert.Same(t, final, res.LastReply())
	siptest.AssertNotRelayed(t, res)
	v, _ := tm.Value[string](res.Context(), "seen")
	assert.Equal(t, "+15551234", v, "the route's context is there to inspect")
	assert.Contains(t, res.String(), "SIP/2.0 404 Not Found", "the exchange has the messages")
}

func TestTypedRoutesAndAbandon(t *testing.T) {
	t.Parallel()
	h := siptest.NewHarness(t, tm.Routes{Request: func(c *tm.Context) {}})
	res := h.Send(siptest.NewRequest("OPTIONS", "sip:bob@example.com"))
	siptest.AssertReplied(t, res, 500, "a route that does nothing gets the abandon code")

	h2 := siptest.NewHarness(t, tm.Routes{}, siptest.WithConfig(tm.Config{AbandonCode: 503}))
	siptest.AssertReplied(t, h2.Send(siptest.NewRequest("OPTIONS", "sip:bob@example.com")), 503)
}

func TestRelayRecordsForwardedRequest(t *testing.T) {
	t.Parallel()
	h := siptest.NewHarness(t, relayTo("sip:bob@10.0.0.2"))
	inv := siptest.NewRequest("INVITE", "sip:bob@example.com")
	res := h.Send(inv)
	siptest.AssertReplies(t, res, []int{100})
	siptest.AssertRelayedTo(t, res, "sip:bob@10.0.0.2")
	siptest.AssertRelayedTo(t, res, "10.0.0.2:5060")
	require.Len(t, res.Relayed(), 1)
	assert.Empty(t, res.Forwarded())
	br := res.Branch(0)
	assert.False(t, br.Stateless)
	assert.Equal(t, "sip:bob@10.0.0.2", br.Target())
	assert.Equal(t, "10.0.0.2:5060", br.Addr.String())
	vias := br.GetHeaders("Via")
	require.Len(t, vias, 2, "our Via on top of the caller's")
	assert.Equal(t, "127.0.0.1", br.Via().Host)
	assert.Equal(t, 5060, br.Via().Port)
	assert.Equal(t, "69", hdr(br, "Max-Forwards"))
	assert.Regexp(t, `^<sip:127\.0\.0\.1:5060;lr;sig=[0-9a-f]{16}>$`, hdr(br, "Record-Route"), "signed for the dialog")
	assert.Same(t, res, br.Result())
	assert.False(t, res.Suspended())

	res.Branch(0).Respond(180)
	res.Branch(0).Respond(200, siptest.WithBody("application/sdp", "v=0\r\n"))
	siptest.AssertReplies(t, res, []int{100, 180, 200})
	ok := res.LastReply()
	assert.Len(t, ok.GetHeaders("Via"), 1, "our Via is removed upstream")
	assert.Equal(t, "v=0\r\n", string(ok.Body()))
	assert.Equal(t, "sip:10.0.0.2:5060", ok.Contact().Address.String())
	assert.Len(t, br.Responses(), 2)
	tag180, _ := res.Replies()[1].To().Params.Get("tag")
	tag200, _ := ok.To().Params.Get("tag")
	assert.Equal(t, tag180, tag200, "one branch, one To tag")

	// The caller ACKs and hangs up through the proxy (Record-Route).
	d := siptest.NewDialog(inv, ok.Response)
	ack := h.Send(d.Ack())
	siptest.AssertForwardedTo(t, ack, "sip:10.0.0.2:5060")
	assert.True(t, ack.Forwarded()[0].Stateless)
	assert.Nil(t, ack.Forwarded()[0].GetHeader("Route"), "our Route is consumed")
	bye := h.Send(d.Bye())
	siptest.AssertRelayedTo(t, bye, "sip:10.0.0.2:5060")
	bye.Branch(0).Respond(200)
	siptest.AssertReplied(t, bye, 200)
}

func TestStatelessForward(t *testing.T) {
	t.Parallel()
	h := siptest.NewHarness(t, func(c *tm.Context) {
		require.NoError(t, c.SetDestination("10.0.0.3:5080"))
		require.NoError(t, c.Forward())
	})
	res := h.Send(siptest.NewRequest("MESSAGE", "sip:bob@example.com", siptest.WithBody("text/plain", "hi")))
	siptest.AssertForwardedTo(t, res, "10.0.0.3:5080")
	siptest.AssertForwardedTo(t, res, "sip:bob@example.com")
	assert.Empty(t, res.Relayed())
	fw := res.Forwarded()[0]
	assert.True(t, fw.Stateless)
	assert.Equal(t, "69", hdr(fw, "Max-Forwards"))
	fw.Respond(202)
	siptest.AssertReplied(t, res, 202, "a response to a stateless forward is routed by Via")
}

func TestDropAndRetransmission(t *testing.T) {
	t.Parallel()
	h := siptest.NewHarness(t, func(c *tm.Context) { c.Drop() })
	req := siptest.NewRequest("MESSAGE", "sip:bob@example.com")
	res := h.Send(req)
	siptest.AssertDropped(t, res)
	assert.Same(t, res, h.Send(req), "a retransmission is the same transaction")
	siptest.AssertDropped(t, res)

	h2 := siptest.NewHarness(t, func(c *tm.Context) { _ = c.Reply(486, "") })
	inv := siptest.NewRequest("INVITE", "sip:bob@example.com")
	res2 := h2.Send(inv)
	h2.Send(inv)
	siptest.AssertRepliesOnWire(t, res2, []int{486, 486}, "the final response is retransmitted")
	siptest.AssertReplies(t, res2, []int{486}, "one distinct reply (no 100 Trying: the route replied at once)")
	h2.Send(siptest.NewAck(inv, res2.Final().Response))
	h2.Clock.Advance(time.Minute)
	siptest.AssertRepliesOnWire(t, res2, []int{486, 486}, "the ACK stopped the retransmissions")
}

func TestFailureRouteSerialForking(t *testing.T) {
	t.Parallel()
	h := siptest.NewHarness(t, tm.Routes{
		Request: relayTo("sip:bob@10.0.0.2"),
		Failure: func(c *tm.Context) {
			if c.Resp.StatusCode == 486 && len(c.Branches()) == 1 {
				_ = c.Relay("sip:bob@10.0.0.3")
			}
		},
	})
	res := h.Send(siptest.NewRequest("INVITE", "sip:bob@example.com"))
	res.Branch(0).Respond(486)
	require.Len(t, res.Branch(0).Acks(), 1, "tm ACKs the 486 hop by hop")
	siptest.AssertRelayedTo(t, res, "sip:bob@10.0.0.3")
	siptest.AssertReplies(t, res, []int{100}, "the 486 is not relayed upstream")
	res.Branch(1).Respond(603)
	siptest.AssertReplied(t, res, 603)
}

func TestParallelForkingAndCancel(t *testing.T) {
	t.Parallel()
	h := siptest.NewHarness(t, func(c *tm.Context) { _ = c.Relay("sip:a@10.0.0.2", "sip:b@10.0.0.3") })
	inv := siptest.NewRequest("INVITE", "sip:bob@example.com")
	res := h.Send(inv)
	require.Len(t, res.Relayed(), 2)
	res.Branch(0).Respond(180)
	res.Branch(1).Respond(180)
	res.Branch(1).Respond(200)
	siptest.AssertReplies(t, res, []int{100, 180, 180, 200})
	assert.True(t, res.Branch(0).Cancelled(), "the 200 cancels the other branch")
	assert.False(t, res.Branch(1).Cancelled())
	require.Len(t, res.Branch(0).Cancels(), 1)
	assert.Equal(t, sip.CANCEL, res.Branch(0).Cancels()[0].Method)

	// The caller cancels a ringing call: 200 to the CANCEL, CANCEL
	// downstream, 487 upstream once the callee answers it.
	h2 := siptest.NewHarness(t, relayTo("sip:bob@10.0.0.2"))
	inv2 := siptest.NewRequest("INVITE", "sip:bob@example.com")
	res2 := h2.Send(inv2)
	res2.Branch(0).Respond(180)
	can := h2.Send(siptest.NewCancel(inv2))
	siptest.AssertReplied(t, can, 200)
	assert.True(t, res2.Branch(0).Cancelled())
	res2.Branch(0).Respond(487)
	siptest.AssertReplies(t, res2, []int{100, 180, 487})
	assert.True(t, res2.Context().Cancelled())
}

func TestReplyRoute(t *testing.T) {
	t.Parallel()
	var seen []int
	h := siptest.NewHarness(t, tm.Routes{
		Request: relayTo("sip:bob@10.0.0.2"),
		Reply: func(c *tm.Context) {
			seen = append(seen, c.Resp.StatusCode)
			if c.Resp.StatusCode == 183 {
				c.Drop()
			}
		},
	})
	res := h.Send(siptest.NewRequest("INVITE", "sip:bob@example.com"))
	res.Branch(0).Respond(183)
	res.Branch(0).Respond(180)
	res.Branch(0).Respond(200)
	assert.Equal(t, []int{183, 180, 200}, seen)
	siptest.AssertReplies(t, res, []int{100, 180, 200}, "the dropped 183 never went upstream")
}

func TestClockDrivesTransactionTimers(t *testing.T) {
	t.Parallel()
	h := siptest.NewHarness(t, relayTo("sip:bob@10.0.0.2"))
	start := h.Clock.Now()
	res := h.Send(siptest.NewRequest("INVITE", "sip:bob@example.com"))
	h.Clock.Advance(1500 * time.Millisecond) // Timer A: 0.5 s, then 1 s
	assert.Equal(t, 2, res.Branch(0).Retransmissions())
	assert.Contains(t, res.String(), "(retransmission)")
	h.Clock.Advance(32 * time.Second) // Timer B: 64*T1
	siptest.AssertReplied(t, res, 408, "no answer downstream: 408 upstream")
	assert.Equal(t, 33500*time.Millisecond, h.Clock.Now().Sub(start))
}

func TestUnreachableNextHop(t *testing.T) {
	t.Parallel()
	h := siptest.NewHarness(t, tm.Routes{
		Request: relayTo("sip:bob@10.0.0.2"),
		Failure: func(c *tm.Context) {
			if len(c.Branches()) == 1 {
				_ = c.Relay("sip:bob@10.0.0.3")
			}
		},
	})
	h.Unreachable("10.0.0.2:5060")
	res := h.Send(siptest.NewRequest("INVITE", "sip:bob@example.com"))
	siptest.AssertRelayedTo(t, res, "10.0.0.3:5060", "the failure route tried the next gateway")
	assert.Len(t, res.Relayed(), 1, "the failed send is in the exchange only")
	assert.Contains(t, res.String(), "send failed: unreachable")
}

func TestPanicInRouteIs500(t *testing.T) {
	t.Parallel()
	h := siptest.NewHarness(t, func(c *tm.Context) { panic("route bug") })
	siptest.AssertReplied(t, h.Send(siptest.NewRequest("OPTIONS", "sip:bob@example.com")), 500)
	assert.EqualValues(t, 1, h.Server.Stats().Panics)
}

func TestIPv6Caller(t *testing.T) {
	t.Parallel()
	h := siptest.NewHarness(t, relayTo("sip:bob@[::1]:5070"))
	res := h.Send(siptest.NewRequest("INVITE", "sip:bob@example.com", siptest.WithSource("[::1]:5099")))
	siptest.AssertRelayedTo(t, res, "[::1]:5070")
	assert.Equal(t, "[::1]:5099", res.LastReply().Addr.String())
}

func TestHarnessOptions(t *testing.T) {
	t.Parallel()
	h := siptest.NewHarness(t, relayTo("sip:bob@10.0.0.2"), siptest.WithProxyAddr("10.0.0.1:5070"))
	raw := sip.NewRequest(sip.OPTIONS, sip.Uri{Scheme: "sip", User: "bob", Host: "example.com"})
	raw.AppendHeader(&sip.ViaHeader{ProtocolName: "SIP", ProtocolVersion: "2.0", Transport: "UDP", Host: "10.0.0.9",
		Port: 5000, Params: sip.HeaderParams{{K: "branch", V: "z9hG4bK-raw"}}})
	raw.AppendHeader(&sip.FromHeader{Address: sip.Uri{Scheme: "sip", User: "a", Host: "x"}, Params: sip.HeaderParams{{K: "tag", V: "1"}}})
	raw.AppendHeader(&sip.ToHeader{Address: sip.Uri{Scheme: "sip", User: "bob", Host: "example.com"}})
	id := sip.CallIDHeader("raw-1")
	raw.AppendHeader(&id)
	raw.AppendHeader(&sip.CSeqHeader{SeqNo: 1, MethodName: sip.OPTIONS})
	raw.SetBody(nil)
	raw.SetSource("10.0.0.9:5000")
	res := h.Send(raw) // built by hand: it comes from its own source
	require.Len(t, res.Relayed(), 1)
	assert.Equal(t, "10.0.0.1", res.Branch(0).Via().Host)
	assert.Equal(t, 5070, res.Branch(0).Via().Port)
	res.Branch(0).Respond(200)
	assert.Equal(t, "10.0.0.9:5000", res.LastReply().Addr.String())

	rt := &recordingT{TB: t}
	assert.True(t, catch(func() { siptest.NewHarness(rt, relayAll, siptest.WithProxyAddr("[::1]:5060")) }))
	assert.Contains(t, rt.failures(), "want an IPv4")
	h2 := siptest.NewHarness(rt, relayAll)
	assert.True(t, catch(func() { h2.Unreachable("10.0.0.1") }))
}

func relayAll(c *tm.Context) { _ = c.Relay() }

func TestAccessorsFailWithTheExchange(t *testing.T) {
	t.Parallel()
	rt := &recordingT{TB: t}
	h := siptest.NewHarness(rt, func(c *tm.Context) { _ = c.Reply(403, "") })
	res := h.Send(siptest.NewRequest("OPTIONS", "sip:bob@example.com"))
	assert.True(t, catch(func() { res.Branch(0) }))
	assert.True(t, catch(func() { res.Await(0) }))
	assert.Contains(t, rt.failures(), "no relayed branch 0 (0 relayed)")
	assert.Contains(t, rt.failures(), "no await 0 (0 awaited)")
	assert.Contains(t, rt.failures(), "SIP/2.0 403 Forbidden", "with the messages")
	assert.Empty(t, h.Stray())
}

// A request sent with Harness.InDialog comes along the proxy's signed
// Record-Route: the route sees it in-dialog and relays it. Without it,
// tm refuses it before any route runs.
func TestInDialog(t *testing.T) {
	t.Parallel()
	inDialogOnly := func(c *tm.Context) {
		if c.InDialog() {
			_ = c.Relay()
			return
		}
		_ = c.Reply(488, "Not in dialog")
	}
	for _, tc := range []struct {
		name string
		opts []siptest.HarnessOption
		src  string
	}{
		{"random key", nil, siptest.DefaultUAC},
		{"configured key", []siptest.HarnessOption{siptest.WithConfig(tm.Config{
			Security: tm.Security{RouteKey: []byte("0123456789abcdef0123")}})}, siptest.DefaultUAC},
		{"other proxy address", []siptest.HarnessOption{siptest.WithProxyAddr("10.0.0.1:5070")}, siptest.DefaultUAC},
		{"IPv6 caller", nil, "[::1]:5099"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := siptest.NewHarness(t, inDialogOnly, tc.opts...)
			bye := h.Send(h.InDialog(siptest.NewBye("sip:bob@10.0.0.2:5060", siptest.WithSource(tc.src))))
			siptest.AssertRelayedTo(t, bye, "sip:bob@10.0.0.2:5060")
			assert.True(t, bye.Context().InDialog())
			assert.Nil(t, bye.Branch(0).GetHeader("Route"), "our Route is consumed")
			bye.Branch(0).Respond(200)
			siptest.AssertReplies(t, bye, []int{200}, "no 100 Trying for a non-INVITE")

			ack := h.Send(h.InDialog(siptest.NewRequest("ACK", "sip:bob@10.0.0.2:5060", siptest.WithToTag("b1"),
				siptest.WithSource(tc.src))))
			siptest.AssertForwardedTo(t, ack, "sip:bob@10.0.0.2:5060")
		})
	}

	h := siptest.NewHarness(t, inDialogOnly)
	unsigned := h.Send(siptest.NewBye("sip:bob@10.0.0.2:5060", siptest.WithRoute("sip:"+siptest.DefaultProxy+";lr")))
	siptest.AssertReplied(t, unsigned, 403, "an in-dialog request without our signed Route")
	siptest.AssertNotRelayed(t, unsigned)
	assert.Nil(t, unsigned.Context(), "refused before the route ran")

	// Signed for another dialog: refused too.
	other := h.InDialog(siptest.NewBye("sip:bob@10.0.0.2:5060", siptest.WithCallID("call-a")))
	moved := siptest.NewBye("sip:bob@10.0.0.2:5060", siptest.WithCallID("call-b"),
		siptest.WithRoute(other.Route().Value()))
	siptest.AssertReplied(t, h.Send(moved), 403, "a signature is bound to its dialog")

	ack := h.Send(siptest.NewRequest("ACK", "sip:bob@10.0.0.2:5060", siptest.WithToTag("b1")))
	assert.Empty(t, ack.Forwarded(), "an unsigned ACK is dropped")
	assert.Empty(t, ack.Replies())
	assert.EqualValues(t, 3, h.Server.Stats().DropUnsigned)

	rt := &recordingT{TB: t}
	h2 := siptest.NewHarness(rt, inDialogOnly)
	noTag := siptest.NewBye("sip:bob@10.0.0.2:5060")
	noTag.From().Params.Remove("tag")
	assert.True(t, catch(func() { h2.InDialog(noTag) }))
	assert.Contains(t, rt.failures(), "no Call-ID or no From tag")
}

// The Route InDialog adds is the Record-Route the proxy itself put on a
// call of the same dialog (Call-ID and From tag), signature included: the
// value facing the caller, for an IPv4 and an IPv6 caller (whose call gets
// two values, RFC 5658), and the first of the route set NewDialog takes
// from the 200.
func TestInDialogMatchesRecordRoute(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ proxy, src string }{
		{siptest.DefaultProxy, siptest.DefaultUAC},
		{"10.0.0.1:5070", siptest.DefaultUAC},
		{siptest.DefaultProxy, "[::1]:5099"},
	} {
		h := siptest.NewHarness(t, relayTo("sip:bob@10.0.0.2"), siptest.WithProxyAddr(tc.proxy))
		inv := siptest.NewRequest("INVITE", "sip:bob@example.com", siptest.WithCallID("rr-1"), siptest.WithFromTag("f1"),
			siptest.WithSource(tc.src))
		res := h.Send(inv)
		rr := res.Branch(0).GetHeaders("Record-Route")
		require.NotEmpty(t, rr)
		facingCaller := rr[len(rr)-1].Value()
		bye := h.InDialog(siptest.NewBye("sip:bob@10.0.0.2:5060", siptest.WithCallID("rr-1"), siptest.WithFromTag("f1"),
			siptest.WithSource(tc.src)))
		assert.Equal(t, facingCaller, bye.Route().Value(), "proxy %s, caller %s", tc.proxy, tc.src)

		res.Branch(0).Respond(200, siptest.WithToTag("b1"))
		d := siptest.NewDialog(inv, res.LastReply().Response)
		require.Len(t, d.Routes(), len(rr))
		assert.Equal(t, bye.Route().Value(), d.Routes()[0], "proxy %s, caller %s", tc.proxy, tc.src)
	}
}
