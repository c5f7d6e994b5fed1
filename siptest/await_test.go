package siptest_test

import (
	"context"
	"errors"
	"reflect"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/asyncsip/asyncsip/async"
	"github.com/asyncsip/asyncsip/reactor"
	"github.com/asyncsip/asyncsip/siptest"
	"github.com/asyncsip/asyncsip/tm"
)

var errLookup = errors.New("lookup failed")

// lcrRoute looks the gateway up with a blocking call (standing in for a
// database) and relays there; 503 when the lookup fails or times out, 404
// when it finds nothing.
func lcrRoute(lookup func(ctx context.Context, user string) (string, error)) func(c *tm.Context) {
	return func(c *tm.Context) {
		if c.InDialog() {
			_ = c.Relay()
			return
		}
		user := c.Recipient().User
		async.Await(c, async.Blocking(func(ctx context.Context) (string, error) { return lookup(ctx, user) }, async.Name("lcr")),
			func(gw string, err error) {
				switch {
				case err != nil:
					c.Set("err", err)
					_ = c.Reply(503, "Routing unavailable")
				case gw == "":
					_ = c.Reply(404, "")
				default:
					_ = c.Relay(gw)
				}
			}, async.Timeout(2*time.Second))
	}
}

func neverCalled(t *testing.T) func(context.Context, string) (string, error) {
	return func(context.Context, string) (string, error) {
		t.Error("the real lookup ran: the harness should hold it")
		return "", nil
	}
}

func TestAwaitHeldAndCompleted(t *testing.T) {
	t.Parallel()
	h := siptest.NewHarness(t, lcrRoute(neverCalled(t)))
	inv := siptest.NewRequest("INVITE", "sip:+15551234@example.com")
	res := h.Send(inv)
	siptest.AssertReplies(t, res, []int{100}, "suspended: only 100 Trying")
	siptest.AssertAwaiting(t, res, "lcr")
	siptest.AssertAwaiting(t, res, "async.blocking")
	assert.True(t, res.Suspended())
	w := res.Await(0)
	assert.Equal(t, "", w.Name, "the route named the Blocking op, not the await")
	assert.Equal(t, "async.blocking: lcr", w.Desc)
	assert.Equal(t, reflect.TypeFor[string](), w.Type)
	assert.Equal(t, 2*time.Second, w.Timeout)
	assert.Equal(t, siptest.AwaitPending, w.State())
	assert.True(t, w.Pending())
	assert.Same(t, res, w.Result())
	assert.NotNil(t, w.Op())
	assert.Equal(t, []*siptest.Await{w}, h.Awaits())
	assert.EqualValues(t, 1, h.Server.Stats().Suspended)

	h.Send(inv) // a retransmission while suspended is absorbed
	siptest.AssertRepliesOnWire(t, res, []int{100, 100}, "the 100 Trying is sent again")
	siptest.AssertReplies(t, res, []int{100})

	require.NoError(t, w.Complete("sip:gw1@10.0.0.1", nil))
	assert.Equal(t, siptest.AwaitCompleted, w.State())
	assert.NoError(t, w.Err())
	siptest.AssertRelayedTo(t, res, "sip:gw1@10.0.0.1")
	assert.False(t, res.Suspended())
	assert.Contains(t, w.String(), "completed (test)")
	require.ErrorIs(t, w.Complete("again", nil), async.ErrNotPending)
}

func TestAwaitOutcomes(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name      string
		complete  func(h *siptest.Harness, w *siptest.Await) error
		wantCode  int
		wantState siptest.AwaitState
		wantErr   error // what the route's resume got
	}{
		{"value", func(_ *siptest.Harness, w *siptest.Await) error { return w.Complete("", nil) }, 404, siptest.AwaitCompleted, nil},
		{"nil is the zero value", func(_ *siptest.Harness, w *siptest.Await) error { return w.Complete(nil, nil) }, 404, siptest.AwaitCompleted, nil},
		{"error", func(_ *siptest.Harness, w *siptest.Await) error { return w.Fail(errLookup) }, 503, siptest.AwaitFailed, errLookup},
		{"timeout", func(h *siptest.Harness, _ *siptest.Await) error { h.Clock.Advance(2 * time.Second); return nil }, 503, siptest.AwaitTimedOut, async.ErrTimeout},
		{"wrong type", func(_ *siptest.Harness, w *siptest.Await) error { return w.Complete(42, nil) }, 503, siptest.AwaitFailed, async.ErrResultType},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := siptest.NewHarness(t, lcrRoute(neverCalled(t)))
			res := h.Send(siptest.NewRequest("INVITE", "sip:+15551234@example.com"))
			w := res.Await(0)
			err := tc.complete(h, w)
			if tc.wantErr == async.ErrResultType {
				require.ErrorIs(t, err, async.ErrResultType, "Complete says the value was wrong")
				assert.Contains(t, err.Error(), "got int, the resume takes string")
			} else {
				require.NoError(t, err)
			}
			siptest.AssertReplied(t, res, tc.wantCode)
			assert.Equal(t, tc.wantState, w.State())
			got, _ := tm.Value[error](res.Context(), "err")
			if tc.wantErr == nil {
				assert.NoError(t, got)
				assert.NoError(t, w.Err())
			} else {
				assert.ErrorIs(t, got, tc.wantErr)
				assert.ErrorIs(t, w.Err(), tc.wantErr)
			}
		})
	}
}

