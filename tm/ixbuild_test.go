package tm

import (
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/emiago/sipgo/sip"
	"github.com/stretchr/testify/require"

	"github.com/asyncsip/asyncsip/tm/internal/sipindex"
)

// ixCase is a request of the corpora with a clean index that the parsed
// path accepts too.
type ixCase struct {
	name string
	data []byte
}

// ixExtraRequests are typical SIPp and bench requests, and the forms the
// byte readers must read or refuse: To tags of every shape, Timestamp,
// Proxy-Require, Max-Forwards absent, Via parameters received and rport
// in every combination, IPv6, comma-separated Vias and Routes.
func ixExtraRequests() map[string]string {
	out := map[string]string{}
	add := func(name, raw string) { out[name] = raw }
	add("invite", invite("ix-inv", "z9hG4bK-ix0"))
	add("options", request("OPTIONS", "sip:bob@127.0.0.1:5062", "ix-opt", "z9hG4bK-ix1", 1, ""))
	add("register", request("REGISTER", "sip:127.0.0.1", "ix-reg", "z9hG4bK-ix2", 1, ""))
	add("bye-dialog", replaceTo(request("BYE", "sip:bob@127.0.0.1:5062", "ix-bye", "z9hG4bK-ix3", 2, "")))
	add("ack-dialog", replaceTo(request("ACK", "sip:bob@127.0.0.1:5062", "ix-ack", "z9hG4bK-ix4", 1, "")))
	add("cancel", request("CANCEL", "sip:bob@127.0.0.1:5062", "ix-can", "z9hG4bK-ix5", 1, ""))
	add("timestamp", request("OPTIONS", "sip:bob@127.0.0.1:5062", "ix-ts", "z9hG4bK-ix6", 1, "Timestamp: 54 0.2\nTimestamp: 7\n"))
	add("timestamp-case", request("INVITE", "sip:bob@127.0.0.1:5062", "ix-ts2", "z9hG4bK-ix7", 1, "tImEsTaMp:   99.5  \n"))
	add("proxy-require", request("INVITE", "sip:bob@127.0.0.1:5062", "ix-pr", "z9hG4bK-ix8", 1, "Proxy-Require: foo, bar\nproxy-require: baz\n"))
	add("proxy-require-empty", request("INVITE", "sip:bob@127.0.0.1:5062", "ix-pr2", "z9hG4bK-ix9", 1, "Proxy-Require: ,\n"))
	add("require-not-proxy", request("INVITE", "sip:bob@127.0.0.1:5062", "ix-pr3", "z9hG4bK-ixa", 1, "Require: 100rel\n"))
	add("no-max-forwards", strings.Replace(invite("ix-mf", "z9hG4bK-ixb"), "Max-Forwards: 70\r\n", "", 1))
	add("max-forwards-0", strings.Replace(invite("ix-mf0", "z9hG4bK-ixc"), "Max-Forwards: 70", "Max-Forwards: 0", 1))
	add("max-forwards-1", strings.Replace(invite("ix-mf1", "z9hG4bK-ixd"), "Max-Forwards: 70", "Max-Forwards: 1", 1))
	for i, to := range []string{
		"<sip:bob@127.0.0.1>;tag=b1",
		"<sip:bob@127.0.0.1>;TAG=b1",
		"<sip:bob@127.0.0.1>;tag",
		"<sip:bob@127.0.0.1>;x=1;tag=b2;y",
		"sip:bob@127.0.0.1;tag=b3",
		"sip:bob@127.0.0.1",
		`"Bob <the one>" <sip:bob@127.0.0.1>;tag=b4`,
		"<sip:bob@127.0.0.1;tag=uri>",
		"<sip:bob@127.0.0.1> ;tag=b5",
		`<sip:bob@127.0.0.1>;tag="q"`,
		"<sip:bob@127.0.0.1>;tag=b6;tag=b7",
	} {
		add("to-"+strconv.Itoa(i), strings.Replace(invite("ix-to"+strconv.Itoa(i), "z9hG4bK-ixt"+strconv.Itoa(i)), "To: <sip:bob@127.0.0.1>", "To: "+to, 1))
		add("from-"+strconv.Itoa(i), strings.Replace(invite("ix-fr"+strconv.Itoa(i), "z9hG4bK-ixf"+strconv.Itoa(i)), "From: <sip:alice@127.0.0.1>;tag=a1", "From: "+to, 1))
	}
	for i, via := range []string{
		"SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-v0",
		"SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-v1;rport",
		"SIP/2.0/UDP 127.0.0.1:5061;rport;branch=z9hG4bK-v2",
		"SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-v3;rport=5999",
		"SIP/2.0/UDP 10.0.0.1:5061;branch=z9hG4bK-v4;received=10.9.9.9",
		"SIP/2.0/UDP 10.0.0.1:5061;received;branch=z9hG4bK-v5;rport",
		"SIP/2.0/UDP 10.0.0.1:5061;branch=z9hG4bK-v6;received=10.9.9.9;rport",
		"SIP/2.0/UDP 10.0.0.1:5061;branch=z9hG4bK-v7;Received=10.9.9.9;RPORT",
		"SIP/2.0/UDP host.example.com;branch=z9hG4bK-v8;rport",
		"SIP/2.0/TCP [::1]:5061;branch=z9hG4bK-v9;rport",
		"SIP/2.0/UDP [2001:db8::1];branch=z9hG4bK-va",
		"SIP/2.0/UDP [2001:DB8::1]:5070;branch=z9hG4bK-vb;rport",
		"SIP/2.0/UDP [::ffff:127.0.0.1]:5061;branch=z9hG4bK-vc;rport",
		"SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-vd;rport, SIP/2.0/UDP 10.1.1.1:5060;branch=z9hG4bK-x",
		"SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-ve ;rport",
		"SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-vf;rport;rport",
		"SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-vg;x=\"a b\"",
		"SIP/2.0/udp 127.0.0.1:5061;branch=z9hG4bK-vh;rport",
	} {
		raw := strings.Replace(request("INVITE", "sip:bob@127.0.0.1:5062", "ix-via"+strconv.Itoa(i), "B", 1, "Via: SIP/2.0/UDP 10.2.2.2:5060;branch=z9hG4bK-second\n"),
			"SIP/2.0/UDP 127.0.0.1:5061;branch=B", via, 1)
		add("via-"+strconv.Itoa(i), raw)
	}
	// SIPp's uac scenario, as sent (every header on its own line).
	add("sipp-invite", strings.ReplaceAll(`INVITE sip:service@127.0.0.1:5060 SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-28421-1-0
From: sipp <sip:sipp@127.0.0.1:5061>;tag=28421SIPpTag001
To: service <sip:service@127.0.0.1:5060>
Call-ID: 1-28421@127.0.0.1
CSeq: 1 INVITE
Contact: sip:sipp@127.0.0.1:5061
Max-Forwards: 70
Subject: Performance Test
Content-Type: application/sdp
Content-Length:   129

v=0
o=user1 53655765 2353687637 IN IP4 127.0.0.1
s=-
c=IN IP4 127.0.0.1
t=0 0
m=audio 6000 RTP/AVP 0
a=rtpmap:0 PCMU/8000
`, "\n", "\r\n"))
	return out
}

