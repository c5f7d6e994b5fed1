package tm

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Trust boundaries of the core (issue 18): each test shows the attack
// failing and the legitimate exchange next to it still working.

var (
	attackerAddr = netip.MustParseAddrPort("127.0.0.9:5099")
	thirdAddr    = netip.MustParseAddrPort("127.0.0.3:5060")
)

// dialogRequest is a request of the dialog set up by invite(callID): from
// the caller (From tag a1, To tag b1) or, reversed, from the callee.
func dialogRequest(method, ruri, callID, branch string, cseq int, fromCallee bool, routes string) string {
	raw := request(method, ruri, callID, branch, cseq, routes)
	if !fromCallee {
		return replaceTo(raw)
	}
	raw = replaceOnce(raw, "From: <sip:alice@127.0.0.1>;tag=a1", "From: <sip:bob@127.0.0.1>;tag=b1")
	raw = replaceOnce(raw, "To: <sip:bob@127.0.0.1>", "To: <sip:alice@127.0.0.1>;tag=a1")
	return replaceOnce(raw, "Via: SIP/2.0/UDP 127.0.0.1:5061", "Via: SIP/2.0/UDP 127.0.0.1:5062")
}

// routeLines turns Record-Route values into Route lines, in order or reversed.
func routeLines(rr []sip.Header, reverse bool) string {
	var b strings.Builder
	for i := range rr {
		h := rr[i]
		if reverse {
			h = rr[len(rr)-1-i]
		}
		b.WriteString("Route: " + h.Value() + "\n")
	}
	return b.String()
}

// setUpCall relays an INVITE, answers it 200 from the callee and returns
// the INVITE as relayed (with our signed Record-Route).
func setUpCall(t *testing.T, r *rig, callID string) *sip.Request {
	r.recv(uacAddr, invite(callID, "z9hG4bK-"+callID))
	out := r.expect("127.0.0.1:5061 100", "127.0.0.1:5062 INVITE")
	fwd := out[1].msg.(*sip.Request)
	r.recvMsg(uasAddr, respond(fwd, 200, "b1"))
	r.expect("127.0.0.1:5061 200")
	return fwd
}

// Row 2 (core): in-dialog requests are routed only along our signed
// Record-Route — re-INVITE, UPDATE, BYE and ACK, from either side.
func TestSignedRecordRouteBothDirections(t *testing.T) {
	r := newRig(t, Config{}, Routes{Request: relayAll})
	fwd := setUpCall(t, r, "sec-d1")
	rr := fwd.GetHeaders("Record-Route")
	require.Len(t, rr, 1)
	assert.Contains(t, rr[0].Value(), ";sig=")
	fromCaller := routeLines(rr, true)
	fromCallee := routeLines(rr, false)

	r.recv(uacAddr, dialogRequest("ACK", "sip:bob@127.0.0.1:5062", "sec-d1", "z9hG4bK-d1a", 1, false, fromCaller))
	r.expect("127.0.0.1:5062 ACK")
	r.recv(uacAddr, dialogRequest("INVITE", "sip:bob@127.0.0.1:5062", "sec-d1", "z9hG4bK-d1b", 2, false, fromCaller))
	out := r.expect("127.0.0.1:5061 100", "127.0.0.1:5062 INVITE")
	assert.Nil(t, out[1].msg.(*sip.Request).RecordRoute(), "no Record-Route in-dialog")
	r.recvMsg(uasAddr, respond(out[1].msg, 200, ""))
	r.expect("127.0.0.1:5061 200")

	r.recv(uasAddr, dialogRequest("UPDATE", "sip:alice@127.0.0.1:5061", "sec-d1", "z9hG4bK-d1c", 1, true, fromCallee))
	out = r.expect("127.0.0.1:5061 UPDATE")
	r.recvMsg(uacAddr, respond(out[0].msg, 200, ""))
	r.expect("127.0.0.1:5062 200")

	r.recv(uasAddr, dialogRequest("BYE", "sip:alice@127.0.0.1:5061", "sec-d1", "z9hG4bK-d1d", 2, true, fromCallee))
	out = r.expect("127.0.0.1:5061 BYE")
	r.recvMsg(uacAddr, respond(out[0].msg, 200, ""))
	r.expect("127.0.0.1:5062 200")
	assert.Zero(t, r.s.Stats().DropUnsigned)
}

