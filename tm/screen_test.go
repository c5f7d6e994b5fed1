package tm

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// screenRig is a rig whose screen drops every request from attackerAddr,
// counting the screen's calls, and whose route relays, suspends the
// MESSAGEs to "wait" (to fill the transaction cap) and counts its runs.
type screenRig struct {
	*rig
	sp      suspender
	calls   int // screen calls
	ran     int // request route runs
	sources []netip.AddrPort
}

func newScreenRig(t *testing.T, cfg Config) *screenRig {
	sr := &screenRig{}
	sr.rig = newRig(t, cfg, Routes{
		Screen: func(req *sip.Request, src netip.AddrPort) bool {
			sr.calls++
			sr.sources = append(sr.sources, src)
			return src.Addr() == attackerAddr.Addr()
		},
		Request: func(c *Context) {
			sr.ran++
			if c.Req().Recipient.User == "wait" {
				sr.sp.route(nil)(c)
				return
			}
			_ = c.Relay()
		},
	})
	return sr
}

// A screened source gets nothing where tm would have answered before any
// route: no 403 to an unsigned tagged request, no 100 to an INVITE (nor to
// its retransmissions), no 481 to a stray CANCEL, no 400 to an invalid
// request. The same requests from another source get what they always got.
func TestScreenDropsBeforeTMAnswers(t *testing.T) {
	invalid := func(callID, branch string) string {
		// Parses, fails validation (its CSeq names another method):
		// answered 400 when not screened.
		return strings.Replace(request("OPTIONS", "sip:bob@127.0.0.1:5062", callID, branch, 1, ""),
			"CSeq: 1 OPTIONS", "CSeq: 1 INFO", 1)
	}
	cases := []struct {
		name   string
		raw    func(callID, branch string) string
		answer []string // what an unscreened source gets
	}{
		{"unsigned tagged BYE", func(id, br string) string {
			return dialogRequest("BYE", "sip:victim@127.0.0.3:5060", id, br, 2, false, "")
		}, []string{"127.0.0.1:5061 403"}},
		{"unsigned tagged INVITE", func(id, br string) string {
			return dialogRequest("INVITE", "sip:victim@127.0.0.3:5060", id, br, 2, false, "")
		}, []string{"127.0.0.1:5061 403"}},
		{"unsigned tagged ACK", func(id, br string) string {
			return dialogRequest("ACK", "sip:victim@127.0.0.3:5060", id, br, 1, false, "")
		}, nil},
		{"initial INVITE", func(id, br string) string {
			return invite(id, br)
		}, []string{"127.0.0.1:5061 100", "127.0.0.1:5062 INVITE"}},
		{"stray CANCEL", func(id, br string) string {
			return request("CANCEL", "sip:bob@127.0.0.1:5062", id, br, 1, "")
		}, []string{"127.0.0.1:5061 481"}},
		{"invalid OPTIONS", invalid, []string{"127.0.0.1:5061 400"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := newScreenRig(t, Config{})
			// The attacker's request, twice (a retransmission), then time
			// for every timer that could answer it.
			for i := 0; i < 2; i++ {
				r.recv(attackerAddr, tc.raw("scr-a", "z9hG4bK-scra"))
				r.expect()
			}
			r.advance(time.Second)
			r.advance(32 * time.Second)
			r.expect()
			st := r.s.Stats()
			assert.EqualValues(t, 2, st.DropScreened, "each arrival screened and counted")
			assert.Zero(t, st.DropUnsigned+st.DropInvalid+st.Overload, "counted as screened only")
			assert.Zero(t, st.ServerTxCreated, "no transaction for a screened request")
			assert.Zero(t, r.ran, "the route never ran")
			assert.Equal(t, 2, r.calls)

			// The same request from another source is unchanged.
			r.recv(uacAddr, tc.raw("scr-b", "z9hG4bK-scrb"))
			if tc.answer == nil {
				r.expect()
			} else {
				r.expect(tc.answer...)
			}
			assert.EqualValues(t, 2, r.s.Stats().DropScreened)
			assert.Equal(t, []netip.AddrPort{attackerAddr, attackerAddr, uacAddr}, r.sources)
		})
	}
}

