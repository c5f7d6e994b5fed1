package tm

import (
	"bytes"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/asyncsip/asyncsip/reactor"
)

// The RFC 4475 and RFC 5118 torture messages, each sent once through the
// real transaction layer and proxy core on a manual loop, with the route of
// a plain proxy (relay to the Request-URI, or the Route). Every message has
// the outcome the RFC asks of it:
//
//   - fwd: a valid request, relayed once to next hop `hop` and proxied
//     correctly: start line, Call-ID and body unchanged byte for byte, our
//     Via on top of every Via received, Max-Forwards one less (or 70), the
//     result parses — plus the checks of `check`.
//   - a status code: answered once, to the source, and nothing forwarded;
//     answered statelessly (4xx/5xx but 420 and 483), never larger than the
//     request.
//   - drop: nothing sent at all.
//   - resp: a response, matched to a client transaction (see tortureResponse).
//
// Where the RFC lets an element choose (be liberal or reject), the note says
// which choice this proxy makes. Where the RFC describes what a UAS or a
// registrar does (415, 406, 401...), a proxy forwards: the note says so.

// torture is one message and what it must provoke.
type torture struct {
	file  string // under testdata
	sec   string // RFC section
	want  string // "fwd", "drop", "resp" or a status code
	hop   string // fwd: the next hop
	note  string
	check func(t *testing.T, out string) // fwd: the forwarded request as sent
}

const docNet = "192.0.2.99:5060" // where DNS names resolve in this test (TEST-NET-1)

