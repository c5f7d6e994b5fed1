package siptest_test

import (
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/asyncsip/asyncsip/async"
	"github.com/asyncsip/asyncsip/reactor"
	"github.com/asyncsip/asyncsip/siptest"
	"github.com/asyncsip/asyncsip/tm"
)

// probe is an OPTIONS probe's outcome, as a dispatcher would record it.
type probe struct {
	code int
	err  error
}

// launchProbe sends an OPTIONS to target from loop l and records the
// outcome in *out.
func launchProbe(t *testing.T, srv *tm.Server, l *reactor.Loop, target string, out *[]probe) {
	req, err := srv.NewRequest(tm.OutOfDialog{Method: sip.OPTIONS, Target: target})
	require.NoError(t, err)
	async.Launch(l, srv.Send(req, tm.SendOptions{}), func(resp *sip.Response, err error) {
		p := probe{err: err}
		if resp != nil {
			p.code = resp.StatusCode
		}
		*out = append(*out, p)
	}, async.Timeout(time.Minute))
}

func TestOriginatedFromTimerJob(t *testing.T) {
	h := siptest.NewHarness(t, func(c *tm.Context) { _ = c.Reply(404, "") })
	var got []probe
	job, err := h.Group().Every(30*time.Second, func(l *reactor.Loop) {
		launchProbe(t, h.Server, l, "sip:gw@10.0.0.7:5060", &got)
	}, reactor.Skip)
	require.NoError(t, err)
	defer job.Stop()

	h.Clock.Advance(30 * time.Second)
	require.Len(t, h.Originated(), 1)
	o := h.Originated()[0]
	assert.Equal(t, sip.OPTIONS, o.Method)
	assert.Equal(t, "10.0.0.7:5060", o.Addr.String())
	assert.Len(t, o.GetHeaders("Via"), 1, "only the proxy's Via")
	o.Respond(200)
	assert.Equal(t, []probe{{code: 200}}, got)

	// The next probe goes unanswered: Timer E retransmits it, Timer F
	// (32 s) ends it with the 408 error.
	h.Clock.Advance(30 * time.Second)
	require.Len(t, h.Originated(), 2)
	h.Clock.Advance(32 * time.Second)
	assert.Equal(t, 10, h.Originated()[1].Retransmissions(), "Timer E: 0.5, 1.5, 3.5, 7.5 s then every 4 s")
	require.Len(t, got, 2)
	assert.ErrorIs(t, got[1].err, tm.ErrOriginatedTimeout)
	st := h.Server.Stats().Originated
	assert.EqualValues(t, 1, st.Completed)
	assert.EqualValues(t, 1, st.TimedOut)
}

func TestOriginatedAnswerFromElsewhereIgnored(t *testing.T) {
	h := siptest.NewHarness(t, func(c *tm.Context) { _ = c.Reply(404, "") })
	var got []probe
	h.Run(func(l *reactor.Loop) { launchProbe(t, h.Server, l, "sip:gw@10.0.0.7", &got) })
	o := h.Originated()[0]
	o.Respond(200, siptest.WithSource("10.0.0.66:5060"))
	assert.Empty(t, got, "a response from another host does not count")
	assert.EqualValues(t, 1, h.Server.Stats().DropSource)
	o.Respond(503)
	assert.Equal(t, []probe{{code: 503}}, got)
	assert.Len(t, o.Responses(), 1)
}

