package dialog_test

import (
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/asyncsip/asyncsip/async"
	"github.com/asyncsip/asyncsip/modules/dialog"
	"github.com/asyncsip/asyncsip/reactor"
	"github.com/asyncsip/asyncsip/siptest"
	"github.com/asyncsip/asyncsip/tm"
)

const calleeAddr = "10.0.0.2:5060"

// events records the tracker's events (the harness runs one loop).
type events []dialog.Event

func (e *events) DialogEvent(ev dialog.Event) { *e = append(*e, ev) }

func (e *events) kinds() []string {
	var out []string
	for _, ev := range *e {
		s := ev.Kind.String()
		if ev.Kind == dialog.TerminatedEvent {
			s += ":" + string(ev.Reason)
		}
		out = append(out, s)
	}
	return out
}

func (e *events) last() dialog.Event { return (*e)[len(*e)-1] }

// rig is a harness whose request route tracks each initial INVITE with
// opts and relays it to targets (the callee by default).
type rig struct {
	h   *siptest.Harness
	tr  *dialog.Tracker
	ev  *events
	err error // the last Track error
}

func newRig(t *testing.T, cfg dialog.Config, opts dialog.Options, targets ...string) *rig {
	t.Helper()
	if len(targets) == 0 {
		targets = []string{"sip:bob@" + calleeAddr}
	}
	r := &rig{ev: &events{}}
	cfg.Observer = r.ev
	if cfg.Logger == nil {
		cfg.Logger = testLogger(t)
	}
	r.tr = dialog.New(cfg)
	r.h = siptest.NewHarness(t, r.tr.Routes(tm.Routes{Request: func(c *tm.Context) {
		if c.InDialog() {
			_ = c.Relay()
			return
		}
		if r.err = r.tr.Track(c, opts); r.err != nil {
			if errors.Is(r.err, dialog.ErrLimit) {
				_ = c.Reply(486, "Busy Here")
				return
			}
			_ = c.Reply(503, "Service Unavailable")
			return
		}
		_ = c.Relay(targets...)
	}}))
	return r
}

// call sets up a confirmed call and returns the INVITE and the 200 the
// caller got.
func (r *rig) call(t *testing.T) (*sip.Request, *sip.Response) {
	t.Helper()
	inv := siptest.NewRequest("INVITE", "sip:bob@example.com")
	res := r.h.Send(inv)
	require.NoError(t, r.err)
	res.Branch(0).Respond(180)
	res.Branch(0).Respond(200)
	siptest.AssertReplied(t, res, 200)
	ok := res.LastReply().Response
	r.h.Send(siptest.NewDialog(inv, ok).Ack())
	return inv, ok
}

// calleeBye is the BYE the callee sends: From its tag, To the caller's,
// along the proxy's Record-Route, to the caller's Contact.
func calleeBye(inv *sip.Request, ok *sip.Response, cseq uint32) *sip.Request {
	var routes []string
	for _, h := range ok.GetHeaders("Record-Route") {
		routes = append(routes, h.Value())
	}
	return siptest.NewRequest("BYE", inv.Contact().Address.String(),
		siptest.WithFrom(ok.To().Value()), siptest.WithTo(inv.From().Value()),
		siptest.WithCallID(inv.CallID().Value()), siptest.WithCSeq(cseq),
		siptest.WithRoute(routes...), siptest.WithSource(calleeAddr))
}

// testLogger logs to the test at Info level and above.
func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

func idOf(inv *sip.Request) dialog.ID {
	tag, _ := inv.From().Params.Get("tag")
	return dialog.ID{CallID: inv.CallID().Value(), CallerTag: tag}
}

var trunk = dialog.Options{Profiles: []dialog.ProfileValue{{Profile: "trunk", Value: "gw1"}}}