// Row 2 (core): a request with a To tag and no signed Route of ours — none
// at all, a Route naming us without or with a wrong signature, or one
// copied from another dialog — is refused 403 (an ACK dropped), whatever
// Request-URI it names; the route never runs.
func TestUnsignedInDialogRefused(t *testing.T) {
	ran := 0
	r := newRig(t, Config{}, Routes{Request: func(c *Context) { ran++; _ = c.Relay() }})
	fwd := setUpCall(t, r, "sec-u1")
	ran = 0
	other := routeLines(fwd.GetHeaders("Record-Route"), true) // signed for sec-u1
	cases := map[string]string{
		"no route":      "",
		"unsigned":      "Route: <sip:127.0.0.1:5060;lr>\n",
		"bad signature": "Route: <sip:127.0.0.1:5060;lr;sig=0123456789abcdef>\n",
		"other dialog":  other,
	}
	i := 0
	for name, routes := range cases {
		i++
		r.recv(attackerAddr, dialogRequest("BYE", "sip:victim@127.0.0.3:5060", "sec-u2", fmt.Sprint("z9hG4bK-u", i), 2, false, routes))
		out := r.expect("127.0.0.9:5061 403") // source address, Via port
		assert.Contains(t, out[0].msg.(*sip.Response).Reason, "not signed", name)
		r.recv(attackerAddr, dialogRequest("ACK", "sip:victim@127.0.0.3:5060", "sec-u2", fmt.Sprint("z9hG4bK-ua", i), 1, false, routes))
		r.expect()
	}
	assert.Zero(t, ran, "the route never ran")
	assert.EqualValues(t, 8, r.s.Stats().DropUnsigned)

	// The legitimate dialog next to it still works.
	r.recv(uacAddr, dialogRequest("BYE", "sip:bob@127.0.0.1:5062", "sec-u1", "z9hG4bK-u9", 2, false, other))
	r.expect("127.0.0.1:5062 BYE")
}

// With AllowUnsignedInDialog the route decides: InDialog is false for an
// unsigned request and true for a signed one; a sender-chosen Route is
// still not followed without FollowRoute.
func TestAllowUnsignedInDialogLetsRouteDecide(t *testing.T) {
	var seen []bool
	r := newRig(t, Config{Security: Security{AllowUnsignedInDialog: true}}, Routes{Request: func(c *Context) {
		seen = append(seen, c.InDialog())
		if c.InDialog() {
			_ = c.Relay()
			return
		}
		_ = c.Reply(404, "")
	}})
	r.recv(uacAddr, dialogRequest("BYE", "sip:bob@127.0.0.1:5062", "sec-a1", "z9hG4bK-a1", 2, false, ""))
	r.expect("127.0.0.1:5061 404")
	r.recv(uacAddr, dialogRequest("BYE", "sip:bob@127.0.0.1:5062", "sec-a2", "z9hG4bK-a2", 2, false,
		r.signedRoute("sec-a2", "sip:127.0.0.1:5060;lr")))
	r.expect("127.0.0.1:5062 BYE")
	assert.Equal(t, []bool{false, true}, seen)
}

// A restart with the same RouteKey keeps routing the dialogs set up
// before it; a restart with another key (or a random one) refuses them.
func TestRouteKeySurvivesRestart(t *testing.T) {
	key := []byte("0123456789abcdef0123456789abcdef")
	r1 := newRig(t, Config{Security: Security{RouteKey: key}}, Routes{Request: relayAll})
	routes := routeLines(setUpCall(t, r1, "sec-k1").GetHeaders("Record-Route"), true)

	r2 := newRig(t, Config{Security: Security{RouteKey: key}}, Routes{Request: relayAll})
	r2.recv(uacAddr, dialogRequest("BYE", "sip:bob@127.0.0.1:5062", "sec-k1", "z9hG4bK-k2", 2, false, routes))
	r2.expect("127.0.0.1:5062 BYE")

	r3 := newRig(t, Config{}, Routes{Request: relayAll})
	r3.recv(uacAddr, dialogRequest("BYE", "sip:bob@127.0.0.1:5062", "sec-k1", "z9hG4bK-k3", 2, false, routes))
	r3.expect("127.0.0.1:5061 403")
}

