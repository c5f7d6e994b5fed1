package rtpengine_test

import (
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/asyncsip/asyncsip/modules/rtpengine/rtpenginetest"
	"github.com/asyncsip/asyncsip/siptest"
)

// TestRoute2xxRetransmissionKeepsRewrittenSDP: a UAS retransmits its 200
// until the ACK comes; every copy that goes upstream must carry the SDP
// the answer rewrote, or the caller would learn the callee's own media
// address from a retransmission.
func TestRoute2xxRetransmissionKeepsRewrittenSDP(t *testing.T) {
	t.Parallel()
	fake := rtpenginetest.NewFake()
	var errs []error
	h := siptest.NewHarness(t, mediaRoutes(harnessClient(t), &errs), siptest.WithFakes(fake))
	res := h.Send(siptest.NewRequest("INVITE", bob, siptest.WithBody("application/sdp", offerSDP)))
	answer := strings.ReplaceAll(offerSDP, "192.0.2.10", "192.0.2.20")
	br := res.Branch(0)
	br.Respond(200, siptest.WithBody("application/sdp", answer))
	br.Respond(200, siptest.WithBody("application/sdp", answer))
	n := 0
	for _, sent := range h.Sent() {
		if r, ok := sent.Msg.(*sip.Response); ok && r.StatusCode == 200 {
			n++
			if strings.Contains(string(r.Body()), "192.0.2.20") {
				t.Errorf("200 #%d went upstream with the callee's SDP:\n%s", n, r.Body())
			}
		}
	}
	if n < 2 {
		t.Fatalf("%d 200s upstream, want the 200 and its retransmission:\n%s", n, res)
	}
}

// TestRoute2xxRetransmissionWhileAnswerPending: a retransmission of the
// 200 that arrives while the answer is still with rtpengine is absorbed;
// the 200 goes upstream once, rewritten, when the answer comes back.
func TestRoute2xxRetransmissionWhileAnswerPending(t *testing.T) {
	t.Parallel()
	fake := rtpenginetest.NewFake()
	var errs []error
	h := siptest.NewHarness(t, mediaRoutes(harnessClient(t), &errs), siptest.WithFakes(fake))
	res := h.Send(siptest.NewRequest("INVITE", bob, siptest.WithBody("application/sdp", offerSDP)))
	fake.SetDelay(100 * time.Millisecond)
	answer := strings.ReplaceAll(offerSDP, "192.0.2.10", "192.0.2.20")
	br := res.Branch(0)
	br.Respond(200, siptest.WithBody("application/sdp", answer))
	br.Respond(200, siptest.WithBody("application/sdp", answer))
	if n := upstream200s(t, h); n != 0 {
		t.Fatalf("%d 200s upstream while the answer is pending", n)
	}
	h.Clock.Advance(100 * time.Millisecond)
	if n := upstream200s(t, h); n != 1 {
		t.Fatalf("%d 200s upstream after the answer, want 1:\n%s", n, res)
	}
}

func upstream200s(t *testing.T, h *siptest.Harness) int {
	t.Helper()
	n := 0
	for _, sent := range h.Sent() {
		if r, ok := sent.Msg.(*sip.Response); ok && r.StatusCode == 200 {
			n++
			if strings.Contains(string(r.Body()), "192.0.2.20") {
				t.Errorf("200 #%d went upstream with the callee's SDP:\n%s", n, r.Body())
			}
		}
	}
	return n
}

// TestRoute2xxRetransmissionQueuedBehind183: the 200 arrives while the
// 183's answer is pending (queued), then its retransmission: nothing goes
// upstream raw; the 183 and then the 200 go, each rewritten, the 200 once.
func TestRoute2xxRetransmissionQueuedBehind183(t *testing.T) {
	t.Parallel()
	fake := rtpenginetest.NewFake()
	var errs []error
	h := siptest.NewHarness(t, mediaRoutes(harnessClient(t), &errs), siptest.WithFakes(fake))
	res := h.Send(siptest.NewRequest("INVITE", bob, siptest.WithBody("application/sdp", offerSDP)))
	fake.SetDelay(100 * time.Millisecond)
	answer := strings.ReplaceAll(offerSDP, "192.0.2.10", "192.0.2.20")
	br := res.Branch(0)
	br.Respond(183, siptest.WithBody("application/sdp", answer))
	br.Respond(200, siptest.WithBody("application/sdp", answer))
	br.Respond(200, siptest.WithBody("application/sdp", answer))
	if n := upstream200s(t, h); n != 0 {
		t.Fatalf("%d 200s upstream while the 183's answer is pending", n)
	}
	h.Clock.Advance(100 * time.Millisecond) // the 183's answer; the 200's answer starts
	h.Clock.Advance(100 * time.Millisecond) // the 200's answer
	if n := upstream200s(t, h); n != 1 {
		t.Fatalf("%d 200s upstream, want 1:\n%s", n, res)
	}
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
}