func TestCallConfirmedAndByeFromCaller(t *testing.T) {
	r := newRig(t, dialog.Config{}, trunk)
	inv, ok := r.call(t)
	rec, found := r.tr.Get(idOf(inv))
	require.True(t, found)
	assert.Equal(t, dialog.Confirmed, rec.State)
	toTag, _ := ok.To().Params.Get("tag")
	assert.Equal(t, toTag, rec.CalleeTag)
	assert.Equal(t, 1, r.tr.Profile("trunk").Count("gw1"))
	assert.Equal(t, 1, r.tr.Active())

	r.h.Clock.Advance(90 * time.Second)
	bye := r.h.Send(siptest.NewDialog(inv, ok).Bye())
	siptest.AssertRelayedTo(t, bye, ok.Contact().Address.String())
	assert.Equal(t, 0, r.tr.Profile("trunk").Count("gw1"))
	assert.Equal(t, 0, r.tr.Active())
	_, found = r.tr.Get(idOf(inv))
	assert.False(t, found)
	assert.Equal(t, []string{"created", "confirmed", "terminated:bye-caller"}, r.ev.kinds())
	assert.Equal(t, 90*time.Second, r.ev.last().Duration)
	assert.Empty(t, r.h.Originated())
}

func TestByeFromCalleeTerminates(t *testing.T) {
	r := newRig(t, dialog.Config{}, trunk)
	inv, ok := r.call(t)
	bye := r.h.Send(calleeBye(inv, ok, 7))
	require.True(t, bye.Context() != nil && bye.Context().InDialog(), "the callee's BYE must follow the signed route:\n%s", bye)
	siptest.AssertRelayedTo(t, bye, inv.Contact().Address.String())
	assert.Equal(t, []string{"created", "confirmed", "terminated:bye-callee"}, r.ev.kinds())
	assert.Equal(t, 0, r.tr.Profile("trunk").Count("gw1"))
	assert.Equal(t, 0, r.tr.Active())
}

// A BYE with the right Call-ID and the caller's tag but another To tag
// (another dialog, say a second 2xx of a fork) does not end the call.
func TestByeOfAnotherDialogIgnored(t *testing.T) {
	r := newRig(t, dialog.Config{}, trunk)
	inv, ok := r.call(t)
	other := ok.Clone()
	other.To().Params.Add("tag", "someone-else")
	r.h.Send(siptest.NewDialog(inv, other).Bye())
	assert.Equal(t, 1, r.tr.Active())
	assert.Equal(t, 1, r.tr.Profile("trunk").Count("gw1"))
	r.h.Send(siptest.NewDialog(inv, ok).Bye())
	assert.Equal(t, 0, r.tr.Active())
}

func TestMaxDurationByesBothSides(t *testing.T) {
	opts := trunk
	opts.MaxDuration = time.Minute
	r := newRig(t, dialog.Config{}, opts)
	inv, ok := r.call(t)
	r.h.Clock.Advance(59 * time.Second)
	require.Empty(t, r.h.Originated())
	r.h.Clock.Advance(time.Second)

	orig := r.h.Originated()
	require.Len(t, orig, 2)
	byTarget := map[string]*siptest.Originated{}
	for _, o := range orig {
		assert.Equal(t, sip.BYE, o.Method)
		byTarget[o.Recipient.String()] = o
	}
	toCallee := byTarget[ok.Contact().Address.String()]
	toCaller := byTarget[inv.Contact().Address.String()]
	require.NotNil(t, toCallee, "BYE to the callee's Contact: %v", orig)
	require.NotNil(t, toCaller, "BYE to the caller's Contact: %v", orig)
	// The caller's side: From the caller (its tag), To the callee, CSeq
	// above the INVITE's; the callee's side the other way round.
	callerTag, _ := inv.From().Params.Get("tag")
	calleeTag, _ := ok.To().Params.Get("tag")
	ft, _ := toCallee.From().Params.Get("tag")
	tt, _ := toCallee.To().Params.Get("tag")
	assert.Equal(t, []string{callerTag, calleeTag}, []string{ft, tt})
	assert.Greater(t, toCallee.CSeq().SeqNo, inv.CSeq().SeqNo)
	ft, _ = toCaller.From().Params.Get("tag")
	tt, _ = toCaller.To().Params.Get("tag")
	assert.Equal(t, []string{calleeTag, callerTag}, []string{ft, tt})

	assert.Equal(t, 0, r.tr.Profile("trunk").Count("gw1"))
	assert.Equal(t, []string{"created", "confirmed", "terminated:timeout"}, r.ev.kinds())
	assert.Equal(t, time.Minute, r.ev.last().Duration)
	toCallee.Respond(200)
	toCaller.Respond(200)
	st := r.tr.Stats()
	assert.Equal(t, uint64(2), st.ByeSent)
	assert.Zero(t, st.ByeFailed)
	// A late BYE from the caller finds no call and is relayed as usual.
	bye := r.h.Send(siptest.NewDialog(inv, ok).Bye())
	siptest.AssertRelayedTo(t, bye, ok.Contact().Address.String())
	assert.Len(t, *r.ev, 3)
}