var rfc4475 = []torture{
	{file: "valid/wsinv", sec: "3.1.1.1", want: "fwd", hop: docNet, note: "next hop from Route (services.example.com)",
		check: func(t *testing.T, out string) {
			m := parseOut(t, out)
			tag, _ := m.To().Params.Get("tag")
			assert.Equal(t, "1918181833n", tag, "To tag read through the whitespace around ;/=")
			tag, _ = m.From().Params.Get("tag")
			assert.Equal(t, "98asjd8", tag)
			assert.Equal(t, `"J Rosenberg \\\""`, `"`+m.From().DisplayName+`"`)
			assert.Equal(t, []string{"127.0.0.1:5060;z9hG4bK", "192.0.2.2;390skdjuw", "spindle.example.com;z9hG4bK9ikj8", "192.168.255.111;z9hG4bK30239"}, viaList(m))
			assert.Contains(t, out, "Route: <sip:services.example.com;lr;unknownwith=value;unknown-no-value>\r\n")
			c := m.GetHeader("Contact").(*sip.ContactHeader)
			q, _ := c.Params.Get("q")
			nv, _ := c.Params.Get("newparam")
			assert.Equal(t, []string{"0.33", "newvalue"}, []string{q, nv})
			assert.Contains(t, out, "NewFangledHeader: newfangled value continued newfangled value\r\n")
		}},
	{file: "valid/intmeth", sec: "3.1.1.2", want: "fwd", hop: docNet, note: "methods are case-sensitive: not upper-cased",
		check: func(t *testing.T, out string) {
			assert.Contains(t, out, "CSeq: 139122385 !interesting-Method0123456789_*+`.%indeed'~\r\n")
			assert.Contains(t, out, "extensionHeader-!.%*+_`'~: \xef\xbb\xbf\xe5\xa4\xa7\xe5\x81\x9c\xe9\x9b\xbb\r\n")
		}},
	{file: "valid/esc01", sec: "3.1.1.3", want: "fwd", hop: docNet, note: "escapes forwarded as they are",
		check: func(t *testing.T, out string) {
			assert.Contains(t, out, "<sip:%75se%72@example.com>")
			assert.Contains(t, out, "<sip:I%20have%20spaces@example.net>;tag=938")
			assert.Contains(t, out, "<sip:cal%6Cer@host5.example.net;%6C%72;n%61me=v%61lue%25%34%31>")
		}},
	{file: "valid/escnull", sec: "3.1.1.4", want: "fwd", hop: docNet, check: func(t *testing.T, out string) {
		assert.NotContains(t, out, "\x00", "%00 stays an escape")
		assert.Contains(t, out, "<sip:%00%00@host5.example.com>")
	}},
	{file: "valid/esc02", sec: "3.1.1.5", want: "fwd", hop: docNet, note: "RE%47IST%45R is an unknown method, not REGISTER; a proxy forwards it",
		check: func(t *testing.T, out string) {
			assert.Contains(t, out, "C%6Fntact: <sip:alias2@host2.example.com>\r\n")
			assert.Len(t, parseOut(t, out).GetHeaders("Contact"), 2)
		}},
	{file: "valid/lwsdisp", sec: "3.1.1.6", want: "fwd", hop: docNet, check: func(t *testing.T, out string) {
		assert.Equal(t, "caller", parseOut(t, out).From().DisplayName)
	}},
	{file: "valid/longreq", sec: "3.1.1.7", want: "fwd", hop: docNet, note: "34 Vias: the default MaxVias (64) admits them",
		check: func(t *testing.T, out string) {
			assert.Len(t, viaList(parseOut(t, out)), 35)
		}},
	{file: "valid/dblreq", sec: "3.1.1.8", want: "fwd", hop: docNet, note: "only the REGISTER: octets after Content-Length are ignored (RFC 3261 §18.3)",
		check: func(t *testing.T, out string) {
			assert.True(t, strings.HasPrefix(out, "REGISTER "))
			assert.NotContains(t, out, "INVITE")
		}},
	{file: "valid/semiuri", sec: "3.1.1.9", want: "fwd", hop: docNet, check: func(t *testing.T, out string) {
		assert.Equal(t, "user;par=u%40example.net", parseOut(t, out).Recipient.User)
	}},
	{file: "valid/transports", sec: "3.1.1.10", want: "fwd", hop: docNet, check: func(t *testing.T, out string) {
		var tps []string
		for _, h := range parseOut(t, out).GetHeaders("Via")[1:] {
			tps = append(tps, h.(*sip.ViaHeader).Transport)
		}
		assert.Equal(t, []string{"UDP", "SCTP", "TLS", "UNKNOWN", "TCP"}, tps)
	}},
	{file: "valid/mpart01", sec: "3.1.1.11", want: "fwd", hop: "127.0.0.1:5080", note: "next hop from its Route, a strict router (no ;lr): the Request-URI is rewritten for it (§16.6 step 7); the binary multipart body is checked byte for byte"},
	{file: "valid/unreason", sec: "3.1.1.12", want: "resp", note: "relayed upstream with its reason phrase and body"},
	{file: "valid/noreason", sec: "3.1.1.13", want: "resp", note: "a 100: absorbed hop by hop, and it stops INVITE retransmissions"},

	{file: "invalid/badinv01", sec: "3.1.2.1", want: "400"},
	{file: "invalid/clerr", sec: "3.1.2.2", want: "400", note: "over UDP"},
	{file: "invalid/ncl", sec: "3.1.2.3", want: "400"},
	{file: "invalid/scalar02", sec: "3.1.2.4", want: "400", note: "CSeq above 2**32-1"},
	{file: "invalid/scalarlg", sec: "3.1.2.5", want: "drop", note: "a response: discarded"},
	{file: "invalid/quotbal", sec: "3.1.2.6", want: "400"},
	{file: "invalid/ltgtruri", sec: "3.1.2.7", want: "400"},
	{file: "invalid/lwsruri", sec: "3.1.2.8", want: "400"},
	{file: "invalid/lwsstart", sec: "3.1.2.9", want: "400", note: "rejecting is acceptable; we do not guess"},
	{file: "invalid/trws", sec: "3.1.2.10", want: "400", note: "rejecting is acceptable"},
	{file: "invalid/escruri", sec: "3.1.2.11", want: "400", note: "rejected rather than forwarding a Request-URI with headers"},
	{file: "invalid/baddate", sec: "3.1.2.12", want: "fwd", hop: docNet, note: "liberal, as allowed: a proxy does not use Date, forwarded unchanged",
		check: func(t *testing.T, out string) { assert.Contains(t, out, "Date: Fri, 01 Jan 2010 16:00:00 EST\r\n") }},
	{file: "invalid/regbadct", sec: "3.1.2.13", want: "fwd", hop: docNet, note: "liberal, as allowed: the brackets are inferred (no ambiguity here) and the URI header stays inside them",
		check: func(t *testing.T, out string) {
			assert.Contains(t, out, "Contact: <sip:user@example.com?Route=%3Csip:sip.example.com%3E>\r\n")
		}},
	{file: "invalid/badaspec", sec: "3.1.2.14", want: "400"},
	{file: "invalid/baddn", sec: "3.1.2.15", want: "400", note: "the archive's file also lacks the empty line after the headers"},
	{file: "invalid/badvers", sec: "3.1.2.16", want: "505"},
	{file: "invalid/mismatch01", sec: "3.1.2.17", want: "400"},
	{file: "invalid/mismatch02", sec: "3.1.2.18", want: "501", note: "501 rather than 400: better future-proof at proxies, says the RFC"},
	{file: "invalid/bigcode", sec: "3.1.2.19", want: "drop", note: "a response: dropped"},

	{file: "invalid/badbranch", sec: "3.2.1", want: "fwd", hop: docNet, note: "either is allowed: we fall back to RFC 2543 transaction matching (a retransmission is absorbed)"},

	{file: "invalid/insuf", sec: "3.3.1", want: "drop", note: "\"ideally\" 400, but a response must copy From, To and Call-ID (RFC 3261 §8.2.6.2), which are missing: dropped, counted"},
	{file: "invalid/unkscm", sec: "3.3.2", want: "416"},
	{file: "invalid/novelsc", sec: "3.3.3", want: "416", note: "a proxy that never routes soap.beep: treats it as unknown"},
	{file: "invalid/unksm2", sec: "3.3.4", want: "fwd", hop: docNet, note: "a proxy treats it as any other request (a registrar would 400)",
		check: func(t *testing.T, out string) {
			for _, s := range []string{"isbn:2983792873", "http://www.example.com", "name:John_Smith"} {
				assert.Contains(t, out, s)
			}
		}},
	{file: "invalid/bext01", sec: "3.3.5", want: "420", note: "Proxy-Require: Unsupported lists its two option tags"},
	{file: "invalid/invut", sec: "3.3.6", want: "fwd", hop: docNet, note: "415 is a UAS's answer; a proxy forwards",
		check: func(t *testing.T, out string) { assert.Contains(t, out, "Content-Type: application/unknownformat\r\n") }},
	{file: "invalid/regaut01", sec: "3.3.7", want: "fwd", hop: docNet, note: "Authorization forwarded unmodified",
		check: func(t *testing.T, out string) {
			assert.Contains(t, out, "Authorization: NoOneKnowsThisScheme opaque-data=here\r\n")
		}},
	{file: "invalid/multi01", sec: "3.3.8", want: "400"},
	{file: "invalid/mcl01", sec: "3.3.9", want: "400"},
	{file: "invalid/bcast", sec: "3.3.10", want: "resp", note: "dropped: never sent to 255.255.255.255, even when the top Via is ours"},
	{file: "invalid/zeromf", sec: "3.3.11", want: "483"},
	{file: "invalid/cparam01", sec: "3.3.12", want: "fwd", hop: docNet, note: "unknownparam stays a contact-param",
		check: func(t *testing.T, out string) {
			assert.Contains(t, out, "Contact: <sip:+19725552222@gw1.example.net>;unknownparam\r\n")
		}},
	{file: "invalid/cparam02", sec: "3.3.13", want: "fwd", hop: docNet, note: "unknownparam stays a URI parameter",
		check: func(t *testing.T, out string) {
			assert.Contains(t, out, "Contact: <sip:+19725552222@gw1.example.net;unknownparam>\r\n")
		}},
	{file: "invalid/regescrt", sec: "3.3.14", want: "fwd", hop: docNet, check: func(t *testing.T, out string) {
		assert.Contains(t, out, "Contact: <sip:user@example.com?Route=%3Csip:sip.example.com%3E>\r\n")
	}},
	{file: "invalid/sdp01", sec: "3.3.15", want: "fwd", hop: docNet, note: "406 or 400 is a UAS's answer; a proxy forwards",
		check: func(t *testing.T, out string) { assert.Contains(t, out, "Accept: text/nobodyKnowsThis\r\n") }},
	{file: "invalid/inv2543", sec: "3.4.1", want: "fwd", hop: docNet, note: "no branch, no From tag, no Content-Length, no Max-Forwards: accepted for backward compatibility",
		check: func(t *testing.T, out string) {
			m := parseOut(t, out)
			assert.EqualValues(t, 70, *m.MaxForwards(), "Max-Forwards added")
			assert.Contains(t, out, "Via: SIP/2.0/UDP iftgw.example.com;received=")
		}},
}

