package tm

import (
	"net/netip"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/emiago/sipgo/sip"
	"github.com/stretchr/testify/require"

	"github.com/asyncsip/asyncsip/tm/internal/sipindex"
)

// spliceVariant is one way a branch leaves: a new Request-URI or not,
// zero, one or two Record-Route values, Max-Forwards added or not (Relay
// or Forward), the first k Route values removed.
type spliceVariant struct {
	ruri   string
	rr     int
	addMF  bool
	routes int
}

// spliceRef is what the parsed path sends for data from src as v says:
// startBranch's (or Forward's) clone of the request after markReceived
// and looseRoute's Route removal, serialized by tm's writer. It returns
// too the values given to appendSplicedRequest (ixSplice without Cuts).
func spliceRef(t testing.TB, s *Server, data []byte, src netip.AddrPort, v spliceVariant) ([]byte, ixSplice) {
	t.Helper()
	msg, err := seamVerdict(data)
	require.NoError(t, err)
	req := msg.(*sip.Request)
	markReceived(req, src)
	for i := 0; i < v.routes; i++ {
		req.RemoveHeader("Route")
	}
	out := req.Clone()
	sp := ixSplice{AddMaxForwards: v.addMF, Src: src}
	if v.ruri != "" {
		var u sip.Uri
		require.NoError(t, sip.ParseUri(v.ruri, &u))
		out.Recipient = u
		sp.RURI = v.ruri
	}
	if mf := out.MaxForwards(); mf != nil {
		n := *mf - 1
		out.ReplaceHeader(&n)
	} else if v.addMF {
		n := sip.MaxForwardsHeader(70)
		out.AppendHeader(&n)
	}
	tps := []Transport{&fakeTP{}, &fakeStream{proto: "TCP", port: 5070}}
	for i := v.rr - 1; i >= 0; i-- {
		var tok string
		if i == 0 && v.rr == 2 {
			tok = s.flowToken(netip.MustParseAddrPort("192.0.2.50:7000"))
		}
		rr := rrHeader(tps[i], tok)
		s.signRecordRoute(rr, req)
		out.PrependHeader(rr)
		sp.RR[i] = rr.Value()
	}
	via := &sip.ViaHeader{ProtocolName: "SIP", ProtocolVersion: "2.0", Transport: "UDP",
		Host: "127.0.0.1", Port: 5060, Params: sip.HeaderParams{{K: "branch", V: "z9hG4bK-ours-1"}}}
	out.PrependHeader(via)
	sp.Via = via.Value()
	return append([]byte(nil), (&writer{}).bytes(out)...), sp
}

// sameRequest requires want and got, read back by the parsed path, to be
// the same request: start line, headers (name and value, in order), body.
func sameRequest(t testing.TB, name string, want, got []byte) {
	t.Helper()
	w := reparse(t, name, want).(*sip.Request)
	g := reparse(t, name, got).(*sip.Request)
	require.Equal(t, w.StartLine(), g.StartLine(), name)
	require.Equal(t, headerList(w), headerList(g), "%s\nparsed path:\n%s\nindex:\n%s", name, want, got)
	require.Equal(t, w.Body(), g.Body(), name)
}

// roundTrips reports whether sipgo reads back what it writes for data:
// the parsed path sends data's headers rewritten in sipgo's formatting,
// and on some inputs outside the grammar (a From "AA:0>") that rewrite
// changes them. There the splice, which sends the bytes as received, is
// not held to the parsed path's output.
func roundTrips(t testing.TB, data []byte) bool {
	msg, err := seamVerdict(data)
	require.NoError(t, err)
	wire := (&writer{}).bytes(msg)
	back, err := parse(newParser(Limits{}), wire, Limits{})
	if err != nil {
		return false
	}
	r1, ok1 := msg.(*sip.Request)
	r2, ok2 := back.(*sip.Request)
	return ok1 && ok2 && slices.Equal(headerList(msg), headerList(back)) && r1.StartLine() == r2.StartLine()
}

