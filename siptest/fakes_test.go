package siptest_test

import (
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/asyncsip/asyncsip/async"
	"github.com/asyncsip/asyncsip/reactor"
	"github.com/asyncsip/asyncsip/siptest"
	"github.com/asyncsip/asyncsip/tm"
)

// Answers answers a route's own ops by name; its answers complete, fail,
// come late on the clock, or never.
func TestAnswers(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		answer  siptest.Answer
		advance time.Duration
		want    int
		relay   string
		state   siptest.AwaitState
	}{
		{"value", siptest.Answer{Value: "sip:1555@10.0.0.1"}, 0, 0, "sip:1555@10.0.0.1", siptest.AwaitCompleted},
		{"zero value", siptest.Answer{}, 0, 404, "", siptest.AwaitCompleted},
		{"error", siptest.Answer{Err: errors.New("connection refused")}, 0, 503, "", siptest.AwaitFailed},
		{"late: the 2 s timeout first", siptest.Answer{Value: "sip:late@10.0.0.1", Delay: 3 * time.Second}, 5 * time.Second, 503, "", siptest.AwaitTimedOut},
		{"never", siptest.Answer{Value: "sip:x@10.0.0.1", Never: true}, 2 * time.Second, 503, "", siptest.AwaitTimedOut},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := siptest.NewHarness(t, lcrRoute(neverCalled(t)), siptest.WithFakes(siptest.Answers{"lcr": tc.answer}))
			res := h.Send(siptest.NewRequest("INVITE", "sip:1555@example.com"))
			h.Clock.Advance(tc.advance)
			if tc.relay != "" {
				siptest.AssertRelayedTo(t, res, tc.relay)
			} else {
				siptest.AssertReplied(t, res, tc.want)
			}
			assert.Equal(t, tc.state, res.Await(0).State())
		})
	}
}

// An await is found by its async.Name as well as by the name of its
// Blocking op; an op no fake knows is held until it times out.
func TestAnswersByAwaitName(t *testing.T) {
	t.Parallel()
	named := func(c *tm.Context) {
		op := async.OpFunc[string](func(*reactor.Loop, func(string, error)) func() { return nil })
		async.Await(c, op, func(gw string, err error) {
			if err != nil {
				_ = c.Reply(503, "")
				return
			}
			_ = c.Relay(gw)
		}, async.Name("route.lookup"), async.Timeout(time.Second))
	}
	fake := siptest.Answers{"route.lookup": {Value: "sip:gw@10.0.0.2"}}
	h := siptest.NewHarness(t, named, siptest.WithFakes(fake))
	siptest.AssertRelayedTo(t, h.Send(siptest.NewRequest("INVITE", "sip:1555@example.com")), "sip:gw@10.0.0.2")

	h = siptest.NewHarness(t, lcrRoute(neverCalled(t)), siptest.WithFakes(fake))
	res := h.Send(siptest.NewRequest("INVITE", "sip:1555@example.com"))
	assert.True(t, res.Await(0).Pending(), "no fake knows lcr: held")
	h.Clock.Advance(2 * time.Second)
	siptest.AssertReplied(t, res, 503)
}

func TestFakeDelayBeatsTimeout(t *testing.T) {
	t.Parallel()
	h := siptest.NewHarness(t, lcrRoute(neverCalled(t)), siptest.WithFakes(siptest.Answers{"lcr": {Value: "sip:gw@10.0.0.1", Delay: 500 * time.Millisecond}}))
	res := h.Send(siptest.NewRequest("INVITE", "sip:1555@example.com"))
	assert.True(t, res.Suspended())
	h.Clock.Advance(499 * time.Millisecond)
	assert.True(t, res.Suspended())
	h.Clock.Advance(time.Millisecond)
	siptest.AssertRelayedTo(t, res, "sip:gw@10.0.0.1")
	assert.Contains(t, res.Await(0).String(), `completed (Answers["lcr"])`)
}

// The first fake that knows the op answers; Answer.By names it in the
// exchange.
func TestFakeOrderAndBy(t *testing.T) {
	t.Parallel()
	first := siptest.Answers{"lcr": {Value: "sip:gw@10.0.0.6", By: "first table"}}
	second := siptest.Answers{"lcr": {Value: "sip:other@10.0.0.7"}}
	h := siptest.NewHarness(t, lcrRoute(neverCalled(t)), siptest.WithFakes(siptest.Answers{"db.query": {}}, first, second))
	res := h.Send(siptest.NewRequest("INVITE", "sip:1555@example.com"))
	siptest.AssertRelayedTo(t, res, "sip:gw@10.0.0.6", "the first fake that knows the op answers")
	assert.Contains(t, res.Await(0).String(), "completed (first table)")
}

// An answer of a type the resume does not take fails the await (the route
// gets an error, never a panic) and the test, saying who answered.
func TestFakeAnswerOfTheWrongTypeFailsTheTest(t *testing.T) {
	t.Parallel()
	rt := &recordingT{TB: t}
	h := siptest.NewHarness(rt, lcrRoute(neverCalled(t)), siptest.WithFakes(siptest.Answers{"lcr": {Value: 42, By: "the lcr answer"}}))
	res := h.Send(siptest.NewRequest("INVITE", "sip:1555@example.com"))
	siptest.AssertReplied(t, res, 503, "the resume got an error, not a panic")
	assert.ErrorIs(t, res.Await(0).Err(), async.ErrResultType)
	assert.Contains(t, rt.failures(), `the lcr answer answered "async.blocking: lcr"`)
}
