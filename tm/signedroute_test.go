package tm

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/emiago/sipgo/sip"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// parseRequest parses raw (as request() builds it).
func parseRequest(t *testing.T, raw string) *sip.Request {
	t.Helper()
	m, err := sip.ParseMessage([]byte(raw))
	require.NoError(t, err)
	return m.(*sip.Request)
}

// SignedRoute returns what the proxy puts in Record-Route for the dialog;
// an in-dialog request carrying it is followed from either side, and the
// same value tampered with, or signed for another dialog or with another
// key, is refused 403.
func TestSignedRoute(t *testing.T) {
	r := newRig(t, Config{}, Routes{Request: relayAll})
	got := r.s.SignedRoute(parseRequest(t, invite("sr-1", "z9hG4bK-sr0")), r.tp, netip.AddrPort{})
	fwd := setUpCall(t, r, "sr-1")
	rr := fwd.GetHeaders("Record-Route")
	require.Len(t, rr, 1)
	assert.Equal(t, rr[0].Value(), got, "the proxy's Record-Route")
	assert.Regexp(t, `^<sip:127\.0\.0\.1:5060;lr;sig=[0-9a-f]{16}>$`, got)

	r.recv(uacAddr, dialogRequest("BYE", "sip:bob@127.0.0.1:5062", "sr-1", "z9hG4bK-sr1", 2, false, "Route: "+got+"\n"))
	r.expect("127.0.0.1:5062 BYE")
	r.recv(uasAddr, dialogRequest("BYE", "sip:alice@127.0.0.1:5061", "sr-1", "z9hG4bK-sr2", 2, true, "Route: "+got+"\n"))
	r.expect("127.0.0.1:5061 BYE")

	// One hex digit of the signature changed.
	i := strings.Index(got, ";sig=") + len(";sig=")
	flip := map[byte]string{'0': "1"}[got[i]]
	if flip == "" {
		flip = "0"
	}
	tampered := got[:i] + flip + got[i+1:]
	require.NotEqual(t, got, tampered)
	otherDialog := r.s.SignedRoute(parseRequest(t, invite("sr-other", "z9hG4bK-sr9")), r.tp, netip.AddrPort{})
	otherKey := newRig(t, Config{Security: Security{RouteKey: []byte("another key of 16+ bytes")}}, Routes{Request: relayAll}).
		s.SignedRoute(parseRequest(t, invite("sr-1", "z9hG4bK-sr8")), r.tp, netip.AddrPort{})
	for n, v := range []string{tampered, otherDialog, otherKey} {
		r.recv(uacAddr, dialogRequest("BYE", "sip:bob@127.0.0.1:5062", "sr-1", "z9hG4bK-sr3"+string(rune('a'+n)), 2, false, "Route: "+v+"\n"))
		out := r.expect("127.0.0.1:5061 403")
		assert.Contains(t, out[0].msg.(*sip.Response).Reason, "not signed", v)
	}
	assert.EqualValues(t, 3, r.s.Stats().DropUnsigned)

	// A request with no From tag has no dialog to sign for.
	noTag := parseRequest(t, strings.Replace(invite("sr-2", "z9hG4bK-sr4"), ";tag=a1", "", 1))
	assert.Empty(t, r.s.SignedRoute(noTag, r.tp, netip.AddrPort{}))
}

// With a connection address, SignedRoute carries its flow token, as the
// value the proxy adds facing a side reached over TCP; a request along
// both values goes out on that connection.
func TestSignedRouteFlowToken(t *testing.T) {
	r, tcp := streamRig(t)
	inv := parseRequest(t, request("INVITE", "sip:bob@127.0.0.1:5062;transport=tcp", "sr-f1", "z9hG4bK-srf0", 1, ""))
	r.recv(uacAddr, inv.String())
	r.expect("127.0.0.1:5061 100")
	require.Len(t, tcp.out, 1)
	rr := tcp.out[0].msg.(*sip.Request).GetHeaders("Record-Route")
	require.Len(t, rr, 2)
	assert.Equal(t, rr[0].Value(), r.s.SignedRoute(inv, tcp, uasAddr), "value facing the callee, with its flow token")
	assert.Equal(t, rr[1].Value(), r.s.SignedRoute(inv, r.tp, netip.AddrPort{}), "value facing the caller")
	assert.Contains(t, rr[0].Value(), ";transport=tcp;lr;sig=")

	// The callee's connection is open: the caller's BYE, along the route
	// set (Record-Route reversed), follows the token.
	tcp.open[uasAddr] = true
	routes := "Route: " + r.s.SignedRoute(inv, r.tp, netip.AddrPort{}) + "\nRoute: " + r.s.SignedRoute(inv, tcp, uasAddr) + "\n"
	r.recv(uacAddr, dialogRequest("BYE", "sip:bob@nowhere.invalid;transport=tcp", "sr-f1", "z9hG4bK-srf1", 2, false, routes))
	require.Len(t, tcp.out, 2)
	assert.Equal(t, uasAddr, tcp.out[1].to)
	assert.Equal(t, sip.BYE, tcp.out[1].msg.(*sip.Request).Method)
}
