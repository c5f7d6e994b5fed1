package main

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/asyncsip/asyncsip/modules/rtpengine"
	"github.com/asyncsip/asyncsip/modules/rtpengine/rtpenginetest"
	"github.com/asyncsip/asyncsip/siptest"
)

// mediaProxy is a test proxy with -rtpengine whose rtpengine is a fake,
// trusting the harness's peer, with a gateway for +1.
func mediaProxy(t *testing.T) (*Proxy, *rtpenginetest.Fake, *siptest.Harness) {
	t.Helper()
	p := newTestProxy(t, Config{Trusted: []string{harnessPeer}})
	require.NoError(t, p.store.AddGateway(context.Background(), 1, "10.1.0.1:5060", "+1", 0))
	m, err := newMedia(Config{RTPEngine: "udp:127.0.0.1:9"}, slog.Default()) // never reached: the fake answers
	require.NoError(t, err)
	t.Cleanup(m.close)
	p.media = m
	rtp := rtpenginetest.NewFake()
	return p, rtp, newHarness(t, p, siptest.WithFakes(rtp))
}

func offerSDP(ip string) string {
	return "v=0\r\no=- 1 1 IN IP4 " + ip + "\r\ns=-\r\nc=IN IP4 " + ip + "\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"
}

// commandNames lists the commands the fake got.
func commandNames(rtp *rtpenginetest.Fake) []string {
	var out []string
	for _, c := range rtp.Commands() {
		out = append(out, c.Name)
	}
	return out
}

// A caller behind a NAT: the INVITE goes to the gateway with rtpengine's
// SDP (phone flags, the caller's source as received-from), and the 183
// and 200 come back with rtpengine's answer.
func TestMediaRoutesOfferAnswer(t *testing.T) {
	_, rtp, h := mediaProxy(t)
	res := h.Send(siptest.NewRequest("INVITE", "sip:+15551234@example.com",
		siptest.WithBody("application/sdp", offerSDP("192.168.1.10"))))
	siptest.AssertRelayedTo(t, res, "sip:+15551234@10.1.0.1:5060")
	body := string(res.Branch(0).Body())
	assert.Contains(t, body, rtpenginetest.DefaultMediaAddr)
	assert.NotContains(t, body, "192.168.1.10")

	require.Equal(t, []string{"offer"}, commandNames(rtp))
	d := rtp.Commands()[0].Dict
	assert.Equal(t, rtpengine.ICERemove, d["ICE"])
	assert.Equal(t, rtpengine.RTPAVP, d["transport-protocol"])
	assert.Equal(t, []string{"IP4", "127.0.0.1"}, d["received-from"])
	assert.Contains(t, d["flags"], "SIP-source-address")
	assert.ElementsMatch(t, []string{"origin", "session-connection"}, d["replace"])

	res.Branch(0).Respond(183, siptest.WithBody("application/sdp", offerSDP("10.1.0.1")))
	res.Branch(0).Respond(200, siptest.WithBody("application/sdp", offerSDP("10.1.0.1")))
	assert.Equal(t, []string{"offer", "answer", "answer"}, commandNames(rtp))
	var answered []int
	for _, r := range res.Replies() {
		if r.StatusCode > 100 {
			answered = append(answered, r.StatusCode)
			assert.Contains(t, string(r.Body()), rtpenginetest.DefaultMediaAddr, "%d with rtpengine's answer", r.StatusCode)
			assert.NotContains(t, string(r.Body()), "10.1.0.1")
		}
	}
	assert.Equal(t, []int{183, 200}, answered)
}

// When rtpengine fails: an offer → 503 and nothing relayed; an answer → a
// 183 is dropped, a 200 goes upstream unchanged.
func TestMediaRoutesFailures(t *testing.T) {
	t.Run("offer", func(t *testing.T) {
		_, rtp, h := mediaProxy(t)
		rtp.Fail("offer", fmt.Errorf("no instance answered: %w", rtpengine.ErrTimeout))
		res := h.Send(siptest.NewRequest("INVITE", "sip:+15551234@example.com",
			siptest.WithBody("application/sdp", offerSDP("192.168.1.10"))))
		siptest.AssertNotRelayed(t, res)
		siptest.AssertReplied(t, res, 503)
		assert.Equal(t, "Service Unavailable (media relay)", res.Final().Reason)
		siptest.AssertHeader(t, res.Final(), "Retry-After", "5")
	})
	t.Run("answer", func(t *testing.T) {
		_, rtp, h := mediaProxy(t)
		res := h.Send(siptest.NewRequest("INVITE", "sip:+15551234@example.com",
			siptest.WithBody("application/sdp", offerSDP("192.168.1.10"))))
		siptest.AssertRelayedTo(t, res, "sip:+15551234@10.1.0.1:5060")
		rtp.Refuse("answer", "Unknown call-id")
		rtp.Refuse("answer", "Unknown call-id")
		res.Branch(0).Respond(183, siptest.WithBody("application/sdp", offerSDP("10.1.0.1")))
		res.Branch(0).Respond(200, siptest.WithBody("application/sdp", offerSDP("10.1.0.1")))
		for _, r := range res.Replies() {
			assert.NotEqual(t, 183, r.StatusCode, "the 183 with the callee's own SDP is dropped")
		}
		siptest.AssertReplied(t, res, 200)
		assert.Contains(t, string(res.Final().Body()), "10.1.0.1", "the 200 goes on unchanged")
	})
}

// What rtpengine does not see: a call with no NAT, a body that is not SDP.
func TestMediaRoutesLeftAlone(t *testing.T) {
	t.Run("no NAT", func(t *testing.T) {
		_, rtp, h := mediaProxy(t)
		res := h.Send(siptest.NewRequest("INVITE", "sip:+15551234@example.com",
			siptest.WithBody("application/sdp", offerSDP("127.0.0.1"))))
		siptest.AssertRelayedTo(t, res, "sip:+15551234@10.1.0.1:5060")
		assert.Contains(t, string(res.Branch(0).Body()), "c=IN IP4 127.0.0.1")
		res.Branch(0).Respond(200, siptest.WithBody("application/sdp", offerSDP("10.1.0.1")))
		assert.Empty(t, rtp.Commands())
	})
	t.Run("not SDP", func(t *testing.T) {
		_, rtp, h := mediaProxy(t)
		res := h.Send(siptest.NewRequest("INVITE", "sip:+15551234@example.com",
			siptest.WithContact("sip:alice@10.0.0.9:5060"), // behind a NAT
			siptest.WithBody("text/plain", "hello")))
		siptest.AssertRelayedTo(t, res, "sip:+15551234@10.1.0.1:5060")
		assert.Equal(t, "hello", strings.TrimSpace(string(res.Branch(0).Body())))
		assert.Empty(t, rtp.Commands(), "the offer helper found no SDP and sent nothing")
	})
}
