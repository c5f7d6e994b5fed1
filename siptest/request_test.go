package siptest_test

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/asyncsip/asyncsip/reactor"
	"github.com/asyncsip/asyncsip/siptest"
	"github.com/asyncsip/asyncsip/tm"
)

// tmAccepts feeds req, as bytes on the wire, to a tm.Server on a manual
// loop and returns an error when tm's parser or validation refuses it.
func tmAccepts(req *sip.Request) error {
	g := reactor.NewManualGroup(1, reactor.NewFakeClock(time.Unix(0, 0)))
	srv := tm.NewServer(g.Loops(), tm.Config{}, tm.Routes{Request: func(c *tm.Context) { c.Drop() }})
	tp := discard{}
	srv.AddTransport(tp)
	srv.Receive(g.Loop(0), []byte(req.String()), netip.MustParseAddrPort(siptest.DefaultUAC), tp)
	srv.Close()
	g.Loop(0).RunPending()
	if st := srv.Stats(); st.DropParse+st.DropSize+st.DropHeaders+st.DropInvalid > 0 {
		return fmt.Errorf("tm refused the request (drops: parse %d, size %d, headers %d, invalid %d)",
			st.DropParse, st.DropSize, st.DropHeaders, st.DropInvalid)
	}
	return nil
}

// discard is a tm.Transport that sends nothing.
type discard struct{}

func (discard) Send(*reactor.Loop, []byte, netip.AddrPort) error { return nil }
func (discard) Protocol() string                                 { return "UDP" }
func (discard) Advertised() (string, int)                        { return "127.0.0.1", 5060 }
func (discard) LocalAddr() netip.AddrPort                        { return netip.MustParseAddrPort("127.0.0.1:5060") }

func hdr(m interface{ GetHeader(string) sip.Header }, name string) string {
	if h := m.GetHeader(name); h != nil {
		return h.Value()
	}
	return ""
}

func TestNewRequestDefaults(t *testing.T) {
	t.Parallel()
	req := siptest.NewRequest("invite", "sip:+15551234@example.com")
	require.NoError(t, tmAccepts(req), "a request tm accepts")
	assert.Equal(t, sip.INVITE, req.Method, "the method is upper-cased")
	assert.Equal(t, "sip:+15551234@example.com", req.Recipient.String())

	via := req.Via()
	require.NotNil(t, via)
	assert.Equal(t, "UDP", via.Transport)
	assert.Equal(t, "127.0.0.1", via.Host)
	assert.Equal(t, 5061, via.Port)
	br, _ := via.Params.Get("branch")
	assert.True(t, strings.HasPrefix(br, "z9hG4bK") && len(br) > 7, "RFC 3261 branch: %q", br)
	assert.True(t, via.Params.Has("rport"))

	assert.Equal(t, "70", hdr(req, "Max-Forwards"))
	ft, ok := req.From().Params.Get("tag")
	assert.True(t, ok && ft != "", "From has a tag")
	assert.Equal(t, "sip:alice@example.com", req.From().Address.String())
	assert.Equal(t, "sip:+15551234@example.com", req.To().Address.String())
	assert.False(t, req.To().Params.Has("tag"), "out of dialog: no To tag")
	assert.NotEmpty(t, req.CallID().Value())
	assert.Equal(t, uint32(1), req.CSeq().SeqNo)
	assert.Equal(t, sip.INVITE, req.CSeq().MethodName)
	assert.Equal(t, "sip:alice@127.0.0.1:5061", req.Contact().Address.String())
	assert.Equal(t, "0", hdr(req, "Content-Length"))
	assert.Equal(t, siptest.DefaultUAC, req.MessageData.Source())

	other := siptest.NewRequest("INVITE", "sip:+15551234@example.com")
	ob, _ := other.Via().Params.Get("branch")
	assert.NotEqual(t, br, ob, "a fresh branch per request")
	assert.NotEqual(t, req.CallID().Value(), other.CallID().Value())

	msg := siptest.NewRequest("MESSAGE", "sip:bob@example.com")
	assert.Nil(t, msg.Contact(), "no Contact where a UAC puts none")
}

