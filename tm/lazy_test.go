package tm

import (
	"fmt"
	"strings"
	"testing"

	"github.com/emiago/sipgo/sip"
	"github.com/stretchr/testify/require"
)

// A request relayed lazily (lazy.go, splice.go), seen from a reply route:
// the loop's index holds the response by then, c.Req() is made from the
// Context's own bytes, and Branch.Req() parses the spliced branch as sent.
func TestLazyReqInReplyRoute(t *testing.T) {
	var ruri, callID, fromTag string
	var viaBranch, rr string
	var lazyBefore bool
	r := newRig(t, Config{}, Routes{
		Request: func(c *Context) {
			lazyBefore = c.lazy()
			_ = c.Relay()
		},
		Reply: func(c *Context) {
			req := c.Req()
			ruri, callID = req.Recipient.String(), string(*req.CallID())
			fromTag, _ = req.From().Params.Get("tag")
			br := c.Branch().Req()
			viaBranch, _ = br.Via().Params.Get("branch")
			if h := br.GetHeader("Record-Route"); h != nil {
				rr = h.Value()
			}
		},
	})
	r.recv(uacAddr, invite("lazy-reply", "z9hG4bK-lr1"))
	out := r.expect("127.0.0.1:5061 100", "127.0.0.1:5062 INVITE")
	require.True(t, lazyBefore, "the request route ran without a sipgo request")
	sentInv := out[1].msg.(*sip.Request)
	r.recvMsg(uasAddr, respond(sentInv, 180, "b1"))
	r.expect("127.0.0.1:5061 180")
	require.Equal(t, "sip:bob@127.0.0.1:5062", ruri)
	require.Equal(t, "lazy-reply", callID)
	require.Equal(t, "a1", fromTag)
	wantBranch, _ := sentInv.Via().Params.Get("branch")
	require.Equal(t, wantBranch, viaBranch, "Branch.Req() is the branch as sent")
	require.Equal(t, sentInv.GetHeader("Record-Route").Value(), rr)
	require.NotEmpty(t, rr)
}

// A CANCEL of a lazily relayed INVITE: the CANCEL for the spliced branch
// is built from its wire (clientTx.request) with the INVITE's branch.
func TestLazyCancelSplicedBranch(t *testing.T) {
	r := newRig(t, Config{}, Routes{Request: relayAll})
	r.recv(uacAddr, invite("lazy-cancel", "z9hG4bK-lc1"))
	out := r.expect("127.0.0.1:5061 100", "127.0.0.1:5062 INVITE")
	inv := out[1].msg.(*sip.Request)
	r.recvMsg(uasAddr, respond(inv, 180, "b1"))
	r.expect("127.0.0.1:5061 180")
	r.recv(uacAddr, request("CANCEL", "sip:bob@127.0.0.1:5062", "lazy-cancel", "z9hG4bK-lc1", 1, ""))
	out = r.expect("127.0.0.1:5061 200", "127.0.0.1:5062 CANCEL")
	can := out[1].msg.(*sip.Request)
	ib, _ := inv.Via().Params.Get("branch")
	cb, _ := can.Via().Params.Get("branch")
	require.Equal(t, ib, cb, "CANCEL uses the INVITE's branch")
	require.Equal(t, inv.Recipient.String(), can.Recipient.String())
}

// readMsg is what a peer reads of a message the proxy sent: the start
// line, and per header name the values in order (sipgo's reading). The
// proxy's own branch (random per branch) and the To tag it makes up
// (random per server) are left out.
//
// Not strict (readMsgMode), headers the proxy passes on untouched are compared by
// name only, and From and To by their tag: a spliced request keeps the
// sender's bytes, which sipgo's reading does not always give back as
// sipgo's serialization of it does (an empty URI user part, say), and
// which mean what the sender meant either way.
func readMsg(m sip.Message, ourTag string) (start string, hdrs map[string][]string, body string) {
	return readMsgMode(m, ourTag, true)
}

