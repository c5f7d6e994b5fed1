package main

import (
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/asyncsip/asyncsip/modules/ratelimit"
)

// screenReq parses a request from src's host with a To tag when tag is set
// and a User-Agent when ua is.
func screenReq(t *testing.T, method, tag, ua string) *sip.Request {
	t.Helper()
	to := "To: <sip:bob@example.com>"
	if tag != "" {
		to += ";tag=" + tag
	}
	hdrs := ""
	if ua != "" {
		hdrs = "User-Agent: " + ua + "\r\n"
	}
	raw := fmt.Sprintf("%s sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK-s\r\n"+
		"Max-Forwards: 70\r\nFrom: <sip:alice@example.com>;tag=a\r\n%s\r\nCall-ID: screen\r\nCSeq: 1 %s\r\n%s"+
		"Content-Length: 0\r\n\r\n", method, to, method, hdrs)
	m, err := sip.ParseMessage([]byte(raw))
	require.NoError(t, err)
	return m.(*sip.Request)
}

// The proxy's screen: what it drops and what it lets through, one source
// per case so that the rate limit and bans of one do not touch another.
func TestScreenDecides(t *testing.T) {
	p := newTestProxy(t, Config{Trusted: []string{"198.51.100.7"}})
	p.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	p.rl = ratelimit.New(ratelimit.Config{Rate: 0.001, Burst: 2, BanFor: time.Hour}) // no refill during the test
	src := func(i int) netip.AddrPort {
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte{192, 0, 2, byte(i)}), 5060)
	}
	invite := screenReq(t, "INVITE", "", "")
	bye := screenReq(t, "BYE", "b1", "")

	t.Run("a phone passes", func(t *testing.T) {
		assert.False(t, p.screen(invite, src(1)))
		assert.False(t, p.screen(bye, src(1)))
	})
	t.Run("a scanner is dropped, tagged requests too", func(t *testing.T) {
		assert.True(t, p.screen(screenReq(t, "INVITE", "", "friendly-scanner"), src(2)))
		assert.True(t, p.screen(screenReq(t, "BYE", "b1", "sipvicious"), src(2)))
	})
	t.Run("a trusted peer is never screened", func(t *testing.T) {
		peer := netip.MustParseAddrPort("198.51.100.7:5060")
		for range 10 {
			assert.False(t, p.screen(screenReq(t, "INVITE", "", "friendly-scanner"), peer))
		}
	})
	t.Run("in-dialog requests are not counted by the rate", func(t *testing.T) {
		for range 10 {
			assert.False(t, p.screen(bye, src(3)))
			assert.False(t, p.screen(screenReq(t, "CANCEL", "", ""), src(3)))
		}
		assert.False(t, p.screen(invite, src(3)), "the burst is intact")
	})
	t.Run("over the rate: banned, tagged requests too", func(t *testing.T) {
		assert.False(t, p.screen(invite, src(4)))
		assert.False(t, p.screen(invite, src(4)))
		assert.True(t, p.screen(invite, src(4)), "over the burst")
		assert.True(t, p.screen(bye, src(4)), "banned: in-dialog requests too")
		assert.True(t, p.screen(screenReq(t, "CANCEL", "", ""), src(4)))
	})
	t.Run("banned for failed passwords", func(t *testing.T) {
		for range p.cfg.AuthFailures {
			p.ch.Failures.Fail("alice", src(5).Addr())
		}
		require.True(t, p.ch.Failures.Banned("", src(5).Addr()).Active())
		assert.True(t, p.screen(invite, src(5)))
		assert.True(t, p.screen(bye, src(5)))
	})
}

// What the screen lets through costs no allocation: it runs for every
// request before tm does anything else.
func TestScreenPassAllocatesNothing(t *testing.T) {
	p := newTestProxy(t, Config{Trusted: []string{"198.51.100.0/24"}})
	p.rl = ratelimit.New(ratelimit.Config{Rate: 1e9, Burst: 1e9})
	cases := map[string]struct {
		req *sip.Request
		src netip.AddrPort
	}{
		"initial INVITE":  {screenReq(t, "INVITE", "", "Linphone/5.2"), netip.MustParseAddrPort("192.0.2.1:5060")},
		"in-dialog BYE":   {screenReq(t, "BYE", "b1", ""), netip.MustParseAddrPort("192.0.2.1:5060")},
		"trusted peer":    {screenReq(t, "INVITE", "", ""), netip.MustParseAddrPort("198.51.100.9:5060")},
		"REGISTER, no UA": {screenReq(t, "REGISTER", "", ""), netip.MustParseAddrPort("192.0.2.2:5060")},
	}
	for name, tc := range cases {
		require.False(t, p.screen(tc.req, tc.src), name)
		allocs := testing.AllocsPerRun(100, func() { p.screen(tc.req, tc.src) })
		assert.Zero(t, allocs, name)
	}
}