// Row 10: a caller-supplied Route on an initial request does not override
// the route's choice of target: refused 403 unless the route calls
// FollowRoute. A preloaded Route naming us is removed as before.
func TestCallerRouteOnInitialRequest(t *testing.T) {
	follow := false
	var err error
	r := newRig(t, Config{}, Routes{Request: func(c *Context) {
		if follow {
			c.FollowRoute()
		}
		err = c.Relay("sip:bob@127.0.0.1:5062")
	}})
	elsewhere := "Route: <sip:127.0.0.3:5060;lr>\n"
	r.recv(uacAddr, request("INVITE", "sip:bob@example.com", "sec-r1", "z9hG4bK-r1", 1, elsewhere))
	r.expect("127.0.0.1:5061 403")
	assert.ErrorIs(t, err, ErrRouteNotAllowed)
	assert.EqualValues(t, 1, r.s.Stats().DropRouteSet)

	// Preloaded Route to this proxy (outbound proxy): popped, target kept.
	r.recv(uacAddr, request("INVITE", "sip:bob@example.com", "sec-r2", "z9hG4bK-r2", 1, "Route: <sip:127.0.0.1:5060;lr>\n"))
	out := r.expect("127.0.0.1:5061 100", "127.0.0.1:5062 INVITE")
	assert.Nil(t, out[1].msg.(*sip.Request).Route())

	// The route allows it explicitly: the Route is followed.
	follow = true
	r.recv(uacAddr, request("INVITE", "sip:bob@example.com", "sec-r3", "z9hG4bK-r3", 1, elsewhere))
	r.expect("127.0.0.1:5061 100", "127.0.0.3:5060 INVITE")
	require.NoError(t, err)
}

// Row 13: 100 Trying goes out only when the route relays or suspends; a
// dropped INVITE gets nothing at all (nor later: no timer sends one) and
// an immediate final response comes alone.
func TestTryingOnlyWhenRelayingOrSuspending(t *testing.T) {
	sp := &suspender{}
	r := newRig(t, Config{}, Routes{Request: func(c *Context) {
		switch c.Req().Recipient.User {
		case "drop":
			c.Drop()
		case "challenge":
			_ = c.Reply(401, "")
		case "wait":
			sp.route(nil)(c)
		default:
			_ = c.Relay()
		}
	}})
	r.recv(uacAddr, request("INVITE", "sip:drop@127.0.0.1:5062", "sec-t1", "z9hG4bK-t1", 1, ""))
	r.expect()
	r.recv(uacAddr, request("INVITE", "sip:drop@127.0.0.1:5062", "sec-t1", "z9hG4bK-t1", 1, "")) // retransmission
	r.advance(time.Second)
	r.expect()

	r.recv(uacAddr, request("INVITE", "sip:challenge@127.0.0.1:5062", "sec-t2", "z9hG4bK-t2", 1, ""))
	r.expect("127.0.0.1:5061 401")

	r.recv(uacAddr, request("INVITE", "sip:relay@127.0.0.1:5062", "sec-t3", "z9hG4bK-t3", 1, ""))
	r.expect("127.0.0.1:5061 100", "127.0.0.1:5062 INVITE")

	r.recv(uacAddr, request("INVITE", "sip:wait@127.0.0.1:5062", "sec-t4", "z9hG4bK-t4", 1, ""))
	r.expect("127.0.0.1:5061 100")
}

// Row 9: a response counts only when it comes from where its branch was
// sent; a forged 486 from elsewhere, with the right branch, is dropped.
func TestResponseFromOtherSourceDropped(t *testing.T) {
	r := newRig(t, Config{}, Routes{Request: relayAll})
	r.recv(uacAddr, invite("sec-s1", "z9hG4bK-s1"))
	fwd := r.expect("127.0.0.1:5061 100", "127.0.0.1:5062 INVITE")[1].msg
	r.recvMsg(attackerAddr, respond(fwd, 486, "x1"))
	r.expect()
	assert.EqualValues(t, 1, r.s.Stats().DropSource)
	r.recvMsg(uasAddr, respond(fwd, 180, "b1"))
	r.expect("127.0.0.1:5061 180")
	r.recvMsg(uasAddr, respond(fwd, 200, "b1"))
	r.expect("127.0.0.1:5061 200")

	// With AnyResponseSource the check is off (the operator's choice).
	r2 := newRig(t, Config{Security: Security{AnyResponseSource: true}}, Routes{Request: relayAll})
	r2.recv(uacAddr, invite("sec-s2", "z9hG4bK-s2"))
	fwd = r2.expect("127.0.0.1:5061 100", "127.0.0.1:5062 INVITE")[1].msg
	r2.recvMsg(attackerAddr, respond(fwd, 486, "x1"))
	r2.expect("127.0.0.1:5062 ACK", "127.0.0.1:5061 486")
}