// routeCount is the number of Route values routeValues reads (-1 when it
// does not).
func routeCount(ix *sipindex.Index) int {
	it := routeValues{ix: ix, field: -1}
	n := 0
	for {
		_, _, more, bad := it.next()
		if bad {
			return -1
		}
		if !more {
			return n
		}
		n++
	}
}

// A request relayed by splicing bytes is the one startBranch or Forward
// sends, for every request of the corpora, source, Request-URI,
// Record-Route, Max-Forwards and Route removal.
func TestIxSpliceMatchesBranch(t *testing.T) {
	s := newRig(t, Config{}, Routes{}).s
	var ix sipindex.Index
	built, left, cut, unstable := 0, 0, 0, 0
	for _, c := range ixCases(t) {
		if !roundTrips(t, c.data) {
			unstable++
			continue
		}
		ixParse(t, c.data, &ix)
		nr := routeCount(&ix)
		for si, src := range ixSources {
			for vi, v := range []spliceVariant{
				{ruri: "", rr: 0, addMF: false},
				{ruri: "sip:bob@192.0.2.9:5080;transport=udp", rr: 1, addMF: true},
				{ruri: "sips:[2001:db8::9]:5061;lr", rr: 2, addMF: true},
			} {
				for k := 0; k <= 2 && k <= nr; k++ {
					if si > 1 && k > 0 {
						continue
					}
					v.routes = k
					name := c.name + " from " + src.String() + " variant " + strconv.Itoa(vi) + " routes " + strconv.Itoa(k)
					want, sp := spliceRef(t, s, c.data, src, v)
					ixParse(t, c.data, &ix)
					cuts, ok := ixRouteCuts(&ix, k)
					require.True(t, ok, name)
					sp.Cuts = cuts
					got, ok := appendSplicedRequest([]byte("junk"), &ix, &sp)
					if !ok {
						require.Equal(t, "junk", string(got), name)
						left++
						continue
					}
					built++
					if k > 0 {
						cut++
					}
					sameRequest(t, name, want, got[len("junk"):])
				}
			}
		}
	}
	t.Logf("%d requests spliced (%d with Routes removed), %d left to the parser; %d messages sipgo does not read back as it wrote them", built, cut, left, unstable)
	require.Less(t, unstable, 10)
	require.Greater(t, built, 5*left)
	require.NotZero(t, left)
	require.NotZero(t, cut)
}

// FuzzSpliceRequest runs the splice and the parsed path's branch on the
// same bytes: where the index is clean, the parsed path accepts and the
// splice reads the request, they send the same request.
func FuzzSpliceRequest(f *testing.F) {
	seedCorpus(f)
	for _, raw := range ixExtraRequests() {
		f.Add([]byte(raw))
	}
	s := looseServer()
	for _, raw := range looseCases(f, s) {
		f.Add([]byte(raw))
	}
	src := netip.MustParseAddrPort("192.0.2.7:40000")
	f.Fuzz(func(t *testing.T, data []byte) {
		var ls loopState
		if !ls.index(data, indexLimits(Limits{}.withDefaults())) || !ls.ix.Request {
			return
		}
		if _, err := seamVerdict(data); err != nil || !roundTrips(t, data) {
			return
		}
		k := routeCount(&ls.ix)
		if k < 0 {
			return
		}
		k = min(k, 2)
		v := spliceVariant{ruri: "sip:bob@192.0.2.9:5080", rr: 1 + len(data)%2, addMF: len(data)%3 != 0, routes: k}
		want, sp := spliceRef(t, s, data, src, v)
		cuts, ok := ixRouteCuts(&ls.ix, k)
		require.True(t, ok)
		sp.Cuts = cuts
		got, ok := appendSplicedRequest(nil, &ls.ix, &sp)
		if !ok {
			return
		}
		sameRequest(t, "fuzz input", want, got)
	})
}