// ixCases returns the requests of indexedCases and ixExtraRequests whose
// index is clean and that the parsed path accepts.
func ixCases(t *testing.T) []ixCase {
	all := indexedCases(t)
	for k, v := range ixExtraRequests() {
		all[k] = []byte(v)
	}
	for k, v := range looseCases(t, looseServer()) {
		all["loose-"+k] = []byte(v)
	}
	var ls loopState
	lim := indexLimits(Limits{}.withDefaults())
	var out []ixCase
	for name, data := range all {
		if !ls.index(data, lim) || !ls.ix.Request {
			continue
		}
		if _, err := seamVerdict(data); err != nil {
			continue
		}
		out = append(out, ixCase{name, data})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	require.Greater(t, len(out), 60)
	return out
}

// ixParse indexes c (the index is clean: ixCases checked) and parses it
// the parsed path's way.
func ixParse(t testing.TB, data []byte, ix *sipindex.Index) *sip.Request {
	t.Helper()
	var ls loopState
	require.True(t, ls.index(data, indexLimits(Limits{}.withDefaults())))
	*ix = ls.ix
	msg, err := seamVerdict(data)
	require.NoError(t, err)
	return msg.(*sip.Request)
}

// The index readers say what the parsed path reads, whenever they read.
func TestIxReadersMatchParser(t *testing.T) {
	read := map[string]int{}
	left := map[string]int{}
	for _, c := range ixCases(t) {
		var ix sipindex.Index
		req := ixParse(t, c.data, &ix)
		count := func(what string, ok bool) bool {
			if ok {
				read[what]++
			} else {
				left[what]++
			}
			return ok
		}
		if has, ok := ixHasToTag(&ix); count("hasToTag", ok) {
			require.Equal(t, hasToTag(req), has, "%s: hasToTag", c.name)
		}
		callID, fromTag := dialogIDs(req)
		require.Equal(t, callID, string(ixCallID(&ix)), "%s: Call-ID", c.name)
		if tag, ok := ixFromTag(&ix); count("fromTag", ok) {
			require.Equal(t, fromTag, string(tag), "%s: From tag", c.name)
		}
		if tag, ok := ixToTag(&ix); count("toTag", ok) {
			want, _ := req.To().Params.Get("tag")
			require.Equal(t, want, string(tag), "%s: To tag", c.name)
		}
		mf, ok := ixMaxForwards(&ix)
		if p := req.MaxForwards(); p != nil {
			require.True(t, ok, "%s: Max-Forwards present", c.name)
			require.EqualValues(t, *p, mf, "%s: Max-Forwards", c.name)
		} else {
			require.False(t, ok, "%s: Max-Forwards absent", c.name)
		}
		pr := proxyRequire(req)
		require.Equal(t, pr != "", ixProxyRequire(&ix), "%s: Proxy-Require present", c.name)
		require.Equal(t, pr, string(appendProxyRequire(nil, &ix)), "%s: Proxy-Require tags", c.name)
		if pr != "" {
			read["proxyRequire"]++
		}
		if rr, ok := ixRecordRoutable(&ix); count("recordRoutable", ok) {
			require.Equal(t, recordRoutable(req), rr, "%s: recordRoutable", c.name)
		}
		ts, ok := ixTimestamp(&ix)
		if h := req.GetHeader("Timestamp"); h != nil {
			require.True(t, ok, "%s: Timestamp present", c.name)
			require.Equal(t, h.Value(), ix.String(ts.Value), "%s: Timestamp", c.name)
			read["timestamp"]++
		} else {
			require.False(t, ok, "%s: Timestamp absent", c.name)
		}
		require.Equal(t, req.Method, ixMethod(&ix), "%s: method", c.name)
	}
	t.Logf("read %v, left to the parser %v", read, left)
	for _, what := range []string{"hasToTag", "fromTag", "toTag", "recordRoutable"} {
		require.Greater(t, read[what], 10*left[what], "%s: most messages are read from the index", what)
		require.NotZero(t, left[what], "%s: the corpus has forms left to the parser", what)
	}
	require.NotZero(t, read["proxyRequire"])
	require.NotZero(t, read["timestamp"])
}

// The readers allocate nothing for a standard method.
func TestIxReadersAllocateNothing(t *testing.T) {
	var ix sipindex.Index
	data := []byte(ixExtraRequests()["timestamp"])
	ixParse(t, data, &ix)
	allocs := testing.AllocsPerRun(100, func() {
		_, _ = ixHasToTag(&ix)
		_, _ = ixFromTag(&ix)
		_, _ = ixMaxForwards(&ix)
		_ = ixProxyRequire(&ix)
		_, _ = ixRecordRoutable(&ix)
		_, _ = ixTimestamp(&ix)
		_ = ixMethod(&ix)
	})
	require.Zero(t, allocs)
}

// ixSources are the addresses requests come from in the response and
// relay tests: the Via host itself or not, IPv4 and IPv6, and none.
var ixSources = []netip.AddrPort{
	netip.MustParseAddrPort("127.0.0.1:5061"),
	netip.MustParseAddrPort("192.0.2.7:40000"),
	netip.MustParseAddrPort("[::1]:5061"),
	netip.MustParseAddrPort("[2001:db8::1]:5070"),
	netip.MustParseAddrPort("[::ffff:127.0.0.1]:5061"),
	netip.MustParseAddrPort("10.0.0.1:5061"),
	{},
}

// headerList is a message's headers as sipgo reads them: lower-case
// canonical name and value, in order.
func headerList(m sip.Message) []string {
	var hs []sip.Header
	switch v := m.(type) {
	case *sip.Request:
		hs = v.Headers()
	case *sip.Response:
		hs = v.Headers()
	}
	out := make([]string, 0, len(hs))
	for _, h := range hs {
		out = append(out, strings.ToLower(h.Name())+": "+h.Value())
	}
	return out
}

// reparse reads wire the parsed path's way (gate, repairs, sipgo).
func reparse(t testing.TB, name string, wire []byte) sip.Message {
	t.Helper()
	m, err := parse(newParser(Limits{}), wire, Limits{})
	require.NoError(t, err, "%s: %q", name, wire)
	return m
}

// The response built from the index is the one makeResponse builds, read
// back by sipgo: same status, reason, headers (values in order), for every
// request of the corpora, source address, status and To tag.
func TestIxResponseMatchesMakeResponse(t *testing.T) {
	s := newRig(t, Config{}, Routes{}).s
	type variant struct {
		code          int
		reason, toTag string
		extra         []string
	}
	variants := []variant{
		{100, "Trying", "tt1", nil},
		{180, "Ringing", "", nil},
		{420, "Bad Extension", "xt-2", []string{"Unsupported", "foo, bar"}},
		{503, "Service Unavailable", "t3", []string{"Retry-After", "5"}},
		{481, "Call/Transaction Does Not Exist (request addressed to this proxy, no Route)", "t4", nil},
	}
	built, left := 0, 0
	var ix sipindex.Index
	for _, c := range ixCases(t) {
		for _, src := range ixSources {
			for _, v := range variants {
				req := ixParse(t, c.data, &ix)
				got, ok := appendIndexedResponse([]byte("junk"), &ix, src, v.code, v.reason, v.toTag, v.extra...)
				if !ok {
					require.Equal(t, "junk", string(got), "%s: dst unchanged when not built", c.name)
					left++
					continue
				}
				built++
				got = got[len("junk"):]
				markReceived(req, src)
				var hdrs []sip.Header
				for i := 0; i < len(v.extra); i += 2 {
					hdrs = append(hdrs, sip.NewHeader(v.extra[i], v.extra[i+1]))
				}
				want := (&writer{}).bytes(s.makeResponse(req, v.code, v.reason, v.toTag, hdrs...))
				name := c.name + " from " + src.String() + " " + strconv.Itoa(v.code)
				w := reparse(t, name, want).(*sip.Response)
				g := reparse(t, name, got).(*sip.Response)
				require.Equal(t, w.StatusCode, g.StatusCode, name)
				require.Equal(t, w.Reason, g.Reason, name)
				require.Equal(t, headerList(w), headerList(g), "%s\nparsed path:\n%s\nindex:\n%s", name, want, got)
			}
		}
	}
	t.Logf("%d responses built from the index, %d left to the parser", built, left)
	require.Greater(t, built, 5*left)
	require.NotZero(t, left)
}

// A 100 Trying built from the index allocates nothing.
func BenchmarkIxResponse(b *testing.B) {
	var ix sipindex.Index
	ixParse(b, []byte(ixExtraRequests()["sipp-invite"]), &ix)
	src := netip.MustParseAddrPort("127.0.0.1:5061")
	buf := make([]byte, 0, 2048)
	b.ReportAllocs()
	for b.Loop() {
		var ok bool
		if buf, ok = appendIndexedResponse(buf[:0], &ix, src, 100, "Trying", "tt"); !ok {
			b.Fatal("not built")
		}
	}
}

// The parsed path's 100 for the same request, for comparison.
func BenchmarkIxResponseParsed(b *testing.B) {
	data := []byte(ixExtraRequests()["sipp-invite"])
	src := netip.MustParseAddrPort("127.0.0.1:5061")
	p := newParser(Limits{})
	var w writer
	b.ReportAllocs()
	for b.Loop() {
		m, err := parse(p, data, Limits{})
		if err != nil {
			b.Fatal(err)
		}
		req := m.(*sip.Request)
		markReceived(req, src)
		_ = w.bytes((*Server)(nil).makeResponse(req, 100, "Trying", "tt"))
	}
}

func BenchmarkIxReaders(b *testing.B) {
	var ix sipindex.Index
	ixParse(b, []byte(ixExtraRequests()["sipp-invite"]), &ix)
	b.ReportAllocs()
	for b.Loop() {
		_, _ = ixHasToTag(&ix)
		_, _ = ixFromTag(&ix)
		_, _ = ixMaxForwards(&ix)
		_ = ixProxyRequire(&ix)
		_, _ = ixRecordRoutable(&ix)
		_, _ = ixTimestamp(&ix)
		_ = ixMethod(&ix)
	}
}

// plainIPv6 and parseIPv4 accept only what netip reads, as netip reads it.
func TestIxPlainIPAgreesWithNetip(t *testing.T) {
	for _, s := range []string{
		"::", "::1", "1::", "2001:db8::1", "2001:DB8:0:0:0:0:0:1", "1:2:3:4:5:6:7:8", "1:2:3:4:5:6:7::",
		"::ffff:127.0.0.1", "64:ff9b::192.0.2.33", "1:2:3:4:5:6:1.2.3.4", "0000:", "1:2:3:4:5:6:7:8:9",
		"1::2::3", ":1::", "1:", ":", "12345::", "1:2:3:4:5:6:7", "::1.2.3", "::01.2.3.4", "fe80::1%eth0",
		"::g", "1:2:3:4:5:6:7:8::", "::1:2:3:4:5:6:7", "1.2.3.4", "", ":::",
	} {
		a, err := netip.ParseAddr(s)
		want := err == nil && a.Is6() && a.Zone() == ""
		require.Equal(t, want, plainIPv6([]byte(s)), "%q", s)
	}
	for _, s := range []string{"127.0.0.1", "0.0.0.0", "255.255.255.255", "256.1.1.1", "01.1.1.1", "1.1.1", "1.1.1.1.", "1..1.1", "a.b.c.d", "1.1.1.1 ", ""} {
		a, err := netip.ParseAddr(s)
		got, ok := parseIPv4([]byte(s))
		require.Equal(t, err == nil && a.Is4(), ok, "%q", s)
		if ok {
			require.Equal(t, a, got, "%q", s)
		}
	}
}

// FuzzIxResponse runs appendIndexedResponse and makeResponse on the same
// bytes: where the index is clean, the parsed path accepts and the index
// builds the response, sipgo reads the same response from both.
func FuzzIxResponse(f *testing.F) {
	seedCorpus(f)
	for _, raw := range ixExtraRequests() {
		f.Add([]byte(raw))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var ls loopState
		if !ls.index(data, indexLimits(Limits{}.withDefaults())) || !ls.ix.Request {
			return
		}
		msg, err := seamVerdict(data)
		if err != nil || !roundTrips(t, data) {
			return // the parsed path rewrites the request's headers
		}
		req := msg.(*sip.Request)
		src := ixSources[len(data)%len(ixSources)]
		code := []int{100, 180, 403, 503}[len(data)%4]
		got, ok := appendIndexedResponse(nil, &ls.ix, src, code, "Some Reason", "tt-9")
		if !ok {
			return
		}
		markReceived(req, src)
		want := (&writer{}).bytes((*Server)(nil).makeResponse(req, code, "Some Reason", "tt-9"))
		w, werr := parse(newParser(Limits{}), want, Limits{})
		if werr != nil {
			return // the parsed path sends what sipgo cannot read back
		}
		g := reparse(t, "fuzz input", got).(*sip.Response)
		require.Equal(t, w.(*sip.Response).StatusCode, g.StatusCode)
		require.Equal(t, headerList(w), headerList(g), "parsed path:\n%s\nindex:\n%s", want, got)
	})
}

// indexedResponseAddr (lazy.go), for a request whose top Via plainVia
// reads, is responseAddr: where the server transaction answers.
func TestIxResponseAddrMatches(t *testing.T) {
	var ix sipindex.Index
	read := 0
	for _, c := range ixCases(t) {
		for _, src := range ixSources[:6] {
			req := ixParse(t, c.data, &ix)
			if _, _, ok := plainVia(ix.Bytes(ix.TopVia)); !ok || !topViaReadable(&ix) {
				continue
			}
			read++
			require.Equal(t, responseAddr(req, src), indexedResponseAddr(&ix, src), "%s from %s", c.name, src)
		}
	}
	require.NotZero(t, read)
}