var rfc5118 = []torture{
	{file: "ipv6-good", sec: "4.1", want: "fwd", hop: "[2001:db8::10]:5060", check: func(t *testing.T, out string) {
		assert.Contains(t, out, "Via: SIP/2.0/UDP [2001:db8::9:1];branch=z9hG4bKas3-111")
		assert.Contains(t, out, `Contact: "Caller" <sip:caller@[2001:db8::1]>`)
	}},
	{file: "ipv6-bad", sec: "4.2", want: "400"},
	{file: "port-ambiguous", sec: "4.3", want: "fwd", hop: "[2001:db8::10:5070]:5060", note: "the port is part of the address, as the RFC warns"},
	{file: "port-unambiguous", sec: "4.4", want: "fwd", hop: "[2001:db8::10]:5070"},
	{file: "via-received-param-with-delim", sec: "4.5", want: "fwd", hop: "[2001:db8::10]:5060", note: "received read with its brackets",
		check: func(t *testing.T, out string) { assert.Contains(t, out, "Via: SIP/2.0/UDP [2001:db8::9:1];received=") }},
	{file: "via-received-param-no-delim", sec: "4.5", want: "fwd", hop: "[2001:db8::10]:5060",
		check: func(t *testing.T, out string) { assert.Contains(t, out, "Via: SIP/2.0/UDP [2001:db8::9:1];received=") }},
	{file: "ipv6-in-sdp", sec: "4.6", want: "fwd", hop: "[2001:db8::10]:5060"},
	{file: "mult-ip-in-header", sec: "4.7", want: "fwd", hop: docNet, check: func(t *testing.T, out string) {
		for _, v := range []string{"[2001:db8::9:1]:6050;branch=z9hG4bKas3-111", "192.0.2.1;branch=z9hG4bKjhja8781hjuaij65144",
			"Via: SIP/2.0/TCP [2001:db8::9:255];branch=z9hG4bK451jj;received=192.0.2.200\r\n"} {
			assert.Contains(t, out, v)
		}
	}},
	{file: "mult-ip-in-sdp", sec: "4.8", want: "fwd", hop: "[2001:db8::10]:5060"},
	{file: "ipv4-mapped-ipv6", sec: "4.9", want: "fwd", hop: docNet, note: "the mapped Via hosts keep their brackets",
		check: func(t *testing.T, out string) {
			assert.Contains(t, out, "Via: SIP/2.0/UDP [::ffff:192.0.2.10]:19823;branch=z9hG4bKbh19")
			assert.Contains(t, out, "Via: SIP/2.0/UDP [::ffff:192.0.2.2];branch=z9hG4bKas3-111\r\n")
			assert.Contains(t, out, `<sip:ted@[::ffff:192.0.2.2]>`)
		}},
	{file: "ipv6-bug-abnf-3-colons", sec: "4.10", want: "fwd", hop: "[2001:db8::c000:201]:5060", note: "tolerated, routed to the address it means; forwarded as received"},
	{file: "ipv6-correct-abnf-2-colons", sec: "4.10", want: "fwd", hop: "[2001:db8::c000:201]:5060"},
}

