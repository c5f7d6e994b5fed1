package tm

import (
	"bytes"
	"net/netip"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/stretchr/testify/require"

	"github.com/asyncsip/asyncsip/reactor"
)

// indexedCases adds to the RFC and fuzz corpora requests whose sent-by
// the index reads itself (plainSentBy) or leaves to the parser.
func indexedCases(t *testing.T) map[string][]byte {
	out := diffCorpus(t)
	for i, via := range []string{
		"SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-a",
		"SIP/2.0/UDP Proxy.Example.COM:5061;branch=z9hG4bK-b;rport",
		"SIP/2.0/TCP host-1.example.net:65535;branch=z9hG4bKc",
		"SIP/2.0/UDP 127.0.0.1;branch=z9hG4bK-noport",
		"SIP/2.0/UDP 127.0.0.1:05061;branch=z9hG4bK-zero",
		"SIP/2.0/UDP [::1]:5061;branch=z9hG4bK-v6",
		"SIP/2.0/UDP 127.0.0.1:5061 ;branch=z9hG4bK-sws",
		"SIP/2.0/UDP 127.0.0.1:5061;branch=old-2543",
		"SIP / 2.0 / UDP 127.0.0.1:5061;branch=z9hG4bK-proto",
	} {
		for _, m := range []string{"INVITE", "ACK", "OPTIONS"} {
			raw := strings.Replace(request(m, "sip:bob@127.0.0.1:5062", "ix-call", "B", 1, ""),
				"SIP/2.0/UDP 127.0.0.1:5061;branch=B", via, 1)
			out[m+"-via-"+string(rune('a'+i))] = []byte(raw)
		}
	}
	return out
}

// The server key read from the index is the parser's, byte for byte,
// whenever the index reads it at all.
func TestIndexedServerKeyMatchesParser(t *testing.T) {
	var ls loopState
	lim := indexLimits(Limits{}.withDefaults())
	read, left := 0, 0
	for name, data := range indexedCases(t) {
		msg, err := seamVerdict(data)
		if err != nil || !ls.index(data, lim) || !ls.ix.Request {
			continue
		}
		req := msg.(*sip.Request)
		method := req.Method
		if method == sip.ACK {
			method = sip.INVITE
		}
		got, ok := appendIndexedServerKey(nil, &ls.ix, []byte(method))
		if !ok {
			left++
			continue
		}
		read++
		require.Equal(t, serverKey(req, req.Method), string(got), name)
	}
	t.Logf("%d keys read from the index, %d left to the parser", read, left)
	require.NotZero(t, read)
	require.NotZero(t, left)
}

// The index says a header needs the SWS repair exactly when the repair's
// own scan does.
func TestIndexedSWSRepairMatches(t *testing.T) {
	var ls loopState
	lim := indexLimits(Limits{}.withDefaults())
	needs := 0
	for name, data := range indexedCases(t) {
		if !ls.index(data, lim) {
			continue
		}
		end := bytes.Index(data, []byte("\r\n\r\n"))
		first := bytes.Index(data, []byte("\r\n"))
		want := needsSWSRepair(data[first+2 : end+2])
		require.Equal(t, want, needsSWSRepairIndexed(&ls.ix), name)
		if want {
			needs++
		}
	}
	require.NotZero(t, needs, "the corpus has messages that need the repair")
}

// A message with a clean index gets the same verdict and the same message
// from parseIndexed and validateIndexed as from the gate, the parser and
// validate.
func TestIndexedParseMatchesSeam(t *testing.T) {
	var ls loopState
	lim := indexLimits(Limits{}.withDefaults())
	p := newParser(Limits{})
	for name, data := range indexedCases(t) {
		if !ls.index(data, lim) {
			continue
		}
		want, werr := seamVerdict(data)
		got, gerr := parseIndexed(p, data, &ls.ix)
		if gerr == nil {
			gerr = validateIndexed(got, Limits{}, true)
		}
		if _, known := indexVerdictDiffers[filepath.Base(name)]; !known {
			require.Equal(t, werr == nil, gerr == nil, "%s: seam %v, indexed %v", name, werr, gerr)
		}
		if werr == nil && gerr == nil {
			require.Equal(t, want.String(), got.String(), name)
		}
	}
}

