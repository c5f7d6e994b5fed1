package dialog_test

import (
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/asyncsip/asyncsip/async"
	"github.com/asyncsip/asyncsip/modules/dialog"
	"github.com/asyncsip/asyncsip/modules/shared"
	"github.com/asyncsip/asyncsip/reactor"
	"github.com/asyncsip/asyncsip/siptest"
	"github.com/asyncsip/asyncsip/tm"
)

// newSharedRig is newRig with TrackShared: the counter ops run for real
// (they complete at once, or never for a stuck counter).
func newSharedRig(t *testing.T, cfg dialog.Config, opts dialog.Options) *rig {
	t.Helper()
	r := &rig{ev: &events{}}
	cfg.Observer = r.ev
	cfg.Logger = testLogger(t)
	r.tr = dialog.New(cfg)
	r.h = siptest.NewHarness(t, r.tr.Routes(tm.Routes{Request: func(c *tm.Context) {
		if c.InDialog() {
			_ = c.Relay()
			return
		}
		r.tr.TrackShared(c, opts, func(err error) {
			if r.err = err; err != nil {
				if errors.Is(err, dialog.ErrLimit) {
					_ = c.Reply(486, "Busy Here")
					return
				}
				_ = c.Reply(503, "Service Unavailable")
				return
			}
			_ = c.Relay("sip:bob@" + calleeAddr)
		})
	}}), siptest.WithPassThrough("dialog.acquire", "dialog.release"))
	return r
}

var trunkOf1 = dialog.Options{Profiles: []dialog.ProfileValue{{Profile: "trunk", Value: "gw1", Limit: 1}}}

// Two instances share one counter: the limit holds over both, and a call
// that ends frees its place for the other instance.
func TestTrackSharedLimitAcrossInstances(t *testing.T) {
	ctr := shared.NewMemoryCounter()
	a := newSharedRig(t, dialog.Config{Counter: ctr.For("a", 0)}, trunkOf1)
	b := newSharedRig(t, dialog.Config{Counter: ctr.For("b", 0)}, trunkOf1)
	inv, ok := a.call(t)
	res := b.h.Send(siptest.NewRequest("INVITE", "sip:bob@example.com"))
	siptest.AssertReplied(t, res, 486)
	require.ErrorIs(t, b.err, dialog.ErrLimit)
	assert.Equal(t, 0, b.tr.Active())
	assert.Equal(t, uint64(1), b.tr.Stats().Limited)

	a.h.Send(siptest.NewDialog(inv, ok).Bye())
	assert.Equal(t, 0, a.tr.Profile("trunk").Count("gw1"))
	b.call(t)
	assert.Equal(t, 1, b.tr.Profile("trunk").Count("gw1"))
	assert.Equal(t, int64(0), a.tr.Stats().Active)
}

// A refused call through the local limit gives its shared count back.
func TestTrackSharedLocalRefusalReleases(t *testing.T) {
	ctr := shared.NewMemoryCounter()
	a := newSharedRig(t, dialog.Config{Counter: ctr.For("a", 0)}, dialog.Options{Profiles: []dialog.ProfileValue{
		{Profile: "trunk", Value: "gw1", Limit: 5}, {Profile: "user", Value: "alice", Limit: 5}}})
	a.call(t)
	got := make(chan int, 1)
	loopRun(t, ctr.Total("trunk/gw1"), got)
	assert.Equal(t, 1, <-got)
}

func loopRun(t *testing.T, op async.Op[int], got chan int) {
	t.Helper()
	l := reactor.NewManual(nil)
	async.Launch(l, op, func(n int, err error) {
		require.NoError(t, err)
		got <- n
	})
	l.RunPending()
}

// stuckCounter never answers: Redis hung.
type stuckCounter struct{}

func never[T any]() async.Op[T] {
	return async.OpFunc[T](func(*reactor.Loop, func(T, error)) func() { return nil })
}

func (stuckCounter) Acquire(string, int) async.Op[shared.Acquired] { return never[shared.Acquired]() }
func (stuckCounter) Release(string) async.Op[int]                  { return never[int]() }
func (stuckCounter) Total(string) async.Op[int]                    { return never[int]() }
func (stuckCounter) Sync(map[string]int) async.Op[struct{}]        { return never[struct{}]() }

// A counter that does not answer: after CounterTimeout the call goes on,
// limited by this instance alone (fail open, the default).
func TestTrackSharedCounterDownFailsOpenToLocalLimit(t *testing.T) {
	r := newSharedRig(t, dialog.Config{Counter: stuckCounter{}, CounterTimeout: 200 * time.Millisecond}, trunkOf1)
	inv := siptest.NewRequest("INVITE", "sip:bob@example.com")
	res := r.h.Send(inv)
	assert.Empty(t, res.Relayed(), "relayed before the counter answered")
	r.h.Clock.Advance(200 * time.Millisecond)
	require.NoError(t, r.err)
	require.Len(t, res.Relayed(), 1, "the call goes on once the counter timed out")
	assert.Equal(t, 1, r.tr.Profile("trunk").Count("gw1"))
	assert.Equal(t, uint64(1), r.tr.Stats().SharedFailed)

	res2 := r.h.Send(siptest.NewRequest("INVITE", "sip:bob@example.com"))
	r.h.Clock.Advance(200 * time.Millisecond)
	siptest.AssertReplied(t, res2, 486) // the local limit still holds
	require.ErrorIs(t, r.err, dialog.ErrLimit)
}

// With CounterFailClosed the call is refused when the counter fails.
func TestTrackSharedCounterDownFailClosed(t *testing.T) {
	r := newSharedRig(t, dialog.Config{Counter: stuckCounter{}, CounterTimeout: 200 * time.Millisecond,
		CounterFailClosed: true}, trunkOf1)
	res := r.h.Send(siptest.NewRequest("INVITE", "sip:bob@example.com"))
	r.h.Clock.Advance(200 * time.Millisecond)
	siptest.AssertReplied(t, res, 503)
	require.ErrorIs(t, r.err, dialog.ErrCounterUnavailable)
	require.ErrorIs(t, r.err, async.ErrTimeout)
	assert.Equal(t, 0, r.tr.Active())
	assert.Equal(t, 0, r.tr.Profile("trunk").Count("gw1"))
}

// The heartbeat states the instance's own counts: a release lost while
// the counter was unreachable is corrected.
func TestSyncSharedCorrectsTheCounter(t *testing.T) {
	ctr := shared.NewMemoryCounter()
	mine := ctr.For("a", 0)
	r := newSharedRig(t, dialog.Config{Counter: mine}, trunk)
	r.call(t)
	r.call(t)
	l := reactor.NewManual(nil)
	got := make(chan int, 1)
	async.Launch(l, mine.Sync(map[string]int{"trunk/gw1": 7}), nil) // a wrong count, as after a lost op
	loopRun(t, ctr.Total("trunk/gw1"), got)
	require.Equal(t, 7, <-got)
	r.tr.SyncShared(l)
	l.RunPending()
	loopRun(t, ctr.Total("trunk/gw1"), got)
	assert.Equal(t, 2, <-got)
	_, err := r.tr.StartShared(nil)
	require.Error(t, err, "StartShared needs a group")
	_, err = dialog.New(dialog.Config{}).StartShared(reactor.NewManualGroup(1, nil))
	require.Error(t, err, "StartShared needs a counter")
}