func TestRFC4475(t *testing.T) { runTorture(t, "rfc4475", rfc4475, uacAddr) }

func TestRFC5118(t *testing.T) {
	runTorture(t, "rfc5118", rfc5118, netip.MustParseAddrPort("[::1]:5061"))
}

func runTorture(t *testing.T, dir string, cases []torture, src netip.AddrPort) {
	files, err := filepath.Glob(filepath.Join("testdata", dir, "*.dat"))
	require.NoError(t, err)
	more, _ := filepath.Glob(filepath.Join("testdata", dir, "*", "*.dat"))
	files = append(files, more...)
	var onDisk, inTable []string
	for _, f := range files {
		onDisk = append(onDisk, strings.TrimSuffix(filepath.ToSlash(strings.TrimPrefix(f, filepath.Join("testdata", dir)+"/")), ".dat"))
	}
	for _, c := range cases {
		inTable = append(inTable, c.file)
	}
	sort.Strings(onDisk)
	sort.Strings(inTable)
	require.Equal(t, onDisk, inTable, "every message has an expectation and every expectation a message")

	for _, tc := range cases {
		t.Run(tc.sec+"_"+filepath.Base(tc.file), func(t *testing.T) {
			raw, err := os.ReadFile(filepath.Join("testdata", dir, tc.file+".dat"))
			require.NoError(t, err)
			r := newTortureRig(t)
			if tc.want == "resp" {
				tortureResponse(t, r, filepath.Base(tc.file), raw)
				r.drained(t)
				return
			}
			r.s.Receive(r.l, raw, src, r.tpFor(src))
			r.l.RunPending()
			out := r.take()
			switch tc.want {
			case "drop":
				assert.Empty(t, out, "nothing sent")
			case "fwd":
				checkForward(t, tc, raw, src, out)
			default:
				require.Len(t, out, 1, "one answer: %s", describe(out))
				assert.Equal(t, src.Addr(), out[0].to.Addr(), "answered to the source")
				assert.True(t, strings.HasPrefix(string(out[0].b), "SIP/2.0 "+tc.want+" "), "got %q", firstLine(out[0].b))
				if tc.want != "483" && tc.want != "420" {
					// Stateless answers to invalid input are never larger
					// than the request. 483 and 420 answer a well-formed
					// request on its transaction, as RFC 3261 §16.3 says.
					assert.LessOrEqual(t, len(out[0].b), len(raw), "no amplification")
				}
				if tc.want == "420" {
					assert.Contains(t, string(out[0].b), "Unsupported: noProxiesSupportThis, norDoAnyProxiesSupportThis\r\n")
				}
			}
			if filepath.Base(tc.file) == "badbranch" || filepath.Base(tc.file) == "inv2543" {
				r.s.Receive(r.l, raw, src, r.tpFor(src)) // a retransmission
				r.l.RunPending()
				for _, s := range r.take() {
					assert.NotEqual(t, tc.hop, s.to.String(), "a retransmission is absorbed, not forwarded again")
				}
			}
			r.drained(t)
		})
	}
}

