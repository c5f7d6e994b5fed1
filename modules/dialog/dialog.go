package dialog

import (
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/asyncsip/asyncsip/async"
	"github.com/asyncsip/asyncsip/modules/shared"
	"github.com/asyncsip/asyncsip/reactor"
	"github.com/asyncsip/asyncsip/tm"
)

// Defaults of Config and Options.
const (
	// DefaultMaxDialogs is the default of Config.MaxDialogs.
	DefaultMaxDialogs = 100_000
	// DefaultSetupBound is the default of Config.SetupBound.
	DefaultSetupBound = 10 * time.Minute
	// DefaultPingTimeout is the default of Config.PingTimeout.
	DefaultPingTimeout = 5 * time.Second
	// DefaultPingFailures is the default of Options.PingFailures.
	DefaultPingFailures = 3
	// ackWait is how long after the 2xx the tracker waits for its ACK
	// before sending BYE (64*T1 with the RFC 3261 T1: the callee's Timer H
	// equivalent for 2xx retransmissions, §13.3.1.4).
	ackWait = 32 * time.Second
	// maxEarly bounds the early dialogs (forks) remembered per call.
	maxEarly = 16
)

// Errors of Track.
var (
	// ErrOverloaded: Config.MaxDialogs calls are tracked already. It
	// wraps async.ErrOverloaded.
	ErrOverloaded = fmt.Errorf("dialog: too many dialogs: %w", async.ErrOverloaded)
	// ErrLimit: a profile value of Options.Profiles is at its limit; the
	// call is not tracked and counts nowhere. The route usually answers
	// 486 Busy Here or 503.
	ErrLimit = errors.New("dialog: profile limit reached")
	// ErrNotInitialInvite: Track was called for something other than an
	// initial INVITE (with a Call-ID and a From tag, no To tag) in the
	// request route.
	ErrNotInitialInvite = errors.New("dialog: Track needs an initial INVITE in the request route")
	// ErrTracked: the call (Call-ID and From tag) is tracked already (a
	// second Track, or an INVITE that spiralled back through the proxy).
	ErrTracked = errors.New("dialog: call already tracked")
)

// State is the state of a tracked call.
type State uint8

// States, in order. A call is Pending from Track until a provisional
// answer with a To tag creates an early dialog (RFC 3261 §12.1), Early
// until the 2xx confirms one, Confirmed until it ends.
const (
	Pending State = iota
	Early
	Confirmed
	Terminated
)

func (s State) String() string {
	switch s {
	case Pending:
		return "pending"
	case Early:
		return "early"
	case Confirmed:
		return "confirmed"
	case Terminated:
		return "terminated"
	}
	return fmt.Sprintf("State(%d)", uint8(s))
}

// Reason says why a call ended.
type Reason string

// Reasons of termination.
const (
	// ByeCaller and ByeCallee: a BYE of the confirmed dialog came from
	// that side (counted when the request arrives, before it is relayed).
	ByeCaller Reason = "bye-caller"
	ByeCallee Reason = "bye-callee"
	// Rejected: the INVITE got a final answer other than 2xx (Event.Code).
	Rejected Reason = "rejected"
	// Cancelled: the caller cancelled the INVITE.
	Cancelled Reason = "cancelled"
	// NotConfirmed: the INVITE transaction ended without a 2xx that
	// passed through the proxy (dropped, or answered 2xx by a route), or
	// the call was not confirmed within Config.SetupBound.
	NotConfirmed Reason = "not-confirmed"
	// Timeout: Options.MaxDuration passed; the proxy sent BYE to both
	// sides.
	Timeout Reason = "timeout"
	// PingFailure: Options.PingFailures in-dialog OPTIONS in a row to one
	// side failed; the proxy sent BYE to both sides.
	PingFailure Reason = "ping-failure"
	// Ended: Tracker.End ended it; the proxy sent BYE to both sides.
	Ended Reason = "ended"
)

// ProfileValue names a profile value a call counts in, with an optional
// limit: Track refuses the call with ErrLimit when Limit calls already
// count there (zero: no limit). The check and the count are one atomic
// step of the Store, so concurrent calls on several loops cannot overshoot.
type ProfileValue struct {
	Profile, Value string
	Limit          int
}