// Branches and To tags carry 64 random bits and a MAC: no counter to
// guess from the ones seen, and none repeats.
func TestBranchesAndTagsUnpredictable(t *testing.T) {
	r := newRig(t, Config{}, Routes{Request: func(c *Context) { _ = c.Reply(486, "") }})
	ls := r.s.loops[0]
	up := &sip.ViaHeader{Transport: "UDP", Host: "127.0.0.1", Port: 5061, Params: sip.HeaderParams{{K: "branch", V: "z9hG4bK-up"}}}
	seen := map[string]bool{}
	for i := 0; i < 1000; i++ {
		b := r.s.newBranch(ls, up)
		tag := r.s.toTag(ls)
		require.True(t, r.s.ours(b), b)
		require.True(t, r.s.verifyBranch(ls, b, up))
		require.False(t, seen[b] || seen[tag], "repeated identifier")
		seen[b], seen[tag] = true, true
		require.Len(t, b, 7+len(r.s.tag)+2+idHex+macHex)
		require.Len(t, tag, len(r.s.tag)+idHex)
	}
	// The MAC binds the Via below ours: another next hop fails it.
	b := r.s.newBranch(ls, up)
	third := &sip.ViaHeader{Transport: "UDP", Host: "127.0.0.3", Port: 5060, Params: sip.HeaderParams{{K: "branch", V: "z9hG4bK-up"}}}
	assert.False(t, r.s.verifyBranch(ls, b, third))
	// A branch of another server instance (another key) does not verify.
	r2 := newRig(t, Config{}, Routes{})
	r2.s.tag = r.s.tag
	assert.False(t, r2.s.verifyBranch(r2.s.loops[0], b, up))
}

// Row 11: a forged 200 with our Via on top and a second Via naming a third
// host is not forwarded there; a real 2xx retransmission still is.
func TestForgedResponseViaNotForwarded(t *testing.T) {
	r := newRig(t, Config{}, Routes{Request: relayAll})
	fwd := setUpCall(t, r, "sec-v1")
	r.advance(64 * 500 * time.Millisecond) // the client transaction ends
	r.take()
	forged := respond(fwd, 200, "b1")
	vias := forged.GetHeaders("Via")
	v2 := vias[1].(*sip.ViaHeader)
	v2.Host, v2.Port = thirdAddr.Addr().String(), int(thirdAddr.Port())
	v2.Params.Remove("received")
	v2.Params.Remove("rport")
	r.recvMsg(attackerAddr, forged)
	r.expect()
	assert.EqualValues(t, 1, r.s.Stats().DropVia)
	r.recvMsg(uasAddr, respond(fwd, 200, "b1"))
	r.expect("127.0.0.1:5061 200")

	// Stateless forwarding: the same holds for Forward's branch.
	r2 := newRig(t, Config{}, Routes{Request: func(c *Context) { _ = c.Forward() }})
	r2.recv(uacAddr, request("MESSAGE", "sip:bob@127.0.0.1:5062", "sec-v2", "z9hG4bK-v2", 1, ""))
	sfwd := r2.expect("127.0.0.1:5062 MESSAGE")[0].msg
	forged = respond(sfwd, 200, "")
	v2 = forged.GetHeaders("Via")[1].(*sip.ViaHeader)
	v2.Host, v2.Port = thirdAddr.Addr().String(), int(thirdAddr.Port())
	v2.Params.Remove("received")
	v2.Params.Remove("rport")
	r2.recvMsg(uasAddr, forged)
	r2.expect()
	r2.recvMsg(uasAddr, respond(sfwd, 200, ""))
	r2.expect("127.0.0.1:5061 200")
}
