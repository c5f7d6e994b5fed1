package rtpengine_test

import (
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/emiago/sipgo/sip"

	"github.com/asyncsip/asyncsip/modules/rtpengine"
	"github.com/asyncsip/asyncsip/modules/rtpengine/rtpenginetest"
	"github.com/asyncsip/asyncsip/siptest"
	"github.com/asyncsip/asyncsip/tm"
)

const bob = "sip:bob@192.0.2.20"

// mediaRoutes is the usual shape: Offer on INVITE, Answer on 183/200,
// Delete on BYE; failures of rtpengine are answered 503 for the offer and
// ignored elsewhere. errs records what next got.
func mediaRoutes(rtp *rtpengine.Client, errs *[]error) tm.Routes {
	return tm.Routes{
		Request: func(c *tm.Context) {
			switch c.Method() {
			case sip.INVITE:
				rtpengine.Offer(c, rtp, &rtpengine.Flags{ReplaceOrigin: true, ICE: rtpengine.ICERemove}, func(err error) {
					*errs = append(*errs, err)
					if err != nil && !errors.Is(err, rtpengine.ErrNoSDP) {
						_ = c.Reply(503, "Media relay unavailable")
						return
					}
					_ = c.Relay(bob)
				})
			case sip.BYE:
				rtpengine.Delete(c, rtp, nil, func(err error) {
					*errs = append(*errs, err)
					_ = c.Relay(bob)
				})
			default:
				_ = c.Relay(bob)
			}
		},
		Reply: func(c *tm.Context) {
			if c.Resp.StatusCode == 183 || c.Resp.StatusCode == 200 {
				rtpengine.Answer(c, rtp, nil, func(err error) { *errs = append(*errs, err) })
			}
		},
		Failure: func(c *tm.Context) { // rejected or cancelled: the call's media goes too
			rtpengine.Delete(c, rtp, nil, func(err error) { *errs = append(*errs, err) })
		},
	}
}

// harnessClient is a client for siptest: its ops never reach the network,
// the fake answers them.
func harnessClient(t *testing.T) *rtpengine.Client {
	return newClient(t, rtpengine.Config{Instances: []rtpengine.Instance{{Addr: "udp:127.0.0.1:2223"}}})
}

func checkBody(t *testing.T, what string, m interface {
	Body() []byte
	ContentLength() *sip.ContentLengthHeader
}, want string) {
	t.Helper()
	body := string(m.Body())
	if !strings.Contains(body, want) {
		t.Fatalf("%s body does not contain %q:\n%s", what, want, body)
	}
	if cl := m.ContentLength(); cl == nil || int(*cl) != len(body) {
		t.Fatalf("%s Content-Length %v, body of %d bytes", what, cl, len(body))
	}
}

func TestRouteOfferAnswerDelete(t *testing.T) {
	t.Parallel()
	fake := rtpenginetest.NewFake()
	var errs []error
	h := siptest.NewHarness(t, mediaRoutes(harnessClient(t), &errs), siptest.WithFakes(fake))
	inv := siptest.NewRequest("INVITE", bob, siptest.WithBody("application/sdp", offerSDP), siptest.WithCallID("route-1"), siptest.WithFromTag("alice"))
	res := h.Send(inv)
	br := res.Branch(0)
	if br == nil {
		t.Fatalf("INVITE not relayed:\n%s", res)
	}
	checkBody(t, "relayed INVITE", br.Request, "c=IN IP4 "+rtpenginetest.DefaultMediaAddr)
	br.Respond(183, siptest.WithBody("application/sdp", strings.ReplaceAll(offerSDP, "192.0.2.10", "192.0.2.20")))
	br.Respond(200, siptest.WithBody("application/sdp", strings.ReplaceAll(offerSDP, "192.0.2.10", "192.0.2.20")))
	var got []int
	for _, r := range res.Replies() {
		got = append(got, r.StatusCode)
		if r.StatusCode >= 180 {
			checkBody(t, strconv.Itoa(r.StatusCode)+" upstream", r.Response, "c=IN IP4 "+rtpenginetest.DefaultMediaAddr)
		}
	}
	if len(got) < 2 || got[len(got)-1] != 200 {
		t.Fatalf("replies upstream %v:\n%s", got, res)
	}
	cmds := fake.Commands()
	if len(cmds) != 3 || cmds[0].Name != "offer" || cmds[1].Name != "answer" || cmds[2].Name != "answer" {
		t.Fatalf("commands %+v", cmds)
	}
	if c := cmds[1].Call; c.CallID != "route-1" || c.FromTag != "alice" || c.ToTag == "" {
		t.Fatalf("answer call %+v", c)
	}
	if cmds[0].Dict["ICE"] != "remove" {
		t.Fatalf("offer flags not sent: %v", cmds[0].Dict)
	}
	bye := h.Send(siptest.NewDialog(inv, res.Final().Response).Bye())
	siptest.AssertRelayedTo(t, bye, bob)
	if fake.Live() != 0 {
		t.Fatalf("call still live after BYE; %d commands:\n%s", len(fake.Commands()), bye)
	}
	for _, err := range errs {
		if err != nil {
			t.Fatalf("next got %v", err)
		}
	}
}