// A route that checks a presence server before it relays: the NOTIFY it
// originates is awaited like any op, and answered by the test.
func TestOriginatedFromRoute(t *testing.T) {
	route := func(c *tm.Context) {
		req, err := c.Server().NewRequest(tm.OutOfDialog{Method: sip.NOTIFY, Target: "sip:presence@10.0.0.8",
			Headers: []sip.Header{sip.NewHeader("Event", "dialog")}})
		if err != nil {
			_ = c.Reply(500, "")
			return
		}
		async.Await(c, c.Server().Send(req, tm.SendOptions{Timeout: 5 * time.Second}), func(resp *sip.Response, err error) {
			if err != nil || resp.StatusCode >= 300 {
				_ = c.Reply(503, "Presence unavailable")
				return
			}
			_ = c.Relay("sip:bob@10.0.0.2")
		}, async.Timeout(6*time.Second))
	}
	h := siptest.NewHarness(t, route)
	res := h.Send(siptest.NewRequest("INVITE", "sip:bob@example.com"))
	assert.True(t, res.Suspended())
	require.Len(t, h.Originated(), 1)
	n := h.Originated()[0]
	assert.Equal(t, "dialog", n.GetHeaders("Event")[0].Value())
	n.Respond(200)
	siptest.AssertRelayedTo(t, res, "sip:bob@10.0.0.2")

	res = h.Send(siptest.NewRequest("INVITE", "sip:bob@example.com"))
	h.Originated()[1].Respond(481)
	siptest.AssertReplied(t, res, 503)

	// Unanswered: the send's own timeout ends the NOTIFY, the route answers.
	res = h.Send(siptest.NewRequest("INVITE", "sip:bob@example.com"))
	h.Clock.Advance(5 * time.Second)
	siptest.AssertReplied(t, res, 503)
	assert.Equal(t, 3, h.Originated()[2].Retransmissions(), "Timer E at 0.5, 1.5 and 3.5 s")
}

// The proxy ends a call it record-routed: a BYE to each side, built from
// the INVITE and the 200 with tm.CallDialogs.
func TestOriginatedByeBothSides(t *testing.T) {
	var callee, caller tm.DialogState
	routes := tm.Routes{
		Request: func(c *tm.Context) { _ = c.Relay("sip:bob@10.0.0.2:5060") },
		Reply: func(c *tm.Context) {
			if c.Resp.StatusCode == 200 {
				var err error
				callee, caller, err = c.Server().CallDialogs(c.Req(), c.Resp)
				require.NoError(t, err)
			}
		},
	}
	h := siptest.NewHarness(t, routes)
	inv := siptest.NewRequest("INVITE", "sip:bob@example.com")
	res := h.Send(inv)
	res.Branch(0).Respond(200)
	siptest.AssertReplied(t, res, 200)

	var codes []int
	h.Run(func(l *reactor.Loop) {
		for _, d := range []*tm.DialogState{&callee, &caller} {
			bye, err := d.Request(sip.BYE)
			require.NoError(t, err)
			async.Launch(l, h.Server.Send(bye, tm.SendOptions{}), func(resp *sip.Response, err error) {
				require.NoError(t, err)
				codes = append(codes, resp.StatusCode)
			}, async.Timeout(time.Minute))
		}
	})
	byes := h.Originated()
	require.Len(t, byes, 2)
	assert.Equal(t, "10.0.0.2:5060", byes[0].Addr.String(), "to the callee")
	assert.Equal(t, "sip:10.0.0.2:5060", byes[0].Recipient.String(), "the callee's Contact")
	assert.Equal(t, siptest.DefaultUAC, byes[1].Addr.String(), "to the caller")
	assert.Equal(t, inv.Contact().Address.String(), byes[1].Recipient.String(), "the caller's Contact")
	fromTag, _ := inv.From().Params.Get("tag")
	got, _ := byes[0].From().Params.Get("tag")
	assert.Equal(t, fromTag, got, "towards the callee the proxy speaks for the caller")
	got, _ = byes[1].To().Params.Get("tag")
	assert.Equal(t, fromTag, got, "towards the caller it speaks for the callee")
	assert.Equal(t, inv.CSeq().SeqNo+1, byes[0].CSeq().SeqNo)
	byes[0].Respond(200)
	byes[1].Respond(200)
	assert.Equal(t, []int{200, 200}, codes)
}