// Options configures the tracking of one call (Track).
type Options struct {
	// MaxDuration, when above zero, ends the call that long after it was
	// confirmed: BYE to both sides, reason Timeout.
	MaxDuration time.Duration
	// PingInterval, when above zero, sends an in-dialog OPTIONS to each
	// side of a confirmed call every interval. A side that fails
	// PingFailures times in a row (no answer within Config.PingTimeout,
	// 408, 481, or unreachable) ends the call: BYE to both sides, reason
	// PingFailure. Any other answer counts as alive.
	PingInterval time.Duration
	// PingFailures is the failures in a row that end the call (default
	// DefaultPingFailures).
	PingFailures int
	// Profiles are the profile values the call counts in from Track until
	// it ends.
	Profiles []ProfileValue
}

// Config configures a Tracker. The zero value is useful.
type Config struct {
	// MaxDialogs bounds the calls tracked at once, across loops (default
	// DefaultMaxDialogs); Track beyond it fails with ErrOverloaded.
	MaxDialogs int
	// Store keeps records and profile counts (default NewMemoryStore()).
	Store Store
	// Observer receives the events of every call (nil: none).
	Observer Observer
	// Logger receives the tracker's logs (nil: slog.Default()).
	Logger *slog.Logger
	// SetupBound drops a call that is neither confirmed nor ended that long
	// after Track or after its last provisional answer (default
	// DefaultSetupBound). tm ends every INVITE transaction well before
	// (Timer C, 3 min after the last provisional answer); the bound keeps
	// memory bounded even if it did not.
	SetupBound time.Duration
	// PingTimeout bounds each in-dialog OPTIONS (default
	// DefaultPingTimeout, and never more than Options.PingInterval).
	PingTimeout time.Duration

	// Counter, when set, counts the profiles of the calls tracked with
	// TrackShared across every instance that shares it
	// (modules/shared/sharedredis); StartShared runs its heartbeat. See
	// TrackShared for what happens when it fails.
	Counter shared.Counter
	// CounterTimeout bounds each op of the Counter (default
	// DefaultCounterTimeout).
	CounterTimeout time.Duration
	// CounterSync is the heartbeat interval of StartShared (default
	// DefaultCounterSync); the counter's TTL must be a few of them.
	CounterSync time.Duration
	// CounterFailClosed refuses a call (ErrCounterUnavailable) when the
	// Counter fails; by default (false) the call goes on, counted and
	// limited by this instance alone until the counter answers again.
	CounterFailClosed bool
}

// EventKind is the kind of an Event.
type EventKind uint8

// Event kinds.
const (
	Created EventKind = iota + 1
	ConfirmedEvent
	TerminatedEvent
)

func (k EventKind) String() string {
	switch k {
	case Created:
		return "created"
	case ConfirmedEvent:
		return "confirmed"
	case TerminatedEvent:
		return "terminated"
	}
	return fmt.Sprintf("EventKind(%d)", uint8(k))
}

// Event is one step of a call, for CDRs: Created by Track, ConfirmedEvent
// on the 2xx, TerminatedEvent once, with its Reason.
type Event struct {
	Kind EventKind
	// Record is the call as it is after the step.
	Record Record
	// Time is when it happened, on the loop's clock.
	Time time.Time
	// Reason (TerminatedEvent) says why the call ended; Code is the final
	// status for Rejected.
	Reason Reason
	Code   int
	// Duration (TerminatedEvent) is the time from confirmation to the end,
	// zero for a call never confirmed.
	Duration time.Duration
}

// Observer receives the events of tracked calls. DialogEvent runs on the
// loop that owns the call, inside routes and timer jobs: it must not
// block (hand CDRs to a queue or an async op).
type Observer interface {
	DialogEvent(Event)
}

// ObserverFunc adapts a function to Observer.
type ObserverFunc func(Event)

// DialogEvent implements Observer.
func (f ObserverFunc) DialogEvent(e Event) { f(e) }