// A spliced INVITE allocates nothing.
func BenchmarkIxSplice(b *testing.B) {
	var ix sipindex.Index
	ixParse(b, []byte(ixExtraRequests()["sipp-invite"]), &ix)
	sp := ixSplice{RURI: "sip:service@127.0.0.1:5062", Via: "SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK-ours-1",
		RR: [2]string{"<sip:127.0.0.1:5060;lr;sig=0123456789abcdef>"}, AddMaxForwards: true,
		Src: netip.MustParseAddrPort("127.0.0.1:5061")}
	buf := make([]byte, 0, 2048)
	b.ReportAllocs()
	for b.Loop() {
		var ok bool
		if buf, ok = appendSplicedRequest(buf[:0], &ix, &sp); !ok {
			b.Fatal("not spliced")
		}
	}
}

// The parsed path's branch for the same INVITE (clone, Max-Forwards,
// Record-Route, Via, serialize), parse included, for comparison.
func BenchmarkIxSpliceParsed(b *testing.B) {
	data := []byte(ixExtraRequests()["sipp-invite"])
	s := NewServer(nil, Config{}, Routes{})
	src := netip.MustParseAddrPort("127.0.0.1:5061")
	v := spliceVariant{ruri: "sip:service@127.0.0.1:5062", rr: 1, addMF: true}
	b.ReportAllocs()
	for b.Loop() {
		_, _ = spliceRef(b, s, data, src, v)
	}
}