// checkForward checks a request the proxy must relay once to tc.hop.
func checkForward(t *testing.T, tc torture, raw []byte, src netip.AddrPort, out []rawSent) {
	t.Helper()
	var fwd []rawSent
	for _, s := range out {
		if bytes.HasPrefix(s.b, []byte("SIP/2.0 100 ")) && s.to.Addr() == src.Addr() {
			continue // 100 Trying upstream for an INVITE
		}
		fwd = append(fwd, s)
	}
	require.Len(t, fwd, 1, "forwarded once: %s", describe(out))
	require.Equal(t, tc.hop, fwd[0].to.String(), "next hop")
	got := string(fwd[0].b)
	if tc.file == "valid/mpart01" {
		// Its Route has no ;lr: the next hop is a strict router, so the
		// Request-URI moves to the end of the Route set and the router's
		// URI becomes the Request-URI (RFC 3261 §16.6 step 7).
		assert.Equal(t, "MESSAGE sip:127.0.0.1:5080 SIP/2.0", firstLine(fwd[0].b))
		assert.Contains(t, string(fwd[0].b), "Route: <sip:kumiko@example.org>")
	} else {
		assert.Equal(t, firstLine(raw), firstLine(fwd[0].b), "start line unchanged")
	}
	in, err := sip.ParseMessage(repairSWS(bodyCut(raw)))
	require.NoError(t, err)
	m := parseOut(t, got)
	assert.Equal(t, *in.CallID(), *m.CallID())
	assert.Equal(t, in.Body(), m.Body(), "body unchanged")
	want := 70
	if mf := in.(*sip.Request).MaxForwards(); mf != nil {
		want = int(*mf) - 1
	}
	assert.EqualValues(t, want, *m.MaxForwards())
	vias := viaList(m)
	assert.Len(t, vias, len(in.GetHeaders("Via"))+1)
	assert.Equal(t, "z9hG4bK", vias[0][strings.IndexByte(vias[0], ';')+1:], "our Via on top")
	if tc.check != nil {
		tc.check(t, got)
	}
}