// Stats are the tracker's counters (Tracker.Stats).
type Stats struct {
	// Active is the number of calls tracked now.
	Active int64
	// Created, Confirmed and Terminated count calls through each step.
	Created, Confirmed, Terminated uint64
	// Overloaded counts Track refused by MaxDialogs, Limited those refused
	// by a profile limit.
	Overloaded, Limited uint64
	// ByeSent counts BYEs the tracker sent, ByeFailed those without a 2xx
	// or with no answer; PingSent and PingFailed the in-dialog OPTIONS.
	ByeSent, ByeFailed, PingSent, PingFailed uint64
	// ByReason counts the terminated calls per Reason.
	ByReason map[Reason]uint64
	// SharedFailed counts the ops of Config.Counter that failed or timed
	// out (acquires, releases, heartbeats).
	SharedFailed uint64
}

// reasons lists every Reason, for the per-reason counters.
var reasons = [...]Reason{ByeCaller, ByeCallee, Rejected, Cancelled, NotConfirmed, Timeout, PingFailure, Ended}

func reasonIndex(r Reason) int {
	for i, x := range reasons {
		if x == r {
			return i
		}
	}
	return -1
}

// Tracker tracks the calls that routes hand it (Track): their state, their
// profile counts, their maximum duration and in-dialog pings. It is safe
// for use from every loop at once. Its hooks into tm are the routes that
// Routes wraps.
type Tracker struct {
	cfg   Config
	store Store
	log   *slog.Logger

	active atomic.Int64
	seed   maphash.Seed
	shards [memShards]callShard

	created, confirmed, terminated atomic.Uint64
	overloaded, limited            atomic.Uint64
	byeSent, byeFailed             atomic.Uint64
	pingSent, pingFailed           atomic.Uint64
	byReason                       [len(reasons)]atomic.Uint64
	sharedFailed                   atomic.Uint64

	sh sharedState // Config.Counter's bookkeeping (shared.go)
}

type callShard struct {
	mu sync.Mutex
	m  map[ID]*call
}

// New returns a tracker. Hook it into the server with Routes, and track
// calls with Track from the request route.
func New(cfg Config) *Tracker {
	if cfg.MaxDialogs <= 0 {
		cfg.MaxDialogs = DefaultMaxDialogs
	}
	if cfg.Store == nil {
		cfg.Store = NewMemoryStore()
	}
	if cfg.SetupBound <= 0 {
		cfg.SetupBound = DefaultSetupBound
	}
	if cfg.PingTimeout <= 0 {
		cfg.PingTimeout = DefaultPingTimeout
	}
	t := &Tracker{cfg: cfg, store: cfg.Store, log: cfg.Logger, seed: maphash.MakeSeed(),
		sh: sharedState{names: map[string]bool{}, inFlight: map[string]int{}}}
	if t.log == nil {
		t.log = slog.Default()
	}
	for i := range t.shards {
		t.shards[i].m = map[ID]*call{}
	}
	return t
}

func (t *Tracker) shard(callID string) *callShard {
	return &t.shards[maphash.String(t.seed, callID)%memShards]
}

func (t *Tracker) lookup(id ID) *call {
	sh := t.shard(id.CallID)
	sh.mu.Lock()
	c := sh.m[id]
	sh.mu.Unlock()
	return c
}

// Active returns the number of calls tracked now.
func (t *Tracker) Active() int { return int(t.active.Load()) }

// Get returns the record of a tracked call from the store.
func (t *Tracker) Get(id ID) (Record, bool) { return t.store.Get(id) }

// Stats returns the tracker's counters.
func (t *Tracker) Stats() Stats {
	st := Stats{
		Active: t.active.Load(), Created: t.created.Load(), Confirmed: t.confirmed.Load(),
		Terminated: t.terminated.Load(), Overloaded: t.overloaded.Load(), Limited: t.limited.Load(),
		ByeSent: t.byeSent.Load(), ByeFailed: t.byeFailed.Load(),
		PingSent: t.pingSent.Load(), PingFailed: t.pingFailed.Load(),
		ByReason: make(map[Reason]uint64, len(reasons)), SharedFailed: t.sharedFailed.Load(),
	}
	for i, r := range reasons {
		st.ByReason[r] = t.byReason[i].Load()
	}
	return st
}

// Profile returns the profile name: the count of calls per value.
func (t *Tracker) Profile(name string) Profile { return Profile{t: t, name: name} }