// looseCases are in-dialog and initial requests carrying Routes of every
// kind looseRoute meets, signed by s (looseServer) (UDP 127.0.0.1:5060 and TCP
// 127.0.0.1:5070): ours signed from either side, unsigned, tampered,
// signed for another dialog, with a flow token, double Record-Route,
// followed by foreign values, comma-separated, and the forms ixLooseRoute
// leaves to the parser (strict router, display name, escapes).
func looseCases(t testing.TB, s *Server) map[string]string {
	out := map[string]string{}
	const call = "lr-1"
	ours := signedURIFor(t, s, call, "sip:127.0.0.1:5060;lr")
	ft := s.flowToken(netip.MustParseAddrPort("192.0.2.60:7000"))
	oursTCP := signedURIFor(t, s, call, "sip:"+ft+"@127.0.0.1:5070;transport=tcp;lr")
	noPort := signedURIFor(t, s, call, "sip:127.0.0.1;lr")
	other := signedURIFor(t, s, "another-call", "sip:127.0.0.1:5060;lr")
	i := strings.Index(ours, ";sig=") + len(";sig=")
	tampered := ours[:i] + map[bool]string{true: "1", false: "0"}[ours[i] == '0'] + ours[i+1:]
	foreign := "<sip:10.0.0.9:5060;lr>"
	strictNext := "<sip:10.0.0.9:5060>"
	routes := map[string]string{
		"ours":                "Route: <" + ours + ">\n",
		"ours-noport":         "Route: <" + noPort + ">\n",
		"ours-foreign":        "Route: <" + ours + ">\nRoute: " + foreign + "\n",
		"ours-strict-next":    "Route: <" + ours + ">\nRoute: " + strictNext + "\n",
		"ours-comma-foreign":  "Route: <" + ours + ">, " + foreign + "\n",
		"ours-comma-ours":     "Route: <" + oursTCP + ">,<" + ours + ">\n",
		"double":              "Route: <" + oursTCP + ">\nRoute: <" + ours + ">\n",
		"double-foreign":      "Route: <" + ours + ">\nRoute: <" + oursTCP + ">\nRoute: " + foreign + "\n",
		"double-comma-3":      "Route: <" + ours + ">, <" + oursTCP + ">, " + foreign + "\n",
		"triple":              "Route: <" + ours + ">\nRoute: <" + ours + ">\nRoute: <" + ours + ">\n",
		"unsigned":            "Route: <sip:127.0.0.1:5060;lr>\n",
		"unsigned-foreign":    "Route: <sip:127.0.0.1:5060;lr>\nRoute: " + foreign + "\n",
		"tampered":            "Route: <" + tampered + ">\n",
		"other-dialog":        "Route: <" + other + ">\n",
		"foreign":             "Route: " + foreign + "\n",
		"foreign-ours":        "Route: " + foreign + "\nRoute: <" + ours + ">\n",
		"by-name":             "Route: <sip:proxy.example.com:5060;lr>\n",
		"ipv6":                "Route: <sip:[::1]:5060;lr>\n",
		"upper-scheme":        "Route: <" + strings.Replace(ours, "sip:", "SIP:", 1) + ">\n",
		"upper-lr":            "Route: <" + strings.Replace(ours, ";lr", ";LR", 1) + ">\n",
		"header-params":       "Route: <" + ours + ">;foo=bar\n",
		"display-name":        "Route: \"proxy\" <" + ours + ">\n",
		"escaped":             "Route: <" + strings.Replace(ours, "sip:", "sip:%61b@", 1) + ">\n",
		"dup-sig":             "Route: <" + ours + ";sig=0000000000000000>\n",
		"sig-short":           "Route: <sip:127.0.0.1:5060;lr;sig=00>\n",
		"flow-bad-mac":        "Route: <" + strings.Replace(oursTCP, ft, ft[:len(ft)-1]+"0", 1) + ">\n",
		"flow-nodash":         "Route: <sip:ft-abc@127.0.0.1:5060;lr>\n",
		"flow-badhex":         "Route: <sip:ft-zz-00@127.0.0.1:5060;lr>\n",
		"transport-sips-ws":   "Route: <sips:127.0.0.1:5060;transport=ws;lr>\n",
		"other-port":          "Route: <sip:127.0.0.1:5099;lr>\n",
		"password":            "Route: <sip:u:p@127.0.0.1:5060;lr>\n",
		"uri-headers":         "Route: <sip:127.0.0.1:5060;lr?x=y>\n",
		"quoted-param":        "Route: <sip:127.0.0.1:5060;lr;x=\"a\">\n",
		"space-before-params": "Route: <sip:127.0.0.1:5060 ;lr>\n",
	}
	for name, rt := range routes {
		out["caller-"+name] = dialogRequest("BYE", "sip:bob@127.0.0.1:5062", call, "z9hG4bK-lrc-"+name, 2, false, rt)
		out["callee-"+name] = dialogRequest("ACK", "sip:alice@127.0.0.1:5061", call, "z9hG4bK-lre-"+name, 1, true, rt)
		out["initial-"+name] = request("INVITE", "sip:bob@127.0.0.1:5062", call, "z9hG4bK-lri-"+name, 1, rt)
	}
	out["strict-router"] = dialogRequest("BYE", "sip:127.0.0.1:5060", call, "z9hG4bK-lrs", 2, false, "Route: <sip:bob@127.0.0.1:5062>\n")
	out["strict-router-initial"] = request("INVITE", "sip:127.0.0.1", call, "z9hG4bK-lrs2", 1, "Route: <sip:bob@127.0.0.1:5062>\n")
	out["ruri-tel"] = request("INVITE", "tel:+15551234", call, "z9hG4bK-lrt", 1, "Route: <"+ours+">\n")
	out["ruri-us-with-user"] = dialogRequest("BYE", "sip:bob@127.0.0.1:5060", call, "z9hG4bK-lru", 2, false, "Route: <"+ours+">\n")
	out["to-tag-upper"] = strings.Replace(out["caller-ours"], ";tag=", ";TAG=", 2)
	return out
}

