package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/asyncsip/asyncsip"
	"github.com/asyncsip/asyncsip/internal/e2e/e2etest"
	"github.com/asyncsip/asyncsip/internal/sipp"
	"github.com/asyncsip/asyncsip/tm"
)

// OPTIONS and REGISTER are relayed statefully to a UAS chosen with
// SetDestination (the Request-URI is left alone, as a registrar front end
// would do), and the UAS's 200 comes back.
func TestInteropOptionsAndRegister(t *testing.T) {
	for _, tc := range []struct{ method, uac, uas string }{
		{"OPTIONS", "uac_options.xml", "uas_options.xml"},
		{"REGISTER", "uac_register.xml", "uas_register.xml"},
	} {
		t.Run(tc.method, func(t *testing.T) {
			const calls = 30
			uas, uasPort := startUAS(t, tc.uas, 60*time.Second, nil)
			p := startProxy(t, asyncsip.Config{}, tm.Routes{Request: func(c *tm.Context) {
				if string(c.Method()) != tc.method {
					_ = c.Reply(405, "Method Not Allowed")
					return
				}
				_ = c.SetDestination("127.0.0.1:" + itoa(uasPort))
				_ = c.Relay()
			}})
			res := runUAC(t, sipp.Config{Scenario: scenario(tc.uac), Remote: p.addr, Service: "bob",
				Calls: calls, Rate: 50, Timeout: 30 * time.Second})
			requireAllOK(t, res, calls)
			requireUASOK(t, uas, calls)
			st := p.srv.Stats()
			require.Equal(t, uint64(calls), st.ClientTxCreated, "%+v", st)
		})
	}
}

// Bad datagrams are answered (400, 483) when they carry what a response
// needs, dropped otherwise (garbage, oversize, a missing Via, From or
// Call-ID), and the server goes on serving: a SIPp call through it
// succeeds afterwards.
func TestInteropMalformedInput(t *testing.T) {
	uas, uasPort := startUAS(t, sipp.UAS, 60*time.Second, nil)
	relay := relayTo(uri("bob", uasPort))
	p := startProxy(t, asyncsip.Config{Core: tm.Config{Limits: tm.Limits{MaxMessage: 4096, MaxVias: 8}}},
		tm.Routes{Request: func(c *tm.Context) {
			if c.Method() == "OPTIONS" { // answered here: a keep-alive probe
				_ = c.Reply(200, "OK")
				return
			}
			relay(c)
		}})
	paddr := p.srv.Addrs()[0]
	peer := e2etest.NewUDPPeer(t)

	// request builds an OPTIONS from peer; drop removes the named headers,
	// extra is added before Content-Length.
	request := func(callID string, drop []string, extra, body string) string {
		hdrs := []string{
			"Via: SIP/2.0/UDP 127.0.0.1:" + itoa(peer.Port()) + ";branch=z9hG4bK-bad-" + callID + ";rport",
			"Max-Forwards: 70",
			"From: <sip:alice@127.0.0.1>;tag=a1",
			"To: <sip:bob@127.0.0.1>",
			"Call-ID: " + callID,
			"CSeq: 1 OPTIONS",
		}
		var b strings.Builder
		b.WriteString("OPTIONS sip:bob@127.0.0.1:" + itoa(uasPort) + " SIP/2.0\n")
	next:
		for _, h := range hdrs {
			for _, d := range drop {
				if strings.HasPrefix(h, d+":") {
					continue next
				}
			}
			b.WriteString(h + "\n")
		}
		b.WriteString(extra)
		if !strings.Contains(extra, "Content-Length") {
			b.WriteString("Content-Length: " + itoa(len(body)) + "\n")
		}
		return b.String() + "\n" + body
	}
	for _, tc := range []struct {
		name   string
		msg    string
		callID string // of the answer
		want   string // status line prefix of the answer, "" for none
	}{
		{"garbage", "\x00\x01 not SIP at all \xff\xfe\r\n\r\n", "", ""},
		{"start line only", "OPTIONS sip:bob@127.0.0.1 SIP/2.0\n\n", "", ""},
		{"oversize", request("big", nil, "X-Pad: "+strings.Repeat("a", 5000)+"\n", ""), "", ""},
		{"no Call-ID", request("nocallid", []string{"Call-ID"}, "", ""), "", ""},
		{"no From", request("nofrom", []string{"From"}, "", ""), "", ""},
		{"no Via", request("novia", []string{"Via"}, "", ""), "", ""},
		{"Content-Length beyond the body", request("cl", nil, "Content-Length: 400\n", "short"), "cl", "SIP/2.0 400 "},
		{"CSeq method differs", strings.Replace(request("cseq", nil, "", ""), "CSeq: 1 OPTIONS", "CSeq: 1 INVITE", 1),
			"cseq", "SIP/2.0 400 "},
		{"too many Vias", request("vias", nil, strings.Repeat("Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK-x\n", 9), ""),
			"vias", "SIP/2.0 400 "},
		{"Max-Forwards 0", strings.Replace(request("mf0", nil, "", ""), "Max-Forwards: 70", "Max-Forwards: 0", 1),
			"mf0", "SIP/2.0 483 "},
	} {
		peer.SendTo(paddr, e2etest.CRLF(tc.msg))
		if tc.want != "" {
			got, _ := peer.Next(3 * time.Second)
			require.True(t, strings.HasPrefix(got, tc.want), "%s: got\n%s", tc.name, got)
			require.True(t, hasCallID(got, tc.callID), "%s: the answer is for another request:\n%s", tc.name, got)
		}
	}
	// Nothing else came back: the dropped messages got no answer. A
	// well-formed OPTIONS sent now is answered 200; had any dropped message
	// been answered, that answer would arrive first.
	peer.SendTo(paddr, e2etest.CRLF(request("good", nil, "", "")))
	got, _ := peer.Next(3 * time.Second)
	require.True(t, strings.HasPrefix(got, "SIP/2.0 200 "), got)
	require.True(t, hasCallID(got, "good"), "the first answer after the bad input is for the good request:\n%s", got)

	st := p.srv.Stats()
	require.NotZero(t, st.DropParse, "%+v", st)
	require.NotZero(t, st.DropInvalid, "%+v", st)
	require.Zero(t, st.Panics, "%+v", st)

	res := runUAC(t, sipp.Config{Scenario: sipp.UAC, Remote: p.addr, Service: "bob",
		Calls: 5, Rate: 10, Timeout: 30 * time.Second})
	requireAllOK(t, res, 5)
	requireUASOK(t, uas, 5)
}

// hasCallID reports whether msg carries Call-ID id, in full or compact form.
func hasCallID(msg, id string) bool {
	return strings.Contains(msg, "\r\nCall-ID: "+id+"\r\n") || strings.Contains(msg, "\r\ni: "+id+"\r\n")
}