// Profile is a named profile of a tracker: calls counted per value (per
// trunk, per user, per tenant).
type Profile struct {
	t    *Tracker
	name string
}

// Count returns the calls counted now under value.
func (p Profile) Count(value string) int { return p.t.store.Count(p.name, value) }

// Values returns the values counted now with their counts.
func (p Profile) Values() map[string]int { return p.t.store.Values(p.name) }

// End ends a tracked call from anywhere: a BYE to each side if it is
// confirmed (reason Ended), else it is just no longer tracked. It reports
// whether the call was tracked; the call ends on its owner loop, a little
// later.
func (t *Tracker) End(id ID) bool {
	c := t.lookup(id)
	if c == nil {
		return false
	}
	return c.loop.Post(func() { c.end(Ended) }) == nil
}

// ctxKey is the Context value naming the call a transaction tracks.
const ctxKey = "asyncsip/modules/dialog.call"

// Track starts tracking the call of c, an initial INVITE in the request
// route, with o. The call counts in o.Profiles at once (or not at all:
// ErrLimit), and until it ends: on a BYE from either side, a final answer
// other than 2xx, a CANCEL, the end of its INVITE transaction without a
// 2xx, its maximum duration or ping failures. Track fails with
// ErrOverloaded beyond Config.MaxDialogs, with ErrLimit when a profile
// value is at its limit, with ErrNotInitialInvite or ErrTracked; the
// route decides what to answer (486, 503). The tracker's routes
// (Tracker.Routes) must be installed for the call to be followed.
func (t *Tracker) Track(c *tm.Context, o Options) error {
	req := c.Req()
	if c.Kind() != tm.RouteRequest || req == nil || req.Method != sip.INVITE {
		return ErrNotInitialInvite
	}
	from, to, cid := req.From(), req.To(), req.CallID()
	if from == nil || to == nil || cid == nil || *cid == "" || to.Params.Has("tag") {
		return ErrNotInitialInvite
	}
	tag, _ := from.Params.Get("tag")
	if tag == "" {
		return ErrNotInitialInvite
	}
	if _, ok := c.Get(ctxKey); ok {
		return ErrTracked
	}
	if t.active.Add(1) > int64(t.cfg.MaxDialogs) {
		t.active.Add(-1)
		t.overloaded.Add(1)
		return ErrOverloaded
	}
	id := ID{CallID: string(*cid), CallerTag: tag}
	sh := t.shard(id.CallID)
	sh.mu.Lock()
	if sh.m[id] != nil {
		sh.mu.Unlock()
		t.active.Add(-1)
		return ErrTracked
	}
	cl := &call{t: t, srv: c.Server(), loop: c.Loop(), opts: o}
	sh.m[id] = cl // reserved: a concurrent Track of the same call fails
	sh.mu.Unlock()
	for i, p := range o.Profiles {
		if n, ok := t.store.Join(p.Profile, p.Value, p.Limit); !ok {
			for _, q := range o.Profiles[:i] {
				t.store.Leave(q.Profile, q.Value)
			}
			cl.done = true // an End posted meanwhile finds nothing to do
			sh.mu.Lock()
			delete(sh.m, id)
			sh.mu.Unlock()
			t.active.Add(-1)
			t.limited.Add(1)
			return fmt.Errorf("%w: profile %q value %q has %d of %d", ErrLimit, p.Profile, p.Value, n, p.Limit)
		}
	}
	if cl.opts.PingFailures <= 0 {
		cl.opts.PingFailures = DefaultPingFailures
	}
	now := cl.loop.Now()
	cl.rec = Record{ID: id, State: Pending, Created: now, Profiles: append([]ProfileValue(nil), o.Profiles...)}
	t.store.Put(cl.rec)
	c.Set(ctxKey, cl)
	cl.setup = cl.loop.AfterFunc(t.cfg.SetupBound, func() { cl.terminate(NotConfirmed, 0) })
	t.created.Add(1)
	cl.emit(Event{Kind: Created, Record: cl.rec, Time: now})
	return nil
}