// Over the transaction cap a screened source gets no 503; others do.
func TestScreenBeforeCap503(t *testing.T) {
	r := newScreenRig(t, Config{MaxTransactions: 1})
	r.recv(uacAddr, request("MESSAGE", "sip:wait@127.0.0.1:5062", "scr-c1", "z9hG4bK-scrc1", 1, ""))
	r.expect() // suspended: the cap is reached
	r.recv(attackerAddr, request("MESSAGE", "sip:bob@127.0.0.1:5062", "scr-c2", "z9hG4bK-scrc2", 1, ""))
	r.expect()
	r.recv(uacAddr, request("MESSAGE", "sip:bob@127.0.0.1:5062", "scr-c3", "z9hG4bK-scrc3", 1, ""))
	r.expect("127.0.0.1:5061 503")
	st := r.s.Stats()
	assert.EqualValues(t, 1, st.DropScreened)
	assert.EqualValues(t, 1, st.Overload)
}

// The screen sees a request once: retransmissions of an admitted
// transaction are absorbed as before (the last response is resent) without
// asking it again, and a legitimate call with its in-dialog requests goes
// through unchanged.
func TestScreenPassesUnscreenedTraffic(t *testing.T) {
	r := newScreenRig(t, Config{})
	fwd := setUpCall(t, r.rig, "scr-d1")
	assert.Equal(t, 1, r.calls)
	r.recv(uacAddr, invite("scr-d1", "z9hG4bK-scr-d1")) // retransmission after the 200
	r.recv(uacAddr, request("MESSAGE", "sip:bob@127.0.0.1:5062", "scr-d2", "z9hG4bK-scrd2", 1, ""))
	r.expect("127.0.0.1:5062 MESSAGE")
	r.recv(uacAddr, request("MESSAGE", "sip:bob@127.0.0.1:5062", "scr-d2", "z9hG4bK-scrd2", 1, "")) // absorbed
	r.expect()
	assert.Equal(t, 2, r.calls, "retransmissions do not meet the screen")

	route := routeLines(fwd.GetHeaders("Record-Route"), true)
	r.recv(uacAddr, dialogRequest("ACK", "sip:bob@127.0.0.1:5062", "scr-d1", "z9hG4bK-scrd3", 1, false, route))
	r.expect("127.0.0.1:5062 ACK")
	r.recv(uacAddr, dialogRequest("BYE", "sip:bob@127.0.0.1:5062", "scr-d1", "z9hG4bK-scrd4", 2, false, route))
	r.expect("127.0.0.1:5062 BYE")
	assert.Equal(t, 4, r.calls)
	assert.Zero(t, r.s.Stats().DropScreened)
}

// Screening costs no allocation, whether the request passes or is dropped.
func TestScreenAllocatesNothing(t *testing.T) {
	r := newRig(t, Config{}, Routes{Screen: func(_ *sip.Request, src netip.AddrPort) bool {
		return src == attackerAddr
	}})
	msg, err := sip.ParseMessage([]byte(invite("scr-e", "z9hG4bK-scre")))
	require.NoError(t, err)
	req := msg.(*sip.Request)
	for _, src := range []netip.AddrPort{uacAddr, attackerAddr} {
		allocs := testing.AllocsPerRun(100, func() { r.s.screened(req, src) })
		assert.Zero(t, allocs, src.String())
	}
	assert.True(t, r.s.screened(req, attackerAddr))
	r.s.SetRoutes(Routes{})
	assert.False(t, r.s.screened(req, attackerAddr), "no screen: every request passes")
}

// A screen that panics drops the request it was asked about (it was there
// to keep something out), counts the panic, and the server goes on.
func TestScreenPanicDrops(t *testing.T) {
	r := newRig(t, Config{}, Routes{
		Screen: func(req *sip.Request, _ netip.AddrPort) bool {
			if req.GetHeader("User-Agent") != nil {
				panic("screen bug")
			}
			return false
		},
		Request: relayAll,
	})
	r.recv(uacAddr, request("INVITE", "sip:bob@127.0.0.1:5062", "scr-p1", "z9hG4bK-scrp1", 1, "User-Agent: x\n"))
	r.expect()
	st := r.s.Stats()
	assert.EqualValues(t, 1, st.Panics)
	assert.EqualValues(t, 1, st.DropScreened)
	r.recv(uacAddr, invite("scr-p2", "z9hG4bK-scrp2"))
	r.expect("127.0.0.1:5061 100", "127.0.0.1:5062 INVITE")
}