func TestAwaitTimeoutOnlyAtTheDeadline(t *testing.T) {
	t.Parallel()
	h := siptest.NewHarness(t, lcrRoute(neverCalled(t)))
	res := h.Send(siptest.NewRequest("INVITE", "sip:+15551234@example.com"))
	h.Clock.Advance(2*time.Second - time.Millisecond)
	assert.True(t, res.Await(0).Pending())
	h.Clock.Advance(time.Millisecond)
	assert.Equal(t, siptest.AwaitTimedOut, res.Await(0).State())
	siptest.AssertReplied(t, res, 503)
}

func TestAwaitAbortedBySuspendBound(t *testing.T) {
	t.Parallel()
	route := func(c *tm.Context) {
		async.Await(c, query[string]("SELECT 1"), func(string, error) { t.Error("resume after abort") }, async.Timeout(time.Hour))
	}
	rt := &recordingT{TB: t}
	h := siptest.NewHarness(rt, route, siptest.WithConfig(tm.Config{Timers: tm.Timers{SuspendBound: 5 * time.Second}}))
	res := h.Send(siptest.NewRequest("OPTIONS", "sip:bob@example.com"))
	h.Clock.Advance(5 * time.Second)
	siptest.AssertReplied(t, res, 504)
	w := res.Await(0)
	assert.Equal(t, siptest.AwaitAborted, w.State())
	assert.ErrorIs(t, w.Err(), async.ErrCancelled)
	require.ErrorIs(t, w.Complete("late", nil), async.ErrNotPending)
	assert.Contains(t, rt.logged(), "suspension bound expired", "tm's warning reaches the test log")
	assert.Empty(t, rt.failures())
}

func TestCancelWhileSuspended(t *testing.T) {
	t.Parallel()
	h := siptest.NewHarness(t, lcrRoute(neverCalled(t)))
	inv := siptest.NewRequest("INVITE", "sip:+15551234@example.com")
	res := h.Send(inv)
	can := h.Send(siptest.NewCancel(inv))
	siptest.AssertReplies(t, can, []int{200})
	siptest.AssertReplies(t, res, []int{100, 487}, "the CANCEL answers the INVITE 487 at once")
	assert.False(t, res.Suspended(), "the route no longer waits")
	w := res.Await(0)
	assert.Equal(t, siptest.AwaitAborted, w.State(), "the op is aborted")
	require.ErrorIs(t, w.Complete("sip:gw1@10.0.0.1", nil), async.ErrNotPending, "a late completion does nothing")
	siptest.AssertReplies(t, res, []int{100, 487})
	siptest.AssertNotRelayed(t, res)
}

func TestAwaitInFailureAndReplyRoutes(t *testing.T) {
	t.Parallel()
	h := siptest.NewHarness(t, tm.Routes{
		Request: relayTo("sip:bob@10.0.0.2"),
		Reply: func(c *tm.Context) {
			if c.Resp.StatusCode == 180 {
				async.Await(c, query[string]("SELECT ringback"), func(string, error) {})
			}
		},
		Failure: func(c *tm.Context) {
			async.Await(c, query[string]("SELECT backup FROM gw"), func(gw string, err error) {
				if err == nil {
					_ = c.Relay(gw)
				}
			})
		},
	})
	res := h.Send(siptest.NewRequest("INVITE", "sip:bob@example.com"))
	res.Branch(0).Respond(180)
	siptest.AssertReplies(t, res, []int{100}, "the 180 waits for the reply route")
	require.NoError(t, res.Await(0).Complete("", nil))
	siptest.AssertReplies(t, res, []int{100, 180})
	res.Branch(0).Respond(503)
	siptest.AssertAwaiting(t, res, "db.query: SELECT backup")
	require.NoError(t, res.Await(1).Complete("sip:bob@10.0.0.3", nil))
	siptest.AssertRelayedTo(t, res, "sip:bob@10.0.0.3")
}