func TestNewRequestOptions(t *testing.T) {
	t.Parallel()
	req := siptest.NewRequest("INVITE", "sip:bob@example.com",
		siptest.WithFrom(`"Carol" <sip:carol@example.org>`), siptest.WithFromTag("ft"),
		siptest.WithTo("sip:robert@example.com"), siptest.WithToTag("tt"),
		siptest.WithCallID("call-1"), siptest.WithCSeq(7), siptest.WithMaxForwards(3),
		siptest.WithBranch("z9hG4bK-fixed"), siptest.WithContact("sip:carol@10.1.1.1:5070"),
		siptest.WithRoute("sip:127.0.0.1:5060;lr", "<sip:10.9.9.9;lr>"),
		siptest.WithHeader("X-Tenant", "blue"), siptest.WithHeader("X-Tenant", "green"),
		siptest.WithBody("application/sdp", "v=0\r\n"),
		siptest.WithSource("10.1.1.1:5070"),
	)
	require.NoError(t, tmAccepts(req))
	assert.Equal(t, "Carol", req.From().DisplayName)
	assert.Equal(t, "ft", req.From().Params.GetOr("tag", ""))
	assert.Equal(t, "sip:robert@example.com", req.To().Address.String())
	assert.Equal(t, "tt", req.To().Params.GetOr("tag", ""))
	assert.Equal(t, "call-1", req.CallID().Value())
	assert.Equal(t, uint32(7), req.CSeq().SeqNo)
	assert.Equal(t, "3", hdr(req, "Max-Forwards"))
	assert.Equal(t, "z9hG4bK-fixed", req.Via().Params.GetOr("branch", ""))
	assert.Equal(t, "10.1.1.1", req.Via().Host)
	assert.Equal(t, 5070, req.Via().Port)
	assert.Equal(t, "sip:carol@10.1.1.1:5070", req.Contact().Address.String())
	routes := req.GetHeaders("Route")
	require.Len(t, routes, 2)
	assert.Equal(t, "<sip:127.0.0.1:5060;lr>", routes[0].Value())
	assert.Equal(t, "<sip:10.9.9.9;lr>", routes[1].Value())
	tenants := req.GetHeaders("X-Tenant")
	require.Len(t, tenants, 2)
	assert.Equal(t, "green", tenants[1].Value())
	assert.Equal(t, "application/sdp", hdr(req, "Content-Type"))
	assert.Equal(t, "v=0\r\n", string(req.Body()))
	assert.Equal(t, "5", hdr(req, "Content-Length"))
	assert.Equal(t, "10.1.1.1:5070", req.MessageData.Source())

	bare := siptest.NewRequest("OPTIONS", "sip:bob@example.com", siptest.WithoutHeader("Max-Forwards"),
		siptest.WithoutHeader("contact"))
	assert.Nil(t, bare.MaxForwards())
	assert.Nil(t, bare.Contact())

	v6 := siptest.NewRequest("OPTIONS", "sip:bob@[::1]", siptest.WithSource("[::1]:5099"))
	assert.Equal(t, "[::1]:5099", v6.MessageData.Source())
	require.NoError(t, tmAccepts(v6))
}

func TestNewRegister(t *testing.T) {
	t.Parallel()
	req := siptest.NewRegister("sip:alice@example.com", "sip:alice@10.0.0.7:5060", 3600)
	require.NoError(t, tmAccepts(req))
	assert.Equal(t, sip.REGISTER, req.Method)
	assert.Equal(t, "sip:example.com", req.Recipient.String())
	assert.Equal(t, "sip:alice@example.com", req.From().Address.String())
	assert.True(t, req.From().Params.Has("tag"))
	assert.Equal(t, "sip:alice@example.com", req.To().Address.String())
	assert.Equal(t, "sip:alice@10.0.0.7:5060", req.Contact().Address.String())
	assert.Equal(t, "3600", hdr(req, "Expires"))

	unreg := siptest.NewRegister("sip:alice@example.com:5080", "*", 0, siptest.WithCSeq(2))
	assert.Equal(t, "sip:example.com:5080", unreg.Recipient.String())
	assert.Equal(t, "0", hdr(unreg, "Expires"))
	assert.Equal(t, uint32(2), unreg.CSeq().SeqNo)
}

func TestNewByeAndCancel(t *testing.T) {
	t.Parallel()
	bye := siptest.NewBye("sip:bob@10.0.0.2:5060", siptest.WithRoute("sip:127.0.0.1:5060;lr"), siptest.WithCallID("c-9"))
	require.NoError(t, tmAccepts(bye))
	assert.True(t, bye.To().Params.Has("tag"), "in dialog")
	assert.Equal(t, uint32(2), bye.CSeq().SeqNo)
	assert.Equal(t, "<sip:127.0.0.1:5060;lr>", hdr(bye, "Route"))
	assert.Equal(t, "c-9", bye.CallID().Value())

	inv := siptest.NewRequest("INVITE", "sip:bob@example.com", siptest.WithRoute("sip:10.9.9.9;lr"),
		siptest.WithCSeq(4), siptest.WithSource("10.1.1.1:5070"))
	can := siptest.NewCancel(inv)
	require.NoError(t, tmAccepts(can))
	assert.Equal(t, sip.CANCEL, can.Method)
	assert.Equal(t, inv.Recipient.String(), can.Recipient.String())
	assert.Equal(t, inv.Via().Value(), can.Via().Value(), "same top Via, same branch")
	assert.Equal(t, inv.From().Value(), can.From().Value())
	assert.Equal(t, inv.To().Value(), can.To().Value())
	assert.Equal(t, inv.CallID().Value(), can.CallID().Value())
	assert.Equal(t, "4 CANCEL", can.CSeq().Value())
	assert.Equal(t, hdr(inv, "Route"), hdr(can, "Route"))
	assert.Equal(t, "10.1.1.1:5070", can.MessageData.Source())
	assert.Empty(t, can.Body())
}