// Routes returns r with the tracker's hooks around the request, reply and
// end routes: install the result (tm.NewServer, asyncsip.Server.SetRoutes,
// siptest.NewHarness), and wrap again when replacing routes at run time —
// the calls being tracked live in the tracker, not in the routes, so they
// survive the swap. The hooks run before the user's routes.
func (t *Tracker) Routes(r tm.Routes) tm.Routes {
	req, reply, end := r.Request, r.Reply, r.End
	r.Request = func(c *tm.Context) {
		if c.InDialog() {
			t.inDialog(c)
		}
		if req != nil {
			req(c)
		}
	}
	r.Reply = func(c *tm.Context) {
		if cl := tracked(c); cl != nil {
			cl.reply(c)
		} else if c.InDialog() {
			t.refresh(c)
		}
		if reply != nil {
			reply(c)
		}
	}
	r.End = func(c *tm.Context) {
		if cl := tracked(c); cl != nil {
			cl.ended(c)
		}
		if end != nil {
			end(c)
		}
	}
	return r
}

func tracked(c *tm.Context) *call {
	cl, _ := tm.Value[*call](c, ctxKey)
	return cl
}

// inDialog follows a request within a tracked call: the highest CSeq of
// each side (for the requests the tracker sends itself) and BYE.
func (t *Tracker) inDialog(c *tm.Context) {
	req := c.Req()
	cs := req.CSeq()
	cl, fromCaller := t.match(req)
	if cl == nil || cs == nil {
		return
	}
	if req.Method == sip.ACK {
		if fromCaller && !cl.acked {
			cl.acked = true
			if r := cl.pending; r != "" {
				// End after this route relayed the ACK: the callee gets
				// the ACK before our BYE.
				_ = cl.loop.Post(func() { cl.end(r) })
			}
		}
		return
	}
	if req.Method != sip.CANCEL {
		side := &cl.rec.ToCaller // requests from the callee use its CSeq space
		if fromCaller {
			side = &cl.rec.ToCallee
		}
		if cs.SeqNo > side.LocalCSeq {
			side.LocalCSeq = cs.SeqNo
		}
	}
	if req.Method == sip.BYE {
		r := ByeCallee
		if fromCaller {
			r = ByeCaller
		}
		cl.terminate(r, 0)
		return
	}
	t.store.Put(cl.rec)
}

// refresh applies a target refresh (RFC 3261 §12.2.1.2, §12.2.2): the
// 2xx to a re-INVITE or UPDATE of a confirmed call replaces the remote
// target of each side with the Contact it sent, so that the tracker's
// BYE and OPTIONS reach where the side now is.
func (t *Tracker) refresh(c *tm.Context) {
	req, resp := c.Req(), c.Resp
	if resp == nil || resp.StatusCode < 200 || resp.StatusCode >= 300 ||
		(req.Method != sip.INVITE && req.Method != sip.UPDATE) {
		return
	}
	cl, fromCaller := t.match(req)
	if cl == nil {
		return
	}
	reqSide, respSide := &cl.rec.ToCallee, &cl.rec.ToCaller // request from the callee
	if fromCaller {
		reqSide, respSide = &cl.rec.ToCaller, &cl.rec.ToCallee
	}
	changed := false
	if ct := req.Contact(); ct != nil {
		reqSide.RemoteTarget, changed = ct.Address.String(), true
	}
	if ct := resp.Contact(); ct != nil {
		respSide.RemoteTarget, changed = ct.Address.String(), true
	}
	if changed {
		t.store.Put(cl.rec)
	}
}

// match finds the confirmed call of an in-dialog request and tells which
// side sent it. It runs on the owner loop of the request's Call-ID.
func (t *Tracker) match(req *sip.Request) (cl *call, fromCaller bool) {
	from, to, cid := req.From(), req.To(), req.CallID()
	if from == nil || to == nil || cid == nil {
		return nil, false
	}
	fromTag, _ := from.Params.Get("tag")
	toTag, _ := to.Params.Get("tag")
	fromCaller = true
	cl = t.lookup(ID{CallID: string(*cid), CallerTag: fromTag})
	if cl == nil {
		fromCaller = false
		cl = t.lookup(ID{CallID: string(*cid), CallerTag: toTag})
	}
	if cl == nil || cl.done || cl.rec.State != Confirmed {
		return nil, false // not ours, or not (yet) a confirmed dialog: early-dialog requests end with the INVITE
	}
	if (fromCaller && toTag != cl.rec.CalleeTag) || (!fromCaller && fromTag != cl.rec.CalleeTag) {
		return nil, false // another dialog of the call (a second 2xx of a fork)
	}
	return cl, fromCaller
}