// The callee's own requests raise the CSeq the proxy uses towards the
// caller, so the tracker's BYE is above them.
func TestByeToCallerFollowsCalleeCSeq(t *testing.T) {
	opts := dialog.Options{MaxDuration: time.Minute}
	r := newRig(t, dialog.Config{}, opts)
	inv, ok := r.call(t)
	info := calleeBye(inv, ok, 41)
	info.Method = "INFO"
	info.CSeq().MethodName = "INFO"
	r.h.Send(info)
	r.h.Clock.Advance(time.Minute)
	for _, o := range r.h.Originated() {
		if o.Recipient.String() == inv.Contact().Address.String() {
			assert.Equal(t, uint32(42), o.CSeq().SeqNo)
			return
		}
	}
	t.Fatalf("no BYE to the caller: %v", r.h.Originated())
}

func TestBYEUnansweredCountsFailure(t *testing.T) {
	r := newRig(t, dialog.Config{}, dialog.Options{MaxDuration: time.Second})
	r.call(t)
	r.h.Clock.Advance(time.Second)
	require.Len(t, r.h.Originated(), 2)
	r.h.Originated()[0].Respond(481)
	r.h.Clock.Advance(40 * time.Second) // Timer F for the other
	assert.Equal(t, uint64(2), r.tr.Stats().ByeFailed)
	assert.Equal(t, 0, r.tr.Active())
}

func TestPingFailureByesBothSides(t *testing.T) {
	opts := trunk
	opts.PingInterval = 10 * time.Second
	opts.PingFailures = 2
	r := newRig(t, dialog.Config{PingTimeout: 2 * time.Second}, opts)
	inv, ok := r.call(t)

	// First round: both sides answer.
	r.h.Clock.Advance(10 * time.Second)
	orig := r.h.Originated()
	require.Len(t, orig, 2)
	for _, o := range orig {
		require.Equal(t, sip.OPTIONS, o.Method)
		o.Respond(200)
	}
	// Two rounds where the callee does not answer (the caller does).
	for round := range 2 {
		r.h.Clock.Advance(10*time.Second - time.Duration(round)*2*time.Second) // to the next ping
		orig = r.h.Originated()
		require.Len(t, orig, 4+2*round, "round %d", round)
		for _, o := range orig[len(orig)-2:] {
			require.Equal(t, sip.OPTIONS, o.Method)
			if o.Recipient.String() == inv.Contact().Address.String() {
				o.Respond(200)
			}
		}
		r.h.Clock.Advance(2 * time.Second) // the callee's ping times out
	}
	orig = r.h.Originated()
	require.Len(t, orig, 8, "two BYEs after the second failure")
	for _, o := range orig[6:] {
		assert.Equal(t, sip.BYE, o.Method)
		o.Respond(200)
	}
	assert.Equal(t, []string{"created", "confirmed", "terminated:ping-failure"}, r.ev.kinds())
	assert.Equal(t, 0, r.tr.Profile("trunk").Count("gw1"))
	st := r.tr.Stats()
	assert.Equal(t, uint64(6), st.PingSent)
	assert.Equal(t, uint64(2), st.PingFailed)
	_ = ok
	// No more pings once the call ended.
	r.h.Clock.Advance(time.Minute)
	assert.Len(t, r.h.Originated(), 8)
}

// A 481 (the side forgot the dialog) is a failure; a 405 or 501 is alive.
func TestPing481IsFailure405Alive(t *testing.T) {
	opts := dialog.Options{PingInterval: 10 * time.Second, PingFailures: 1}
	r := newRig(t, dialog.Config{}, opts)
	r.call(t)
	r.h.Clock.Advance(10 * time.Second)
	for _, o := range r.h.Originated() {
		o.Respond(405)
	}
	assert.Equal(t, 1, r.tr.Active())
	r.h.Clock.Advance(10 * time.Second)
	orig := r.h.Originated()
	require.Len(t, orig, 4)
	orig[2].Respond(481)
	assert.Equal(t, 0, r.tr.Active())
	assert.Equal(t, dialog.PingFailure, r.ev.last().Reason)
}