func TestNewAckAndDialog(t *testing.T) {
	t.Parallel()
	inv := siptest.NewRequest("INVITE", "sip:bob@example.com", siptest.WithCSeq(5))
	ok := sip.NewResponse(200, "OK")
	ok.AppendHeader(sip.HeaderClone(inv.Via()))
	ok.AppendHeader(sip.NewHeader("Record-Route", "<sip:10.0.0.1;lr>"))
	ok.AppendHeader(sip.NewHeader("Record-Route", "<sip:127.0.0.1:5060;lr>"))
	ok.AppendHeader(sip.HeaderClone(inv.From()))
	to := sip.HeaderClone(inv.To()).(*sip.ToHeader)
	to.Params.Add("tag", "callee")
	ok.AppendHeader(to)
	ok.AppendHeader(sip.HeaderClone(inv.CallID()))
	ok.AppendHeader(sip.HeaderClone(inv.CSeq()))
	ok.AppendHeader(sip.NewHeader("Contact", "<sip:bob@10.0.0.2:5062>"))

	d := siptest.NewDialog(inv, ok)
	assert.Equal(t, "sip:bob@10.0.0.2:5062", d.Target())
	assert.Equal(t, []string{"<sip:127.0.0.1:5060;lr>", "<sip:10.0.0.1;lr>"}, d.Routes(), "the route set is reversed")

	ack := siptest.NewAck(inv, ok)
	require.NoError(t, tmAccepts(ack))
	assert.Equal(t, "sip:bob@10.0.0.2:5062", ack.Recipient.String())
	assert.Equal(t, "5 ACK", ack.CSeq().Value())
	assert.Equal(t, "callee", ack.To().Params.GetOr("tag", ""))
	assert.NotEqual(t, inv.Via().Params.GetOr("branch", ""), ack.Via().Params.GetOr("branch", ""),
		"the ACK for a 2xx is a new transaction")
	routes := ack.GetHeaders("Route")
	require.Len(t, routes, 2)
	assert.Equal(t, "<sip:127.0.0.1:5060;lr>", routes[0].Value())

	bye := d.Bye()
	assert.Equal(t, "6 BYE", bye.CSeq().Value())
	assert.Equal(t, inv.CallID().Value(), bye.CallID().Value())
	assert.Equal(t, inv.From().Value(), bye.From().Value())
	info := d.Request("INFO", siptest.WithHeader("X-Step", "2"))
	assert.Equal(t, "7 INFO", info.CSeq().Value())
	assert.Equal(t, "2", hdr(info, "X-Step"))

	busy := sip.NewResponse(486, "Busy Here")
	busy.AppendHeader(to)
	nack := siptest.NewAck(inv, busy)
	require.NoError(t, tmAccepts(nack))
	assert.Equal(t, inv.Recipient.String(), nack.Recipient.String())
	assert.Equal(t, inv.Via().Params.GetOr("branch", ""), nack.Via().Params.GetOr("branch", ""),
		"the ACK for a non-2xx has the INVITE's branch")
	assert.Equal(t, "5 ACK", nack.CSeq().Value())
	assert.Equal(t, "callee", nack.To().Params.GetOr("tag", ""))
}

func TestNewRequestPanicsOnBadLiterals(t *testing.T) {
	t.Parallel()
	for name, fn := range map[string]func(){
		"bad URI":        func() { siptest.NewRequest("INVITE", "not a uri") },
		"URI no host":    func() { siptest.NewRequest("INVITE", "sip:") },
		"bad method":     func() { siptest.NewRequest("IN VITE", "sip:bob@example.com") },
		"empty method":   func() { siptest.NewRequest("", "sip:bob@example.com") },
		"bad source":     func() { siptest.WithSource("10.0.0.1") },
		"bad register":   func() { siptest.NewRegister("alice", "sip:a@b", 60) },
		"header with LF": func() { siptest.NewRequest("INVITE", "sip:b@c", siptest.WithHeader("X", "a\r\nVia: evil")) },
	} {
		t.Run(name, func(t *testing.T) {
			assert.Contains(t, panicValue(fn), "siptest: ", "a panic with a clear message")
		})
	}
}

func panicValue(fn func()) (v string) {
	defer func() {
		if r := recover(); r != nil {
			v, _ = r.(string)
		}
	}()
	fn()
	return ""
}