// call is the tracker's state of one call. Everything but the fields set
// by Track is read and written on loop only (the owner loop of the
// Call-ID, where tm runs every transaction of the call).
type call struct {
	t    *Tracker
	srv  *tm.Server
	loop *reactor.Loop
	opts Options
	rec  Record

	done     bool
	setup    *reactor.Timer
	timeout  *reactor.Timer
	pingT    *reactor.Timer
	canBye   bool
	acked    bool   // the caller's ACK for the 2xx was seen
	pending  Reason // an end waiting for that ACK
	ackWait  *reactor.Timer
	pingBusy [2]bool
	pingFail [2]int
	shared   []string // keys counted in Config.Counter (TrackShared)
}

func (cl *call) emit(e Event) {
	if o := cl.t.cfg.Observer; o != nil {
		o.DialogEvent(e)
	}
}

// reply follows a response to the tracked INVITE.
func (cl *call) reply(c *tm.Context) {
	resp := c.Resp
	if cl.done || resp == nil || resp.To() == nil || cl.rec.State == Confirmed {
		return
	}
	toTag, _ := resp.To().Params.Get("tag")
	code := resp.StatusCode
	switch {
	case code > 100 && code < 200:
		cl.setup.Reset(cl.t.cfg.SetupBound)
		if toTag == "" || len(cl.rec.EarlyTags) >= maxEarly {
			return
		}
		for _, t := range cl.rec.EarlyTags {
			if t == toTag {
				return
			}
		}
		cl.rec.EarlyTags = append(cl.rec.EarlyTags, toTag)
		cl.rec.State = Early
		cl.t.store.Put(cl.rec)
	case code >= 200 && code < 300 && toTag != "":
		cl.confirm(c, toTag)
	}
}

func (cl *call) confirm(c *tm.Context, toTag string) {
	now := cl.loop.Now()
	cl.setup.Stop()
	cl.rec.State = Confirmed
	cl.rec.CalleeTag = toTag
	cl.rec.Confirmed = now
	callee, caller, err := c.Server().CallDialogs(c.Req(), c.Resp)
	if err != nil {
		cl.t.log.Warn("dialog: confirmed call without dialog state: the tracker cannot end it with BYE",
			"call_id", cl.rec.CallID, "err", err)
	} else {
		cl.canBye = true
		cl.rec.ToCallee, cl.rec.ToCaller = callee, caller
	}
	cl.t.store.Put(cl.rec)
	cl.t.confirmed.Add(1)
	if d := cl.opts.MaxDuration; d > 0 {
		cl.timeout = cl.loop.AfterFunc(d, func() { cl.end(Timeout) })
	}
	if cl.opts.PingInterval > 0 && cl.canBye {
		cl.pingT = cl.loop.AfterFunc(cl.opts.PingInterval, cl.ping)
	}
	cl.emit(Event{Kind: ConfirmedEvent, Record: cl.rec, Time: now})
}

// ended runs when the INVITE transaction has its final answer upstream.
func (cl *call) ended(c *tm.Context) {
	if cl.done || cl.rec.State == Confirmed {
		return
	}
	code := c.FinalCode()
	switch {
	case c.Cancelled():
		cl.terminate(Cancelled, code)
	case code >= 300:
		cl.terminate(Rejected, code)
	default: // dropped (0), or a 2xx that did not come through a branch
		cl.terminate(NotConfirmed, code)
	}
}