func TestForkedEarlyDialogs(t *testing.T) {
	r := newRig(t, dialog.Config{}, trunk, "sip:bob@10.0.0.2:5060", "sip:bob@10.0.0.3:5060")
	inv := siptest.NewRequest("INVITE", "sip:bob@example.com")
	res := r.h.Send(inv)
	require.Len(t, res.Relayed(), 2)
	res.Branch(0).Respond(180, siptest.WithToTag("fork-a"))
	rec, _ := r.tr.Get(idOf(inv))
	assert.Equal(t, dialog.Early, rec.State)
	res.Branch(1).Respond(183, siptest.WithToTag("fork-b"))
	res.Branch(0).Respond(180, siptest.WithToTag("fork-a")) // again: one early dialog per tag
	rec, _ = r.tr.Get(idOf(inv))
	assert.Equal(t, []string{"fork-a", "fork-b"}, rec.EarlyTags)

	res.Branch(1).Respond(200, siptest.WithToTag("fork-b"))
	siptest.AssertReplied(t, res, 200)
	rec, _ = r.tr.Get(idOf(inv))
	assert.Equal(t, dialog.Confirmed, rec.State)
	assert.Equal(t, "fork-b", rec.CalleeTag)
	assert.Contains(t, rec.ToCallee.RemoteTarget, "10.0.0.3")

	ok := res.LastReply().Response
	r.h.Send(siptest.NewDialog(inv, ok).Ack())
	// The other fork's early dialog ends with the INVITE (tm cancels it);
	// a BYE naming it does not end the call.
	forkA := ok.Clone()
	forkA.To().Params.Add("tag", "fork-a")
	r.h.Send(siptest.NewDialog(inv, forkA).Bye())
	assert.Equal(t, 1, r.tr.Active())
	r.h.Send(siptest.NewDialog(inv, ok).Bye())
	assert.Equal(t, 0, r.tr.Active())
	assert.Equal(t, []string{"created", "confirmed", "terminated:bye-caller"}, r.ev.kinds())
}

func TestRejectedCallTerminates(t *testing.T) {
	r := newRig(t, dialog.Config{}, trunk)
	inv := siptest.NewRequest("INVITE", "sip:bob@example.com")
	res := r.h.Send(inv)
	res.Branch(0).Respond(180)
	res.Branch(0).Respond(486)
	siptest.AssertReplied(t, res, 486)
	assert.Equal(t, []string{"created", "terminated:rejected"}, r.ev.kinds())
	assert.Equal(t, 486, r.ev.last().Code)
	assert.Zero(t, r.ev.last().Duration)
	assert.Equal(t, 0, r.tr.Profile("trunk").Count("gw1"))
	assert.Equal(t, 0, r.tr.Active())
}

func TestCancelledCallTerminates(t *testing.T) {
	r := newRig(t, dialog.Config{}, trunk)
	inv := siptest.NewRequest("INVITE", "sip:bob@example.com")
	res := r.h.Send(inv)
	res.Branch(0).Respond(180)
	assert.Equal(t, 1, r.tr.Profile("trunk").Count("gw1"))
	r.h.Send(siptest.NewCancel(inv))
	res.Branch(0).Respond(487)
	siptest.AssertReplied(t, res, 487)
	assert.Equal(t, []string{"created", "terminated:cancelled"}, r.ev.kinds())
	assert.Equal(t, 0, r.tr.Profile("trunk").Count("gw1"))
	assert.Equal(t, 0, r.tr.Active())
}

// A call the route answers itself (no branch, so no dialog through the
// proxy) is dropped when its transaction ends.
func TestNeverConfirmedDroppedAtTransactionEnd(t *testing.T) {
	ev := &events{}
	tr := dialog.New(dialog.Config{Observer: ev, Logger: testLogger(t)})
	h := siptest.NewHarness(t, tr.Routes(tm.Routes{Request: func(c *tm.Context) {
		require.NoError(t, tr.Track(c, trunk))
		_ = c.Reply(200, "OK")
	}}))
	h.Send(siptest.NewRequest("INVITE", "sip:bob@example.com"))
	assert.Equal(t, []string{"created", "terminated:not-confirmed"}, ev.kinds())
	assert.Equal(t, 0, tr.Active())
	assert.Equal(t, 0, tr.Profile("trunk").Count("gw1"))
}