func TestRouteOfferFailureAnswered503(t *testing.T) {
	t.Parallel()
	fake := rtpenginetest.NewFake()
	fake.Refuse("offer", "Incomplete SDP specification")
	var errs []error
	h := siptest.NewHarness(t, mediaRoutes(harnessClient(t), &errs), siptest.WithFakes(fake))
	res := h.Send(siptest.NewRequest("INVITE", bob, siptest.WithBody("application/sdp", offerSDP)))
	siptest.AssertReplied(t, res, 503)
	siptest.AssertNotRelayed(t, res)
	var re *rtpengine.Error
	if len(errs) != 1 || !errors.As(errs[0], &re) {
		t.Fatalf("next got %v", errs)
	}
}

func TestRouteOfferWithoutSDP(t *testing.T) {
	t.Parallel()
	fake := rtpenginetest.NewFake()
	var errs []error
	h := siptest.NewHarness(t, mediaRoutes(harnessClient(t), &errs), siptest.WithFakes(fake))
	res := h.Send(siptest.NewRequest("INVITE", bob))
	siptest.AssertRelayedTo(t, res, bob)
	if len(errs) != 1 || !errors.Is(errs[0], rtpengine.ErrNoSDP) || len(fake.Commands()) != 0 {
		t.Fatalf("next got %v, commands %v", errs, fake.Commands())
	}
}

// TestRouteAnswerFailureRelaysUnchanged: when the answer fails, the 200
// goes upstream as it came (the route only learns the error).
func TestRouteAnswerFailureRelaysUnchanged(t *testing.T) {
	t.Parallel()
	fake := rtpenginetest.NewFake()
	fake.Fail("answer", rtpengine.ErrTimeout)
	var errs []error
	h := siptest.NewHarness(t, mediaRoutes(harnessClient(t), &errs), siptest.WithFakes(fake))
	res := h.Send(siptest.NewRequest("INVITE", bob, siptest.WithBody("application/sdp", offerSDP)))
	answer := strings.ReplaceAll(offerSDP, "192.0.2.10", "192.0.2.20")
	res.Branch(0).Respond(200, siptest.WithBody("application/sdp", answer))
	final := res.Final()
	if final == nil || final.StatusCode != 200 || string(final.Body()) != answer {
		t.Fatalf("final %v:\n%s", final, res)
	}
	if len(errs) != 2 || !errors.Is(errs[1], rtpengine.ErrTimeout) {
		t.Fatalf("next got %v", errs)
	}
}

// TestRouteDeleteOnCancelAndRejection: tm answers a CANCEL itself; the
// INVITE's failure route (487, or any rejection) deletes the call.
func TestRouteDeleteOnCancelAndRejection(t *testing.T) {
	t.Parallel()
	for _, cancel := range []bool{true, false} {
		fake := rtpenginetest.NewFake()
		var errs []error
		h := siptest.NewHarness(t, mediaRoutes(harnessClient(t), &errs), siptest.WithFakes(fake))
		inv := siptest.NewRequest("INVITE", bob, siptest.WithBody("application/sdp", offerSDP))
		res := h.Send(inv)
		if !fake.Has(callID(inv)) {
			t.Fatal("offer did not reach the fake")
		}
		br := res.Branch(0)
		br.Respond(180)
		if cancel {
			h.Send(siptest.NewCancel(inv))
			br.Respond(487)
		} else {
			br.Respond(486)
		}
		if fake.Live() != 0 {
			t.Fatalf("cancel=%v: call still live:\n%s", cancel, res)
		}
		if last := fake.Commands()[len(fake.Commands())-1]; last.Name != "delete" || last.Call.CallID != callID(inv) {
			t.Fatalf("cancel=%v: last command %+v", cancel, last)
		}
	}
}

func callID(req *sip.Request) string { return req.CallID().Value() }
