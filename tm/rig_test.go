package tm

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/stretchr/testify/require"

	"github.com/asyncsip/asyncsip/reactor"
)

var (
	proxyAddr = netip.MustParseAddrPort("127.0.0.1:5060")
	uacAddr   = netip.MustParseAddrPort("127.0.0.1:5061")
	uasAddr   = netip.MustParseAddrPort("127.0.0.1:5062")
	uas2Addr  = netip.MustParseAddrPort("127.0.0.1:5063")
)

type sent struct {
	to  netip.AddrPort
	msg sip.Message
}

// fakeTP records what the server sends.
type fakeTP struct {
	out  []sent
	fail bool
}

func (f *fakeTP) Send(_ *reactor.Loop, b []byte, to netip.AddrPort) error {
	if f.fail {
		return fmt.Errorf("fake send failure")
	}
	m, err := sip.ParseMessage(append([]byte(nil), b...))
	if err != nil {
		panic(fmt.Sprintf("server sent unparsable message: %v\n%s", err, b))
	}
	f.out = append(f.out, sent{to, m})
	return nil
}
func (f *fakeTP) Protocol() string          { return "UDP" }
func (f *fakeTP) Advertised() (string, int) { return "127.0.0.1", 5060 }
func (f *fakeTP) LocalAddr() netip.AddrPort { return proxyAddr }

type rig struct {
	t   *testing.T
	clk *reactor.FakeClock
	g   *reactor.Group
	s   *Server
	tp  *fakeTP
	n   int // messages already taken
}

func newRig(t *testing.T, cfg Config, routes Routes) *rig { return newRigN(t, 1, cfg, routes) }

func newRigN(t *testing.T, loops int, cfg Config, routes Routes) *rig {
	clk := reactor.NewFakeClock(time.Unix(1_700_000_000, 0))
	g := reactor.NewManualGroup(loops, clk)
	s := NewServer(g.Loops(), cfg, routes)
	tp := &fakeTP{}
	s.AddTransport(tp)
	return &rig{t: t, clk: clk, g: g, s: s, tp: tp}
}

// recv delivers raw on loop 0 and runs every loop until idle.
func (r *rig) recv(from netip.AddrPort, raw string) {
	r.s.Receive(r.g.Loop(0), []byte(raw), from, r.tp)
	r.run()
}

func (r *rig) recvMsg(from netip.AddrPort, m sip.Message) { r.recv(from, m.String()) }

func (r *rig) run() {
	for i := 0; i < 4; i++ {
		for _, l := range r.g.Loops() {
			l.RunPending()
		}
	}
}

// advance moves time on loop 0 (single-loop rigs).
func (r *rig) advance(d time.Duration) { r.g.Loop(0).Advance(d); r.run() }

// take returns the messages sent since the last take.
func (r *rig) take() []sent {
	out := r.tp.out[r.n:]
	r.n = len(r.tp.out)
	return out
}

// expect takes the new messages and checks their destinations and first
// lines ("INVITE" or a status code like "180").
func (r *rig) expect(want ...string) []sent {
	r.t.Helper()
	got := r.take()
	var desc []string
	for _, s := range got {
		desc = append(desc, s.to.String()+" "+short(s.msg))
	}
	require.Equal(r.t, want, desc, "messages sent")
	return got
}

func short(m sip.Message) string {
	switch v := m.(type) {
	case *sip.Request:
		return string(v.Method)
	case *sip.Response:
		return fmt.Sprint(v.StatusCode)
	}
	return "?"
}

func invite(callID, branch string) string {
	return request("INVITE", "sip:bob@127.0.0.1:5062", callID, branch, 1, "")
}

func request(method, ruri, callID, branch string, cseq int, extra string) string {
	return strings.ReplaceAll(fmt.Sprintf(`%s %s SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:5061;branch=%s
Max-Forwards: 70
From: <sip:alice@127.0.0.1>;tag=a1
To: <sip:bob@127.0.0.1>
Call-ID: %s
CSeq: %d %s
Contact: <sip:alice@127.0.0.1:5061>
%sContent-Length: 0

`, method, ruri, branch, callID, cseq, method, strings.ReplaceAll(extra, "\r", "")), "\n", "\r\n")
}

// respond builds the UAS's response to a request the proxy sent.
func respond(req sip.Message, code int, toTag string) *sip.Response {
	r := req.(*sip.Request)
	resp := sip.NewResponse(code, StatusText(code))
	for _, v := range r.GetHeaders("Via") {
		resp.AppendHeader(sip.HeaderClone(v))
	}
	for _, h := range r.GetHeaders("Record-Route") {
		resp.AppendHeader(sip.HeaderClone(h))
	}
	resp.AppendHeader(sip.HeaderClone(r.From()))
	to := sip.HeaderClone(r.To()).(*sip.ToHeader)
	if code > 100 && toTag != "" && !to.Params.Has("tag") {
		to.Params.Add("tag", toTag)
	}
	resp.AppendHeader(to)
	resp.AppendHeader(sip.HeaderClone(r.CallID()))
	resp.AppendHeader(sip.HeaderClone(r.CSeq()))
	resp.SetBody(nil)
	return resp
}

func relayAll(c *Context) { _ = c.Relay() }

// signedRoute returns a Route header line naming uri (one of ours, e.g.
// "sip:127.0.0.1:5060;lr") signed by r's server for the dialog of callID
// whose caller's tag is a1 (what request() puts in From), as the
// Record-Route of that dialog carried it.
func (r *rig) signedRoute(callID, uri string) string {
	return "Route: <" + r.signedURI(callID, uri) + ">\n"
}

// signedURI is uri with the signature signedRoute adds.
func (r *rig) signedURI(callID, uri string) string {
	var u sip.Uri
	require.NoError(r.t, sip.ParseUri(uri, &u))
	u.UriParams = append(u.UriParams, sip.HeaderKV{K: sigParam, V: r.s.routeMAC(callID, "a1", u.User)})
	return u.String()
}