// Retransmissions are absorbed from the index: no sipgo message is built
// (nothing is allocated), and what goes out again is the very bytes sent
// the first time.
func TestIndexedRetransmissionsAllocateNothing(t *testing.T) {
	for _, loops := range []int{1, 2} {
		clk := reactor.NewFakeClock(time.Unix(1_700_000_000, 0))
		g := reactor.NewManualGroup(loops, clk)
		s := NewServer(g.Loops(), Config{}, Routes{Request: relayAll})
		tp := &wireTP{keep: true}
		s.AddTransport(tp)
		run := func() {
			for i := 0; i < 4; i++ {
				for _, l := range g.Loops() {
					l.RunPending()
				}
			}
		}
		// Read on the owner loop: a hand-off to another loop copies the
		// datagram (the cost of ownership, not of parsing).
		owner := s.owner("ix-1").loop
		recv := func(from netip.AddrPort, b []byte) {
			s.Receive(owner, b, from, tp)
			run()
		}
		parse := func(b []byte) sip.Message {
			m, err := sip.ParseMessage(append([]byte(nil), b...))
			require.NoError(t, err)
			return m
		}
		absorbed := func() uint64 { return s.Stats().RetransAbsorbed }

		inv := []byte(invite("ix-1", "z9hG4bK-ix1"))
		recv(uacAddr, inv)
		out := tp.take()
		require.Len(t, out, 2)
		trying, fwd := out[0], out[1]
		require.True(t, bytes.HasPrefix(trying, []byte("SIP/2.0 100 ")))

		// A retransmitted INVITE: the 100 again, the same bytes.
		tp.keep = false
		before := absorbed()
		allocs := testing.AllocsPerRun(50, func() { recv(uacAddr, inv) })
		require.Zero(t, allocs, "loops=%d: INVITE retransmission", loops)
		require.Equal(t, trying, tp.last)
		require.Equal(t, uacAddr, tp.to)
		require.Equal(t, before+51, absorbed())

		// The UAS's 100 (and its retransmissions) stops Timer A and goes
		// no further.
		tp.keep = false
		trying100 := []byte(respond(parse(fwd), 100, "").String())
		n0 := tp.n
		allocs = testing.AllocsPerRun(50, func() { recv(uasAddr, trying100) })
		require.Zero(t, allocs, "loops=%d: 100 from the UAS", loops)
		for _, l := range g.Loops() {
			l.Advance(2 * time.Second) // Timer A would have fired twice
		}
		run()
		require.Equal(t, n0, tp.n, "loops=%d: nothing sent after the 100", loops)

		// The UAS answers 486: relayed upstream, ACKed downstream.
		tp.keep = true
		busy := []byte(respond(parse(fwd), 486, "b1").String())
		recv(uasAddr, busy)
		out = tp.take()
		require.Len(t, out, 2)
		ackDown := out[0]
		require.True(t, bytes.HasPrefix(ackDown, []byte("ACK ")))

		// A retransmitted 486: the ACK again, the same bytes.
		tp.keep = false
		before = absorbed()
		allocs = testing.AllocsPerRun(50, func() { recv(uasAddr, busy) })
		require.Zero(t, allocs, "loops=%d: 486 retransmission", loops)
		require.Equal(t, ackDown, tp.last)
		require.Equal(t, uasAddr, tp.to)
		require.Equal(t, before+51, absorbed())

		// The same 486 from anywhere else is dropped (source check).
		n := tp.n
		recv(uas2Addr, busy)
		require.Equal(t, n, tp.n)

		// The UAC's ACK for the 486 ends Timer G; repeated, it is absorbed.
		ack := []byte(replaceTo(request("ACK", "sip:bob@127.0.0.1:5062", "ix-1", "z9hG4bK-ix1", 1, "")))
		recv(uacAddr, ack)
		allocs = testing.AllocsPerRun(50, func() { recv(uacAddr, ack) })
		require.Zero(t, allocs, "loops=%d: ACK retransmission", loops)
		n = tp.n
		for _, l := range g.Loops() {
			l.Advance(10 * time.Second)
		}
		run()
		require.Equal(t, n, tp.n, "loops=%d: no 486 after the ACK", loops)
	}
}