// tortureResponse sends a torture response to the proxy. As received, its
// top Via is not ours, so it is dropped. Then, like a response to a request
// the proxy relayed, with our Via inserted above the message's own: unreason
// (200) goes upstream unchanged, noreason (100) is absorbed and stops the
// INVITE retransmissions. bcast is received by a proxy that owns its top
// Via, and must still go nowhere.
func tortureResponse(t *testing.T, r *tortureRig, name string, raw []byte) {
	r.s.Receive(r.l, raw, uasAddr, r.v4)
	r.l.RunPending()
	require.Empty(t, r.take(), "a response matching nothing of ours is dropped")

	if name == "bcast" {
		// Be the proxy whose Via is on top (192.0.2.198): its branch has
		// our prefix but not our MAC, so it is dropped before the next
		// Via (the broadcast address) is even resolved.
		r.s.tag = "132492"
		r.s.Receive(r.l, raw, uasAddr, r.v4)
		r.l.RunPending()
		assert.Empty(t, r.take(), "never relayed to the broadcast address")
		st := r.s.Stats()
		assert.NotZero(t, st.DropRoute+st.DropVia+st.DropStray, "counted as a drop")
		return
	}
	var branch string
	{
		r.s.Receive(r.l, []byte(invite("tr-"+name, "z9hG4bK-tr")), uacAddr, r.v4)
		r.l.RunPending()
		out := r.take()
		require.Len(t, out, 2, describe(out))
		m := parseOut(t, string(out[1].b))
		branch, _ = m.Via().Params.Get("branch")
	}
	eol := bytes.Index(raw, []byte("\r\n")) + 2
	ours := append(append(append([]byte{}, raw[:eol]...), "Via: SIP/2.0/UDP 127.0.0.1:5060;branch="+branch+"\r\n"...), raw[eol:]...)
	r.s.Receive(r.l, ours, uasAddr, r.v4)
	r.l.RunPending()
	out := r.take()
	switch name {
	case "unreason":
		require.Len(t, out, 1, describe(out))
		assert.Equal(t, uacAddr.Addr(), out[0].to.Addr())
		assert.Equal(t, firstLine(raw), firstLine(out[0].b), "reason phrase unchanged")
		assert.True(t, bytes.HasSuffix(out[0].b, raw[bytes.Index(raw, []byte("\r\n\r\n"))+4:]), "body unchanged")
	case "noreason":
		assert.Empty(t, out, "a 100 is hop by hop")
		r.l.Advance(r.s.timers.T1 * 4)
		assert.Empty(t, r.take(), "Timer A stopped: no INVITE retransmission")
		r.l.Advance(r.s.timers.TimerC + time.Second) // Timer C ends the branch (408 upstream)
		r.take()
	}
}

type rawSent struct {
	to netip.AddrPort
	b  []byte
}

// tortureTP records raw datagrams (the fake transport of the rig parses
// them, which a 400 to an unparsable request may defeat).
type tortureTP struct {
	host  string
	local netip.AddrPort
	out   *[]rawSent
}