func TestMaxDialogsCap(t *testing.T) {
	r := newRig(t, dialog.Config{MaxDialogs: 2}, trunk)
	r.call(t)
	r.call(t)
	res := r.h.Send(siptest.NewRequest("INVITE", "sip:bob@example.com"))
	siptest.AssertReplied(t, res, 503)
	assert.ErrorIs(t, r.err, dialog.ErrOverloaded)
	assert.ErrorIs(t, r.err, async.ErrOverloaded)
	assert.Equal(t, 2, r.tr.Active())
	assert.Equal(t, 2, r.tr.Profile("trunk").Count("gw1"))
	assert.Equal(t, uint64(1), r.tr.Stats().Overloaded)
}

func TestProfileLimit(t *testing.T) {
	opts := dialog.Options{Profiles: []dialog.ProfileValue{
		{Profile: "user", Value: "alice"},
		{Profile: "trunk", Value: "gw1", Limit: 1},
	}}
	r := newRig(t, dialog.Config{}, opts)
	inv, ok := r.call(t)
	res := r.h.Send(siptest.NewRequest("INVITE", "sip:bob@example.com"))
	siptest.AssertReplied(t, res, 486)
	assert.ErrorIs(t, r.err, dialog.ErrLimit)
	// The refused call counts nowhere, not even in the profile before.
	assert.Equal(t, 1, r.tr.Profile("user").Count("alice"))
	assert.Equal(t, map[string]int{"gw1": 1}, r.tr.Profile("trunk").Values())
	r.h.Send(siptest.NewDialog(inv, ok).Bye())
	r.call(t) // room again
	assert.Equal(t, 1, r.tr.Profile("trunk").Count("gw1"))
}

func TestTrackRefusesWhatIsNotAnInitialInvite(t *testing.T) {
	tr := dialog.New(dialog.Config{Logger: testLogger(t)})
	var errs []error
	h := siptest.NewHarness(t, tr.Routes(tm.Routes{Request: func(c *tm.Context) {
		errs = append(errs, tr.Track(c, dialog.Options{}))
		if c.Method() == sip.INVITE {
			errs = append(errs, tr.Track(c, dialog.Options{})) // twice
		}
		_ = c.Reply(404, "")
	}}))
	h.Send(siptest.NewRequest("MESSAGE", "sip:bob@example.com"))
	h.Send(siptest.NewRequest("INVITE", "sip:bob@example.com"))
	require.Len(t, errs, 3)
	assert.ErrorIs(t, errs[0], dialog.ErrNotInitialInvite)
	assert.NoError(t, errs[1])
	assert.ErrorIs(t, errs[2], dialog.ErrTracked)
	assert.Equal(t, 0, tr.Active())
}

// Tracker.End ends a confirmed call from outside any route: BYE to both.
func TestEndFromAPI(t *testing.T) {
	r := newRig(t, dialog.Config{}, trunk)
	inv, _ := r.call(t)
	require.True(t, r.tr.End(idOf(inv)))
	r.h.Run(func(*reactor.Loop) {}) // let the loop run the posted end
	require.Len(t, r.h.Originated(), 2)
	assert.Equal(t, dialog.Ended, r.ev.last().Reason)
	assert.False(t, r.tr.End(idOf(inv)))
}

// The calls live in the tracker: replacing the routes (wrapped again)
// keeps them, and a BYE after the swap still ends the call.
func TestRoutesHotSwapKeepsCalls(t *testing.T) {
	r := newRig(t, dialog.Config{}, trunk)
	inv, ok := r.call(t)
	relayed := 0
	r.h.Server.SetRoutes(r.tr.Routes(tm.Routes{Request: func(c *tm.Context) {
		relayed++
		_ = c.Relay()
	}}))
	r.h.Send(siptest.NewDialog(inv, ok).Bye())
	assert.Equal(t, 1, relayed)
	assert.Equal(t, 0, r.tr.Active())
	assert.Equal(t, 0, r.tr.Profile("trunk").Count("gw1"))
}