// A provisional or 2xx response relayed from the index (spliced: the bytes
// as received without our Via) says what the parsed path sends for it,
// and is spliced exactly when nothing needs it parsed. Each case runs on
// two servers with the same route key: one with a no-op reply route (the
// parsed path), one without (the index path); their upstream messages,
// read back by sipgo, must be the same.
func TestIndexedRelayMatchesParsedRelay(t *testing.T) {
	key := []byte("0123456789abcdef0123456789abcdef")
	crlf := func(s string) string { return strings.ReplaceAll(s, "\n", "\r\n") }
	// resp builds the UAS's response to the relayed INVITE: vias are its
	// Via lines (ours first), rr its Record-Route lines. The header name
	// "call-id" tells the paths apart: sipgo writes "Call-ID".
	type build func(vias, rr []string) string
	plain := func(status, extra, body string) build {
		return func(vias, rr []string) string {
			h := strings.Join(vias, "\n") + "\n"
			for _, r := range rr {
				h += r + "\n"
			}
			more, cl := extra, "Content-Length: "+strconv.Itoa(len(body))+"\n"
			if extra == "no-cl" {
				more, cl = "", ""
			}
			return crlf("SIP/2.0 "+status+"\n"+h+"From: <sip:alice@127.0.0.1>;tag=a1\nTo: <sip:bob@127.0.0.1>;tag=b1\n"+
				"call-id: ix-relay\nCSeq: 1 INVITE\nContact: <sip:bob@127.0.0.1:5062>\n"+more+cl+"\n") + body
		}
	}
	sdp := "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"
	for _, tc := range []struct {
		name    string
		resp    build
		spliced bool
	}{
		{"180", plain("180 Ringing", "", ""), true},
		{"183 with SDP", plain("183 Session Progress", "Content-Type: application/sdp\n", sdp), true},
		{"200 with SDP", plain("200 OK", "Content-Type: application/sdp\n", sdp), true},
		{"200 compact headers", func(vias, rr []string) string {
			r := plain("200 OK", "", "")(vias, rr)
			r = strings.Replace(r, "Via: ", "v: ", 1)
			return strings.Replace(r, "call-id: ", "i: ", 1)
		}, true},
		{"200 Vias in one field", func(vias, rr []string) string {
			one := vias[0] + ", " + strings.TrimPrefix(vias[1], "Via: ")
			return plain("200 OK", "", "")(append([]string{one}, vias[2:]...), rr)
		}, true},
		{"180 Vias in one field, no space", func(vias, rr []string) string {
			one := vias[0] + "," + strings.TrimPrefix(vias[1], "Via: ")
			return plain("180 Ringing", "", "")(append([]string{one}, vias[2:]...), rr)
		}, true},
		{"180 without Content-Length", plain("180 Ringing", "no-cl", ""), false},
		{"180 with loose SWS", func(vias, rr []string) string {
			return strings.Replace(plain("180 Ringing", "", "")(vias, rr), "tag=b1", "tag = b1", 1)
		}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out [2][]byte
			var raws [2]string
			for i, reply := range []func(*Context){func(*Context) {}, nil} {
				r := newRig(t, Config{Security: Security{RouteKey: key}}, Routes{Request: relayAll, Reply: reply})
				// The INVITE comes in on capture, so what goes upstream
				// goes out there too.
				var wire []byte
				capture := &rawCapture{fakeTP: r.tp, last: &wire}
				r.s.Receive(r.g.Loop(0), []byte(request("INVITE", "sip:bob@127.0.0.1:5062", "ix-relay", "z9hG4bK-uac", 1, "")), uacAddr, capture)
				r.run()
				sent := r.expect("127.0.0.1:5061 100", "127.0.0.1:5062 INVITE")
				fwd := sent[1].msg.(*sip.Request)
				var vias, rr []string
				for _, h := range fwd.GetHeaders("Via") {
					vias = append(vias, "Via: "+h.Value())
				}
				for _, h := range fwd.GetHeaders("Record-Route") {
					rr = append(rr, "Record-Route: "+h.Value())
				}
				raws[i] = tc.resp(vias, rr)
				tpOut := r.tp
				n := len(tpOut.out)
				r.recv(uasAddr, raws[i])
				require.Len(t, tpOut.out, n+1, "one message upstream")
				require.Equal(t, uacAddr, tpOut.out[n].to)
				out[i] = wire
			}
			// Read back as tm reads (with the SWS repair).
			a, err := parse(newParser(Limits{}), out[0], Limits{})
			require.NoError(t, err)
			b, err := parse(newParser(Limits{}), out[1], Limits{})
			require.NoError(t, err)
			require.Equal(t, a.String(), b.String(), "parsed and index paths send the same message")
			// Spliced: the received bytes without our Via (its line, or
			// its value and the comma after it).
			first := raws[1][strings.Index(raws[1], "\r\n")+2:]
			line := first[:strings.Index(first, "\r\n")+2]
			cut := strings.Replace(raws[1], line, "", 1)
			if c := strings.IndexByte(line, ','); c >= 0 {
				rest := strings.TrimLeft(line[c+1:], " ")
				cut = strings.Replace(raws[1], line, line[:strings.Index(line, ":")+2]+rest, 1)
			}
			require.Equal(t, tc.spliced, string(out[1]) == cut, "spliced: got\n%s", out[1])
		})
	}
}

// rawCapture is the rig's transport that also keeps the bytes of the last
// message sent.
type rawCapture struct {
	*fakeTP
	last *[]byte
}

func (c *rawCapture) Send(l *reactor.Loop, b []byte, to netip.AddrPort) error {
	*c.last = append([]byte(nil), b...)
	return c.fakeTP.Send(l, b, to)
}

// A 2xx relayed from the index is parsed when a route asks for it
// (Branch.Response), and its retransmission is relayed like the first.
func TestIndexedRelayed2xxParsedOnDemand(t *testing.T) {
	var branch *Branch
	r := newRig(t, Config{}, Routes{Request: func(c *Context) {
		_ = c.Relay()
		branch = c.Branches()[0]
	}})
	r.recv(uacAddr, invite("ix-2xx", "z9hG4bK-2xx"))
	sent := r.expect("127.0.0.1:5061 100", "127.0.0.1:5062 INVITE")
	ok := respond(sent[1].msg, 200, "b2").String()
	r.recv(uasAddr, ok)
	r.expect("127.0.0.1:5061 200")
	require.NotNil(t, branch.wire, "relayed from the index, not parsed yet")
	resp := branch.Response()
	require.NotNil(t, resp)
	require.Equal(t, 200, resp.StatusCode)
	tag, _ := resp.To().Params.Get("tag")
	require.Equal(t, "b2", tag)
	require.Nil(t, branch.wire)
	r.recv(uasAddr, ok) // the UAS retransmits its 2xx
	r.expect("127.0.0.1:5061 200")
}