func (f *tortureTP) Send(_ *reactor.Loop, b []byte, to netip.AddrPort) error {
	*f.out = append(*f.out, rawSent{to, append([]byte(nil), b...)})
	return nil
}
func (f *tortureTP) Protocol() string          { return "UDP" }
func (f *tortureTP) Advertised() (string, int) { return f.host, int(f.local.Port()) }
func (f *tortureTP) LocalAddr() netip.AddrPort { return f.local }

type tortureRig struct {
	l      *reactor.Loop
	s      *Server
	v4, v6 *tortureTP
	out    []rawSent
}

func newTortureRig(t *testing.T) *tortureRig {
	r := &tortureRig{l: reactor.NewManual(reactor.NewFakeClock(time.Unix(1_700_000_000, 0)))}
	r.v4 = &tortureTP{host: "127.0.0.1", local: proxyAddr, out: &r.out}
	r.v6 = &tortureTP{host: "::1", local: netip.MustParseAddrPort("[::1]:5060"), out: &r.out}
	resolver := func(host string) (netip.Addr, error) {
		if a, err := literalResolver(host); err == nil {
			return a, nil
		}
		return netip.MustParseAddr("192.0.2.99"), nil
	}
	// The torture messages test §16 routing, Route headers included, and
	// several carry a To tag of no dialog of ours: the route follows a
	// sender's Route and unsigned in-dialog requests explicitly (tm
	// refuses both by default; security_test.go covers that).
	follow := func(c *Context) { c.FollowRoute(); _ = c.Relay() }
	r.s = NewServer([]*reactor.Loop{r.l}, Config{Resolver: resolver, Security: Security{AllowUnsignedInDialog: true}},
		Routes{Request: follow})
	r.s.AddTransport(r.v4)
	r.s.AddTransport(r.v6)
	return r
}

func (r *tortureRig) tpFor(src netip.AddrPort) Transport {
	if src.Addr().Is4() {
		return r.v4
	}
	return r.v6
}

func (r *tortureRig) take() []rawSent {
	out := r.out
	r.out = nil
	return out
}

// drained runs every timer out and checks that no transaction is left.
func (r *tortureRig) drained(t *testing.T) {
	t.Helper()
	r.l.Advance(10 * time.Minute)
	ls := r.s.loops[0]
	assert.Empty(t, ls.stx, "server transactions left")
	assert.Empty(t, ls.ctx, "client transactions left")
	assert.Zero(t, r.s.Stats().InProgress)
}

func parseOut(t *testing.T, out string) *sip.Request {
	t.Helper()
	m, err := sip.ParseMessage([]byte(out))
	require.NoError(t, err, "the proxy sent an unparsable message:\n%s", out)
	req, ok := m.(*sip.Request)
	require.True(t, ok)
	return req
}

// viaList is "host[:port];branch" for each Via value.
func viaList(m sip.Message) []string {
	var out []string
	for _, h := range m.GetHeaders("Via") {
		v := h.(*sip.ViaHeader)
		br, _ := v.Params.Get("branch")
		if strings.HasPrefix(br, "z9hG4bK") && strings.Contains(br, ".") {
			br = "z9hG4bK" // ours: the rest is random
		}
		hp := v.Host
		if v.Port > 0 {
			hp += ":" + strconv.Itoa(v.Port)
		}
		out = append(out, hp+";"+br)
	}
	return out
}

// bodyCut drops what follows Content-Length in a datagram (dblreq).
func bodyCut(raw []byte) []byte {
	m, err := sip.ParseMessage(repairSWS(raw))
	if err != nil || m.ContentLength() == nil {
		return raw
	}
	end := bytes.Index(raw, []byte("\r\n\r\n")) + 4
	return raw[:end+int(*m.ContentLength())]
}

func firstLine(b []byte) string {
	if i := bytes.Index(b, []byte("\r\n")); i >= 0 {
		return string(b[:i])
	}
	return string(b)
}

func describe(out []rawSent) string {
	var s []string
	for _, o := range out {
		s = append(s, fmt.Sprintf("%s %q", o.to, firstLine(o.b)))
	}
	return "[" + strings.Join(s, ", ") + "]"
}