// ixLooseRoute decides what looseRoute decides, on the corpora and on
// in-dialog and initial requests along Routes signed by a real server:
// removed or not, c.signed, c.flow, c.flowProto, c.foreignRoute, the first
// Route left and its lr, and the Routes left once its cuts are spliced
// out — or it leaves the request to the parser.
func TestIxLooseRouteMatchesLooseRoute(t *testing.T) {
	s := looseServer()
	cases := map[string][]byte{}
	for _, c := range ixCases(t) {
		cases[c.name] = c.data
	}
	var ls loopState
	lim := indexLimits(Limits{}.withDefaults())
	read, left, removed, signed, flows, foreign := 0, 0, 0, 0, 0, 0
	var leftNames []string
	for name, data := range cases {
		if !ls.index(data, lim) || !ls.ix.Request {
			t.Fatalf("%s: the index refuses it", name)
		}
		msg, err := seamVerdict(data)
		if err != nil {
			if strings.HasPrefix(name, "loose-") {
				t.Fatalf("%s: the parsed path refuses it: %v", name, err)
			}
			continue
		}
		req := msg.(*sip.Request)
		before := len(req.GetHeaders("Route"))
		c := &Context{s: s}
		wantRemoved := s.looseRoute(c, req)
		var lr ixLoose
		if !s.ixLooseRoute(&ls.ix, &lr) {
			left++
			leftNames = append(leftNames, name)
			continue
		}
		read++
		require.Equal(t, wantRemoved, lr.Removed, "%s: removed", name)
		require.Equal(t, before-len(req.GetHeaders("Route")), lr.N, "%s: values removed", name)
		require.Equal(t, c.signed, lr.Signed, "%s: signed", name)
		require.Equal(t, c.flow, lr.Flow, "%s: flow", name)
		require.Equal(t, c.flowProto, lr.FlowProto, "%s: flow transport", name)
		require.Equal(t, c.foreignRoute, lr.ForeignRoute, "%s: foreign route", name)
		first := firstRoute(req)
		require.Equal(t, first != nil, lr.First != sipindex.Span{}, "%s: a Route left", name)
		if lr.FirstPlain {
			require.Equal(t, first.Address.UriParams.Has("lr"), lr.FirstLR, "%s: lr of the first Route left", name)
		}
		if lr.Removed {
			removed++
		}
		if lr.Signed {
			signed++
		}
		if lr.Flow.IsValid() {
			flows++
		}
		if lr.ForeignRoute {
			foreign++
		}
		// The Routes left once the cuts are spliced out.
		wire, ok := appendSplicedRequest(nil, &ls.ix, &ixSplice{Via: "SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK-x", Cuts: lr.Cuts})
		if !ok {
			continue
		}
		back := reparse(t, name, wire).(*sip.Request)
		var want, got []string
		for _, h := range req.GetHeaders("Route") {
			want = append(want, h.Value())
		}
		for _, h := range back.GetHeaders("Route") {
			got = append(got, h.Value())
		}
		require.Equal(t, want, got, "%s: Routes left\n%s", name, wire)
	}
	sort.Strings(leftNames)
	t.Logf("%d read from the index (%d removed, %d signed, %d with a flow, %d foreign), %d left to the parser: %v",
		read, removed, signed, flows, foreign, left, leftNames)
	require.NotZero(t, removed)
	require.NotZero(t, signed)
	require.NotZero(t, flows)
	require.NotZero(t, foreign)
	require.NotZero(t, left)
	require.Greater(t, read, 5*left)
}

// looseServer is a server with UDP 127.0.0.1:5060 and TCP
// 127.0.0.1:5070 transports (streamRig's) and a fixed route key: every
// looseServer verifies what another signed.
func looseServer() *Server {
	s := NewServer(nil, Config{Security: Security{RouteKey: []byte("ixfuncs tests: one route key for all")}}, Routes{})
	s.AddTransport(&fakeTP{})
	s.AddTransport(&fakeStream{proto: "TCP", port: 5070, open: map[netip.AddrPort]bool{}})
	return s
}

