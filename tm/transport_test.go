package tm

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/emiago/sipgo/sip"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// fakeStream is a connection-oriented transport for the selection tests.
type fakeStream struct {
	fakeTP
	proto string
	port  int
	open  map[netip.AddrPort]bool
}

func (f *fakeStream) Protocol() string          { return f.proto }
func (f *fakeStream) Advertised() (string, int) { return "127.0.0.1", f.port }
func (f *fakeStream) LocalAddr() netip.AddrPort {
	return netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(f.port))
}
func (f *fakeStream) HasConn(a netip.AddrPort) bool { return f.open[a] }

func streamRig(t *testing.T) (*rig, *fakeStream) {
	r := newRig(t, Config{}, Routes{Request: relayAll})
	tcp := &fakeStream{proto: "TCP", port: 5070, open: map[netip.AddrPort]bool{}}
	r.s.AddTransport(tcp)
	return r, tcp
}

func TestTransportParamSelectsTransport(t *testing.T) {
	r, tcp := streamRig(t)
	r.recv(uacAddr, request("INVITE", "sip:bob@127.0.0.1:5062;transport=tcp", "tp-1", "z9hG4bK-tp1", 1, ""))
	r.expect("127.0.0.1:5061 100")
	require.Len(t, tcp.out, 1)
	req := tcp.out[0].msg.(*sip.Request)
	assert.Equal(t, "TCP", req.Via().Transport)
	assert.Equal(t, 5070, req.Via().Port)
	var rr []string
	for _, h := range req.GetHeaders("Record-Route") {
		rr = append(rr, h.Value())
	}
	// RFC 5658: the interface facing the callee on top (with a flow token
	// naming the callee's connection), the caller's below.
	require.Len(t, rr, 2)
	assert.Equal(t, "<sip:127.0.0.1:5060;lr;sig="+r.s.routeMAC("tp-1", "a1", "")+">", rr[1])
	top := req.GetHeaders("Record-Route")[0].(*sip.RecordRouteHeader).Address
	assert.Equal(t, "127.0.0.1", top.Host)
	assert.Equal(t, 5070, top.Port)
	flow, proto := r.s.parseFlow(&top)
	assert.Equal(t, uasAddr, flow)
	assert.Equal(t, "TCP", proto)
}

// In-dialog requests follow the flow token of the last Route of ours they
// carry, while the connection is open; a request from that connection, a
// forged token or a closed connection fall back to the Request-URI.
func TestFlowTokenRoutesInDialog(t *testing.T) {
	r, tcp := streamRig(t)
	caller := netip.MustParseAddrPort("127.0.0.1:40000") // a caller's connection
	tok := r.s.flowToken(caller)
	bye := func(id, rts string) string {
		return strings.Replace(request("BYE", "sip:alice@nowhere.invalid;transport=tcp", id, "z9hG4bK-"+id, 2, rts),
			"To: <sip:bob@127.0.0.1>", "To: <sip:bob@127.0.0.1>;tag=b1", 1)
	}
	routes := func(id, tok string) string {
		return r.signedRoute(id, "sip:127.0.0.1:5060;lr") + r.signedRoute(id, "sip:"+tok+"@127.0.0.1:5070;transport=tcp;lr")
	}
	r.recv(uasAddr, bye("ft-1", routes("ft-1", tok)))
	require.Empty(t, tcp.out, "no connection open: the Request-URI (unresolvable) is used")
	r.expect("127.0.0.1:5061 503") // answered upstream: nothing could be sent
	tcp.open[caller] = true
	r.recv(uasAddr, bye("ft-2", routes("ft-2", tok)))
	require.Len(t, tcp.out, 1)
	assert.Equal(t, caller, tcp.out[0].to)
	// A forged token (signed Route, bad token MAC) is ignored.
	r.recv(uasAddr, bye("ft-3", routes("ft-3", flowPrefix+"7f0000019c40-0000000000000000")))
	assert.Len(t, tcp.out, 1, "a forged token is ignored")
	r.expect("127.0.0.1:5061 503") // ft-3 fell back to the unresolvable Request-URI
}

func TestSameTransportSingleRecordRoute(t *testing.T) {
	r, tcp := streamRig(t)
	r.recv(uacAddr, invite("tp-2", "z9hG4bK-tp2"))
	out := r.expect("127.0.0.1:5061 100", "127.0.0.1:5062 INVITE")
	assert.Len(t, out[1].msg.(*sip.Request).GetHeaders("Record-Route"), 1)
	assert.Empty(t, tcp.out)
}