func TestChainedAwaits(t *testing.T) {
	t.Parallel()
	h := siptest.NewHarness(t, func(c *tm.Context) {
		async.Await(c, query[string]("SELECT account"), func(acct string, err error) {
			async.Await(c, query[int64]("SELECT credit WHERE account = ?", acct), func(credit int64, err error) {
				if err != nil || credit <= 0 {
					_ = c.Reply(402, "Payment Required")
					return
				}
				_ = c.Relay("sip:bob@10.0.0.2")
			})
		})
	})
	res := h.Send(siptest.NewRequest("INVITE", "sip:bob@example.com"))
	require.NoError(t, res.Await(0).Complete("acct-7", nil))
	require.Len(t, res.Awaits(), 2)
	assert.Equal(t, reflect.TypeFor[int64](), res.Await(1).Type)
	require.NoError(t, res.Await(1).Complete(int64(0), nil))
	siptest.AssertReplied(t, res, 402)
}

func TestSleepPassesThroughOnTheClock(t *testing.T) {
	t.Parallel()
	h := siptest.NewHarness(t, func(c *tm.Context) {
		async.Await(c, async.Sleep(time.Second), func(_ struct{}, err error) {
			_ = c.Reply(200, "")
		})
	})
	res := h.Send(siptest.NewRequest("OPTIONS", "sip:bob@example.com"))
	w := res.Await(0)
	assert.Equal(t, "async.sleep: 1s", w.Desc)
	assert.Equal(t, siptest.AwaitRunning, w.State())
	siptest.AssertAwaiting(t, res, "async.sleep")
	h.Clock.Advance(999 * time.Millisecond)
	assert.Empty(t, res.Replies())
	h.Clock.Advance(time.Millisecond)
	siptest.AssertReplied(t, res, 200)
	assert.Equal(t, siptest.AwaitCompleted, w.State())
	require.ErrorIs(t, w.Complete(struct{}{}, nil), async.ErrNotPending, "a passed-through op is not the test's to complete")

	h2 := siptest.NewHarness(t, func(c *tm.Context) {
		async.Await(c, async.Done("cached", nil), func(v string, _ error) { _ = c.Reply(200, v) })
	})
	res2 := h2.Send(siptest.NewRequest("OPTIONS", "sip:bob@example.com"))
	siptest.AssertReplied(t, res2, 200)
	assert.Equal(t, "cached", res2.LastReply().Reason, "a synchronous op resumes inline, as in production")
}

// timerOp completes after d on the loop's timers: a loop-only op that may
// pass through.
type timerOp struct{ d time.Duration }

func (o timerOp) Start(l *reactor.Loop, done func(string, error)) func() {
	t := l.AfterFunc(o.d, func() { done("timer", nil) })
	return func() { t.Stop() }
}

func TestPassThroughByName(t *testing.T) {
	t.Parallel()
	h := siptest.NewHarness(t, func(c *tm.Context) {
		async.Await(c, timerOp{time.Second}, func(v string, _ error) { _ = c.Reply(200, v) }, async.Name("local"))
	}, siptest.WithPassThrough("local"))
	res := h.Send(siptest.NewRequest("OPTIONS", "sip:bob@example.com"))
	assert.Equal(t, siptest.AwaitRunning, res.Await(0).State())
	h.Clock.Advance(time.Second)
	siptest.AssertReplied(t, res, 200)
	assert.Equal(t, "timer", res.LastReply().Reason)
}

func TestRealOpsAreWaitedFor(t *testing.T) {
	t.Parallel()
	var calls atomic.Int32
	h := siptest.NewHarness(t, lcrRoute(func(ctx context.Context, user string) (string, error) {
		calls.Add(1)
		time.Sleep(20 * time.Millisecond) // a real, slow lookup on the pool
		return "sip:" + user + "@10.0.0.9", nil
	}), siptest.WithRealOps("lcr"))
	res := h.Send(siptest.NewRequest("INVITE", "sip:+15551234@example.com"))
	siptest.AssertRelayedTo(t, res, "sip:+15551234@10.0.0.9", "Send waited for the real op")
	assert.Equal(t, int32(1), calls.Load())
	assert.Equal(t, siptest.AwaitCompleted, res.Await(0).State())
	assert.Contains(t, res.Await(0).String(), "(real op)")
}

func TestRealOpWaitIsBounded(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	rt := &recordingT{TB: t}
	h := siptest.NewHarness(rt, lcrRoute(func(ctx context.Context, _ string) (string, error) {
		select {
		case <-release:
		case <-time.After(10 * time.Second):
		}
		return "sip:late@10.0.0.9", nil
	}), siptest.WithRealOps("lcr"), siptest.WithRealOpWait(50*time.Millisecond))
	res := h.Send(siptest.NewRequest("INVITE", "sip:+15551234@example.com"))
	assert.Contains(t, rt.failures(), "1 real op(s) still running after 50ms")
	assert.Contains(t, rt.failures(), "async.blocking: lcr")
	close(release)
	h.Clock.Advance(0) // waits again: the op completes now
	siptest.AssertRelayedTo(t, res, "sip:late@10.0.0.9")
}