// end ends the call: BYE to both sides when it is confirmed, then
// terminate.
func (cl *call) end(r Reason) {
	if cl.done {
		return
	}
	if cl.rec.State == Confirmed && cl.canBye && !cl.acked {
		// RFC 3261 §15: no BYE before the 2xx is acknowledged, or until
		// the callee would give up retransmitting it (64*T1). A callee
		// that gets our BYE before its ACK may take the call for failed.
		if wait := ackWait - cl.loop.Now().Sub(cl.rec.Confirmed); wait > 0 {
			if cl.pending == "" {
				cl.pending = r
				cl.ackWait = cl.loop.AfterFunc(wait, func() { cl.acked = true; cl.end(cl.pending) })
			}
			return
		}
	}
	if cl.rec.State == Confirmed && cl.canBye {
		cl.t.log.Info("dialog: ending call with BYE to both sides", "call_id", cl.rec.CallID, "reason", string(r))
		cl.bye("callee", &cl.rec.ToCallee)
		cl.bye("caller", &cl.rec.ToCaller)
	}
	cl.terminate(r, 0)
}

func (cl *call) bye(side string, d *tm.DialogState) {
	req, err := d.Request(sip.BYE)
	if err != nil {
		cl.t.byeFailed.Add(1)
		cl.t.log.Warn("dialog: cannot build BYE", "call_id", cl.rec.CallID, "side", side, "err", err)
		return
	}
	cl.t.byeSent.Add(1)
	t, id := cl.t, cl.rec.CallID
	cl.srv.Originate(cl.loop, req, tm.SendOptions{}, func(resp *sip.Response, err error) {
		if err == nil && resp.StatusCode < 300 {
			return
		}
		t.byeFailed.Add(1)
		if err == nil {
			err = fmt.Errorf("answered %d", resp.StatusCode)
		}
		t.log.Info("dialog: BYE not accepted", "call_id", id, "side", side, "err", err)
	})
}

// ping sends an in-dialog OPTIONS to each side whose last one is answered,
// and re-arms itself.
func (cl *call) ping() {
	if cl.done {
		return
	}
	timeout := min(cl.t.cfg.PingTimeout, cl.opts.PingInterval)
	for i, d := range []*tm.DialogState{&cl.rec.ToCallee, &cl.rec.ToCaller} {
		if cl.pingBusy[i] {
			continue
		}
		req, err := d.Request(sip.OPTIONS)
		if err != nil {
			cl.t.log.Warn("dialog: cannot build OPTIONS", "call_id", cl.rec.CallID, "err", err)
			continue
		}
		cl.pingBusy[i] = true
		cl.t.pingSent.Add(1)
		cl.srv.Originate(cl.loop, req, tm.SendOptions{Timeout: timeout}, func(resp *sip.Response, err error) {
			cl.pingBusy[i] = false
			if cl.done {
				return
			}
			if err == nil && resp.StatusCode != 408 && resp.StatusCode != 481 {
				cl.pingFail[i] = 0
				return
			}
			cl.t.pingFailed.Add(1)
			cl.pingFail[i]++
			if cl.pingFail[i] >= cl.opts.PingFailures {
				cl.end(PingFailure)
			}
		})
	}
	if !cl.done {
		cl.pingT = cl.loop.AfterFunc(cl.opts.PingInterval, cl.ping)
	}
}

// terminate ends the tracking of the call, once: timers stopped, the
// record removed, the profile values released, the event sent.
func (cl *call) terminate(r Reason, code int) {
	if cl.done {
		return
	}
	cl.done = true
	cl.setup.Stop()
	cl.timeout.Stop()
	cl.pingT.Stop()
	cl.ackWait.Stop()
	t := cl.t
	sh := t.shard(cl.rec.CallID)
	sh.mu.Lock()
	if sh.m[cl.rec.ID] == cl {
		delete(sh.m, cl.rec.ID)
	}
	sh.mu.Unlock()
	t.releaseShared(cl.loop, cl.shared) // in flight before the local count drops
	cl.shared = nil
	if t.store.Delete(cl.rec.ID) {
		for _, p := range cl.rec.Profiles {
			t.store.Leave(p.Profile, p.Value)
		}
	}
	t.active.Add(-1)
	t.terminated.Add(1)
	if i := reasonIndex(r); i >= 0 {
		t.byReason[i].Add(1)
	}
	now := cl.loop.Now()
	var dur time.Duration
	if cl.rec.State == Confirmed {
		dur = now.Sub(cl.rec.Confirmed)
	}
	cl.rec.State = Terminated
	cl.emit(Event{Kind: TerminatedEvent, Record: cl.rec, Time: now, Reason: r, Code: code, Duration: dur})
}