// FuzzIxLooseRoute runs ixLooseRoute and looseRoute on the same bytes:
// where the index is clean, the parsed path accepts and ixLooseRoute
// reads the request, they decide the same.
func FuzzIxLooseRoute(f *testing.F) {
	s := looseServer()
	seedCorpus(f)
	for _, raw := range looseCases(f, s) {
		f.Add([]byte(raw))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var ls loopState
		if !ls.index(data, indexLimits(Limits{}.withDefaults())) || !ls.ix.Request {
			return
		}
		msg, err := seamVerdict(data)
		if err != nil {
			return
		}
		req := msg.(*sip.Request)
		before := len(req.GetHeaders("Route"))
		var lr ixLoose
		if !s.ixLooseRoute(&ls.ix, &lr) {
			return
		}
		c := &Context{s: s}
		require.Equal(t, s.looseRoute(c, req), lr.Removed, "removed")
		require.Equal(t, before-len(req.GetHeaders("Route")), lr.N, "values removed")
		require.Equal(t, c.signed, lr.Signed, "signed")
		require.Equal(t, c.flow, lr.Flow, "flow")
		require.Equal(t, c.flowProto, lr.FlowProto, "flow transport")
		require.Equal(t, c.foreignRoute, lr.ForeignRoute, "foreign route")
		first := firstRoute(req)
		require.Equal(t, first != nil, lr.First != sipindex.Span{}, "a Route left")
		if lr.FirstPlain {
			require.Equal(t, first.Address.UriParams.Has("lr"), lr.FirstLR, "lr of the first Route left")
		}
	})
}

// The common in-dialog case — an ACK or BYE along our signed
// Record-Route — is read from the index without allocating.
func BenchmarkIxLooseRoute(b *testing.B) {
	s, raw := inDialogACK(b)
	var ix sipindex.Index
	ixParse(b, []byte(raw), &ix)
	var lr ixLoose
	b.ReportAllocs()
	for b.Loop() {
		if !s.ixLooseRoute(&ix, &lr) || !lr.Signed {
			b.Fatal("not read")
		}
	}
}

// inDialogACK returns a server (UDP 127.0.0.1:5060) and an ACK along its
// signed Record-Route, as SIPp's uac sends it.
func inDialogACK(t testing.TB) (*Server, string) {
	s := looseServer()
	return s, dialogRequest("ACK", "sip:bob@127.0.0.1:5062", "lr-b", "z9hG4bK-lrb", 1, false,
		"Route: <"+signedURIFor(t, s, "lr-b", "sip:127.0.0.1:5060;lr")+">\n")
}

// signedURIFor is rig.signedURI for any testing.TB.
func signedURIFor(t testing.TB, s *Server, callID, uri string) string {
	var u sip.Uri
	require.NoError(t, sip.ParseUri(uri, &u))
	u.UriParams = append(u.UriParams, sip.HeaderKV{K: sigParam, V: s.routeMAC(callID, "a1", u.User)})
	return u.String()
}

// The parsed path's loose routing of the same ACK, parse included, for
// comparison with BenchmarkIxLooseRouteIndexed.
func BenchmarkIxLooseRouteParsed(b *testing.B) {
	s, raw := inDialogACK(b)
	data := []byte(raw)
	p := newParser(Limits{})
	b.ReportAllocs()
	for b.Loop() {
		m, err := parse(p, data, Limits{})
		if err != nil {
			b.Fatal(err)
		}
		if c := (&Context{s: s}); !s.looseRoute(c, m.(*sip.Request)) || !c.signed {
			b.Fatal("not routed")
		}
	}
}

// BenchmarkIxLooseRoute with the indexing.
func BenchmarkIxLooseRouteIndexed(b *testing.B) {
	s, raw := inDialogACK(b)
	data := []byte(raw)
	var ix sipindex.Index
	var lr ixLoose
	b.ReportAllocs()
	for b.Loop() {
		if ix.Parse(data, sipindex.Limits{}) != nil || !s.ixLooseRoute(&ix, &lr) || !lr.Signed {
			b.Fatal("not routed")
		}
	}
}

// appendRouteMACBytes is appendRouteMAC.
func TestIxRouteMACMatches(t *testing.T) {
	s := newRig(t, Config{}, Routes{}).s
	for _, in := range [][3]string{{"c", "a1", ""}, {"call@host", "tag", "ft-00-11"}, {"", "", ""}} {
		require.Equal(t, s.routeMAC(in[0], in[1], in[2]),
			string(s.appendRouteMACBytes(nil, []byte(in[0]), []byte(in[1]), []byte(in[2]))))
	}
}