func TestSipsWithoutTLSIsRefused(t *testing.T) {
	r, _ := streamRig(t)
	r.recv(uacAddr, request("MESSAGE", "sips:bob@127.0.0.1", "tp-3", "z9hG4bK-tp3", 1, ""))
	r.expect("127.0.0.1:5061 503")
}

func TestLargeRequestUsesTCP(t *testing.T) {
	r, tcp := streamRig(t)
	pad := "X-Pad: " + strings.Repeat("p", 1400) + "\n"
	r.recv(uacAddr, request("MESSAGE", "sip:bob@127.0.0.1:5062", "tp-4", "z9hG4bK-tp4", 1, pad))
	require.Len(t, tcp.out, 1)
	assert.Equal(t, netip.MustParseAddrPort("127.0.0.1:5062"), tcp.out[0].to)
	r.recv(uacAddr, request("MESSAGE", "sip:bob@127.0.0.1:5062;transport=udp", "tp-5", "z9hG4bK-tp5", 1, pad))
	r.expect("127.0.0.1:5062 MESSAGE")
	assert.Len(t, tcp.out, 1, "a target forcing UDP keeps UDP")
}

func TestOpenConnectionIsReused(t *testing.T) {
	r, tcp := streamRig(t)
	tcp.open[uasAddr] = true
	r.recv(uacAddr, request("MESSAGE", "sip:bob@127.0.0.1:5062", "tp-6", "z9hG4bK-tp6", 1, ""))
	require.Len(t, tcp.out, 1)
	assert.Equal(t, uasAddr, tcp.out[0].to)
}

func TestDoubleRouteRemovedOnTheWayBack(t *testing.T) {
	r, tcp := streamRig(t)
	routes := r.signedRoute("tp-7", "sip:127.0.0.1:5060;lr") + r.signedRoute("tp-7", "sip:127.0.0.1:5070;transport=tcp;lr")
	r.recv(uacAddr, strings.Replace(
		request("BYE", "sip:bob@127.0.0.1:5062;transport=tcp", "tp-7", "z9hG4bK-tp7", 2, routes),
		"To: <sip:bob@127.0.0.1>", "To: <sip:bob@127.0.0.1>;tag=b1", 1))
	require.Len(t, tcp.out, 1)
	assert.Empty(t, tcp.out[0].msg.(*sip.Request).GetHeaders("Route"))
}

func TestURITransport(t *testing.T) {
	for in, want := range map[string]string{
		"sip:a@h": "", "sip:a@h;transport=TCP": "TCP", "sip:a@h;transport=ws": "WS",
		"sips:a@h": "TLS", "sips:a@h;transport=ws": "WSS", "sip:a@h;transport=foo": "",
	} {
		var u sip.Uri
		require.NoError(t, sip.ParseUri(in, &u))
		assert.Equal(t, want, uriTransport(&u), in)
	}
	assert.Equal(t, 5061, defaultPort("TLS"))
	assert.Equal(t, 5060, defaultPort(""))
}

// A connection's own transport (never registered) still has its sends
// counted: responses that go back on a connection show in Messages.
func TestConnectionTransportSendsCounted(t *testing.T) {
	r, _ := streamRig(t)
	conn := &fakeStream{proto: "TCP", port: 5070}
	r.s.Receive(r.g.Loop(0), []byte(request("OPTIONS", "sip:127.0.0.1", "tp-8", "z9hG4bK-tp8", 1, "")), uacAddr, conn)
	r.run()
	// relayAll relays to the R-URI, which is this proxy: refused with 404
	// (addressed to this proxy, no Route), sent back on the connection.
	require.Len(t, conn.out, 1)
	assert.EqualValues(t, 1, r.s.Messages().ResponsesOut[3])
}

// A failed connect ends the branches waiting on it at once (408), not
// after Timer B.
func TestConnectionFailedEndsBranches(t *testing.T) {
	r, tcp := streamRig(t)
	r.recv(uacAddr, request("MESSAGE", "sip:bob@127.0.0.1:5062;transport=tcp", "tp-9", "z9hG4bK-tp9", 1, ""))
	require.Len(t, tcp.out, 1)
	r.s.ConnectionFailed(tcp, netip.MustParseAddrPort("127.0.0.1:5099")) // another peer: nothing happens
	r.run()
	r.expect()
	r.s.ConnectionFailed(tcp, uasAddr)
	r.run()
	r.expect("127.0.0.1:5061 408")
}