// readMsgMode is readMsg, strict or not (see readMsg).
func readMsgMode(m sip.Message, ourTag string, strict bool) (start string, hdrs map[string][]string, body string) {
	hdrs = map[string][]string{}
	var hs []sip.Header
	switch v := m.(type) {
	case *sip.Request:
		start, hs = string(v.Method)+" "+v.Recipient.String(), v.Headers()
	case *sip.Response:
		start, hs = fmt.Sprint(v.StatusCode, " ", v.Reason), v.Headers()
	}
	for i, h := range hs {
		val := h.Value()
		switch x := h.(type) {
		case *sip.ViaHeader:
			if _, ok := m.(*sip.Request); ok && i == 0 {
				c := x.Clone()
				c.Params.Remove("branch")
				val = c.Value()
			}
		case *sip.ToHeader:
			if tag, _ := x.Params.Get("tag"); strings.HasPrefix(tag, ourTag) {
				c := sip.HeaderClone(x).(*sip.ToHeader)
				c.Params.Remove("tag")
				val = c.Value()
			}
		}
		name := strings.ToLower(h.Name())
		if !strict {
			switch x := h.(type) {
			case *sip.ViaHeader, *sip.RouteHeader, *sip.RecordRouteHeader, *sip.MaxForwardsHeader,
				*sip.CallIDHeader, *sip.CSeqHeader:
			case *sip.FromHeader:
				val, _ = x.Params.Get("tag")
			case *sip.ToHeader:
				if val, _ = x.Params.Get("tag"); strings.HasPrefix(val, ourTag) {
					val = "ours"
				}
			default:
				val = ""
			}
		}
		hdrs[name] = append(hdrs[name], val)
	}
	return start, hdrs, string(m.Body())
}

// Every request of the RFC 4475/5118 and fuzz corpora the index accepts,
// relayed by a route that never asks for the sipgo request and by one that
// does, produces the same messages (what a peer reads of them): the lazy
// path takes what it reads exactly and leaves the rest to the parsed path.
func TestLazyMatchesParsedOnCorpora(t *testing.T) {
	lazyTaken := 0
	for _, tc := range ixCases(t) {
		if lazyVsParsed(t, tc.name, tc.data, true) {
			lazyTaken++
		}
	}
	t.Logf("%d requests ran lazily", lazyTaken)
	require.Greater(t, lazyTaken, 20, "the corpora exercise the lazy path")
}

// FuzzLazyRelay is TestLazyMatchesParsedOnCorpora for any input, on
// what the proxy decides and edits (readMsg, not strict).
func FuzzLazyRelay(f *testing.F) {
	for _, tc := range ixCases(&testing.T{}) {
		f.Add(tc.data)
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
		if _, err := sip.ParseMessage([]byte(msg.String())); err != nil {
			return // sipgo does not read its own writing of it: the parsed path's problem
		}
		lazyVsParsed(t, "fuzz", data, false)
	})
}

// lazyVsParsed relays data on two rigs, lazily and materialised, and
// fails t when a peer would read what they send differently. It reports
// whether the lazy rig's route ran without a sipgo request.
func lazyVsParsed(t *testing.T, name string, data []byte, strict bool) bool {
	t.Helper()
	key := []byte("lazy-corpora-route-key")
	var lazy [2]bool
	route := func(i int) func(c *Context) {
		return func(c *Context) {
			if i == 1 {
				_ = c.Req()
			}
			lazy[i] = c.lazy()
			_ = c.SetDestination("127.0.0.1:5062")
			_ = c.Relay()
		}
	}
	var got [2][]sent
	var tags [2]string
	for i := 0; i < 2; i++ {
		r := newRig(t, Config{Security: Security{RouteKey: key}}, Routes{Request: route(i)})
		r.recv(uacAddr, string(data))
		got[i], tags[i] = r.take(), r.s.tag
	}
	if lazy[1] {
		t.Fatalf("%s: the materialising route ran lazily", name)
	}
	if len(got[0]) != len(got[1]) {
		t.Errorf("%s: %d messages sent lazily, %d materialised", name, len(got[0]), len(got[1]))
		return lazy[0]
	}
	for j := range got[0] {
		a, b := got[0][j], got[1][j]
		s1, h1, b1 := readMsgMode(a.msg, tags[0], strict)
		s2, h2, b2 := readMsgMode(b.msg, tags[1], strict)
		if a.to != b.to || s1 != s2 || b1 != b2 || len(h1) != len(h2) {
			t.Errorf("%s: message %d differs:\nlazy:\n%s\nmaterialised:\n%s", name, j, a.msg, b.msg)
			continue
		}
		for n, v := range h2 {
			if strings.Join(h1[n], "\n") != strings.Join(v, "\n") {
				t.Errorf("%s: message %d, %s: lazy %q, materialised %q", name, j, n, h1[n], v)
			}
		}
	}
	return lazy[0]
}