// A re-INVITE answered 2xx refreshes both remote targets: the tracker's
// BYEs go where the sides now are.
func TestReinviteRefreshesTargets(t *testing.T) {
	r := newRig(t, dialog.Config{}, dialog.Options{MaxDuration: time.Minute})
	inv, ok := r.call(t)
	d := siptest.NewDialog(inv, ok)
	reinv := d.Request("INVITE", siptest.WithContact("sip:alice@192.0.2.77:5070"))
	res := r.h.Send(reinv)
	res.Branch(0).Respond(200, siptest.WithContact("sip:bob@192.0.2.88:5080"))
	siptest.AssertReplied(t, res, 200)
	r.h.Send(d.Ack())
	// A re-INVITE that fails changes nothing.
	res = r.h.Send(d.Request("INVITE", siptest.WithContact("sip:alice@192.0.2.99:5070")))
	res.Branch(0).Respond(488)

	r.h.Clock.Advance(time.Minute)
	var targets []string
	for _, o := range r.h.Originated() {
		targets = append(targets, o.Method.String()+" "+o.Recipient.String())
		if o.Method == sip.BYE && o.Recipient.Host == "192.0.2.88" {
			assert.Greater(t, o.CSeq().SeqNo, reinv.CSeq().SeqNo, "the caller's CSeq space is past the re-INVITE")
		}
	}
	assert.ElementsMatch(t, []string{"BYE sip:bob@192.0.2.88:5080", "BYE sip:alice@192.0.2.77:5070"}, targets)
}

// A call neither confirmed nor ended within SetupBound of its last
// provisional answer is dropped, even while its transaction goes on.
func TestSetupBoundDropsUnconfirmedCall(t *testing.T) {
	r := newRig(t, dialog.Config{SetupBound: time.Minute}, trunk)
	res := r.h.Send(siptest.NewRequest("INVITE", "sip:bob@example.com"))
	res.Branch(0).Respond(180)
	r.h.Clock.Advance(59 * time.Second)
	res.Branch(0).Respond(180) // a provisional answer restarts the bound
	r.h.Clock.Advance(59 * time.Second)
	assert.Equal(t, 1, r.tr.Active())
	r.h.Clock.Advance(time.Second)
	assert.Equal(t, 0, r.tr.Active())
	assert.Equal(t, 0, r.tr.Profile("trunk").Count("gw1"))
	assert.Equal(t, []string{"created", "terminated:not-confirmed"}, r.ev.kinds())
	// The transaction's end later changes nothing.
	res.Branch(0).Respond(486)
	assert.Len(t, *r.ev, 2)
	assert.Equal(t, uint64(1), r.tr.Stats().Terminated)
}

// The maximum duration passes before the caller acknowledged the 2xx: the
// BYEs wait for the ACK and go out after it was relayed (RFC 3261 §15).
func TestTimeoutBeforeAckWaitsForAck(t *testing.T) {
	r := newRig(t, dialog.Config{}, dialog.Options{MaxDuration: time.Second})
	inv := siptest.NewRequest("INVITE", "sip:bob@example.com")
	res := r.h.Send(inv)
	res.Branch(0).Respond(200)
	r.h.Clock.Advance(2 * time.Second)
	assert.Empty(t, r.h.Originated(), "no BYE before the ACK")
	assert.Equal(t, 1, r.tr.Active())

	ok := res.LastReply().Response
	ack := r.h.Send(siptest.NewDialog(inv, ok).Ack())
	require.Len(t, ack.Forwarded(), 1)
	require.Len(t, r.h.Originated(), 2)
	// On the wire: the ACK to the callee, then the BYEs.
	var order []string
	for _, s := range r.h.Sent() {
		if req, isReq := s.Msg.(*sip.Request); isReq && (req.Method == sip.ACK || req.Method == sip.BYE) {
			order = append(order, req.Method.String()+" "+s.To.String())
		}
	}
	require.NotEmpty(t, order)
	assert.Equal(t, "ACK "+calleeAddr, order[0], "%v", order)
	assert.Equal(t, dialog.Timeout, r.ev.last().Reason)
}

// Without an ACK at all, the BYEs go out 64*T1 after the 2xx.
func TestTimeoutWithoutAckByesAfterAckWait(t *testing.T) {
	r := newRig(t, dialog.Config{}, dialog.Options{MaxDuration: time.Second})
	res := r.h.Send(siptest.NewRequest("INVITE", "sip:bob@example.com"))
	res.Branch(0).Respond(200)
	r.h.Clock.Advance(31 * time.Second)
	assert.Empty(t, r.h.Originated())
	r.h.Clock.Advance(time.Second)
	assert.Len(t, r.h.Originated(), 2)
	assert.Equal(t, 0, r.tr.Active())
}
