package tm

import (
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/asyncsip/asyncsip/async"
	"github.com/asyncsip/asyncsip/reactor"
)

// outcome is what an originated request's report received.
type outcome struct {
	calls int
	resp  *sip.Response
	err   error
	prov  []int
}

// originate launches srv.Send(req) on loop i, with a report that records
// the outcome, and runs the loops.
func (r *rig) originate(i int, req *sip.Request, opts SendOptions) *outcome {
	r.t.Helper()
	out := &outcome{}
	if opts.Provisional == nil {
		opts.Provisional = func(resp *sip.Response) { out.prov = append(out.prov, resp.StatusCode) }
	}
	async.Launch(r.g.Loop(i), r.s.Send(req, opts), func(resp *sip.Response, err error) {
		out.calls++
		out.resp, out.err = resp, err
	}, async.Timeout(time.Minute))
	r.run()
	return out
}

// options builds an out-of-dialog OPTIONS to the UAS.
func (r *rig) options() *sip.Request {
	r.t.Helper()
	req, err := r.s.NewRequest(OutOfDialog{Method: sip.OPTIONS, Target: "sip:uas@" + uasAddr.String()})
	require.NoError(r.t, err)
	return req
}

func TestOriginatedOptionsAnswered(t *testing.T) {
	var captured []string // what the capture hook (HEP) saw
	capture := func(ev CaptureEvent) { captured = append(captured, ev.Dir.String()+" "+string(ev.Data[:11])) }
	r := newRig(t, Config{Capture: capture}, Routes{})
	o := r.originate(0, r.options(), SendOptions{})
	out := r.expect("127.0.0.1:5062 OPTIONS")
	req := out[0].msg.(*sip.Request)
	br, _ := req.Via().Params.Get("branch")
	assert.True(t, r.s.ours(br), "our branch: %s", br)
	assert.Len(t, req.GetHeaders("Via"), 1)
	assert.EqualValues(t, 70, *req.MaxForwards())
	tag, _ := req.From().Params.Get("tag")
	assert.Len(t, tag, 16, "From tag: 64 random bits")
	assert.Len(t, req.CallID().Value(), 32, "Call-ID: 128 random bits")

	r.recvMsg(uasAddr, respond(req, 100, ""))
	r.recvMsg(uasAddr, respond(req, 183, "u1"))
	assert.Equal(t, 0, o.calls, "no final yet")
	assert.Equal(t, []int{100, 183}, o.prov, "provisionals observed")
	r.recvMsg(uasAddr, respond(req, 200, "u1"))
	require.Equal(t, 1, o.calls)
	require.NoError(t, o.err)
	assert.Equal(t, 200, o.resp.StatusCode)
	// A retransmitted final is absorbed by Timer K; no second report.
	r.recvMsg(uasAddr, respond(req, 200, "u1"))
	assert.Equal(t, 1, o.calls)
	r.expect() // nothing is sent in response to a response
	r.advance(10 * time.Second)
	r.expect()

	st := r.s.Stats()
	assert.Equal(t, OriginatedStats{Started: 1, Completed: 1}, st.Originated)
	assert.Equal(t, st.ClientTxCreated, st.ClientTxDone)
	assert.Empty(t, r.s.loops[0].ctx)
	m := r.s.Messages()
	assert.EqualValues(t, 1, m.RequestsOut["OPTIONS"], "counted like relayed requests")
	assert.EqualValues(t, [6]uint64{2, 2}, m.ResponsesIn)
	assert.Equal(t, []string{"out OPTIONS sip", "in SIP/2.0 100", "in SIP/2.0 183", "in SIP/2.0 200", "in SIP/2.0 200"}, captured)
}

func TestOriginatedRetransmitsThenTimesOut(t *testing.T) {
	r := newRig(t, Config{}, Routes{})
	o := r.originate(0, r.options(), SendOptions{})
	r.expect("127.0.0.1:5062 OPTIONS")
	// Timer E: 0.5, 1, 2, 4 s, then every T2 (4 s) until Timer F at 32 s.
	at := time.Duration(0)
	var got []time.Duration
	for at < 40*time.Second && o.calls == 0 {
		r.advance(100 * time.Millisecond)
		at += 100 * time.Millisecond
		for range r.take() {
			got = append(got, at)
		}
	}
	s := time.Second
	want := []time.Duration{s / 2, 3 * s / 2, 7 * s / 2, 15 * s / 2, 23 * s / 2, 31 * s / 2, 39 * s / 2, 47 * s / 2, 55 * s / 2, 63 * s / 2}
	assert.Equal(t, want, got, "retransmission schedule")
	require.Equal(t, 1, o.calls)
	assert.ErrorIs(t, o.err, ErrOriginatedTimeout)
	assert.Equal(t, 32*time.Second, at, "Timer F")
	st := r.s.Stats().Originated
	assert.EqualValues(t, 1, st.TimedOut)
	assert.EqualValues(t, 0, st.InFlight)
	r.advance(time.Minute)
	r.expect() // nothing after the timeout
}

func TestOriginatedTimeoutOption(t *testing.T) {
	r := newRig(t, Config{}, Routes{})
	o := r.originate(0, r.options(), SendOptions{Timeout: 2 * time.Second})
	r.expect("127.0.0.1:5062 OPTIONS")
	r.advance(1999 * time.Millisecond)
	r.expect("127.0.0.1:5062 OPTIONS", "127.0.0.1:5062 OPTIONS")
	assert.Equal(t, 0, o.calls)
	r.advance(time.Millisecond)
	require.Equal(t, 1, o.calls)
	assert.ErrorIs(t, o.err, ErrOriginatedTimeout)
	r.advance(time.Minute)
	r.expect() // the transaction ended with the timeout
	assert.Empty(t, r.s.loops[0].ctx)
}

func TestOriginatedResponseFromWrongSourceDropped(t *testing.T) {
	r := newRig(t, Config{}, Routes{})
	o := r.originate(0, r.options(), SendOptions{})
	req := r.expect("127.0.0.1:5062 OPTIONS")[0].msg
	r.recvMsg(uas2Addr, respond(req, 200, "x")) // forged, from another host
	assert.Equal(t, 0, o.calls)
	assert.EqualValues(t, 1, r.s.Stats().DropSource)
	r.recvMsg(uasAddr, respond(req, 404, "u"))
	require.Equal(t, 1, o.calls)
	require.NoError(t, o.err)
	assert.Equal(t, 404, o.resp.StatusCode, "a non-2xx final is a response, not an error")
}

func TestOriginatedCap(t *testing.T) {
	r := newRig(t, Config{MaxOriginated: 2}, Routes{})
	a := r.originate(0, r.options(), SendOptions{})
	b := r.originate(0, r.options(), SendOptions{})
	c := r.originate(0, r.options(), SendOptions{})
	out := r.expect("127.0.0.1:5062 OPTIONS", "127.0.0.1:5062 OPTIONS")
	require.Equal(t, 1, c.calls, "refused at once")
	assert.ErrorIs(t, c.err, async.ErrOverloaded)
	st := r.s.Stats()
	assert.EqualValues(t, 1, st.Originated.Overloaded)
	assert.EqualValues(t, 1, st.Overload)
	assert.EqualValues(t, 2, st.Originated.InFlight)

	r.recvMsg(uasAddr, respond(out[0].msg, 200, "u"))
	assert.Equal(t, 1, a.calls)
	assert.Equal(t, 0, b.calls)
	d := r.originate(0, r.options(), SendOptions{})
	r.expect("127.0.0.1:5062 OPTIONS")
	assert.Equal(t, 0, d.calls, "a slot was freed")
}

func TestOriginatedRefused(t *testing.T) {
	r := newRig(t, Config{}, Routes{})
	inv := r.options()
	inv.Method = sip.INVITE
	inv.CSeq().MethodName = sip.INVITE
	noRoute := r.options()
	noRoute.Recipient.Host = "gw.example.com" // no Lookup configured
	self := r.options()
	self.Recipient = sip.Uri{Scheme: "sip", Host: "127.0.0.1", Port: 5060}
	for name, tc := range map[string]struct {
		req  *sip.Request
		want error
	}{
		"INVITE":   {inv, ErrNotOriginable},
		"no route": {noRoute, ErrNoRoute},
		"loop":     {self, ErrLoop},
	} {
		t.Run(name, func(t *testing.T) {
			o := r.originate(0, tc.req, SendOptions{})
			require.Equal(t, 1, o.calls)
			assert.ErrorIs(t, o.err, tc.want)
		})
	}
	r.expect() // nothing sent
	assert.EqualValues(t, 3, r.s.Stats().Originated.Refused)
	assert.EqualValues(t, 0, r.s.Stats().Originated.InFlight)
}

func TestOriginatedCancelledByAwaitTimeout(t *testing.T) {
	r := newRig(t, Config{}, Routes{})
	var err error
	async.Launch(r.g.Loop(0), r.s.Send(r.options(), SendOptions{}), func(_ *sip.Response, e error) { err = e },
		async.Timeout(time.Second))
	r.run()
	r.expect("127.0.0.1:5062 OPTIONS")
	r.advance(time.Second)
	assert.ErrorIs(t, err, async.ErrTimeout)
	r.take()
	r.advance(time.Minute)
	r.expect() // no retransmission once the caller stopped waiting
	st := r.s.Stats().Originated
	assert.EqualValues(t, 1, st.Cancelled)
	assert.EqualValues(t, 0, st.InFlight)
	assert.Empty(t, r.s.loops[0].ctx)
}

func TestOriginatedTransportError(t *testing.T) {
	r := newRig(t, Config{}, Routes{})
	r.tp.fail = true
	o := r.originate(0, r.options(), SendOptions{})
	require.Equal(t, 1, o.calls)
	assert.ErrorIs(t, o.err, ErrOriginatedUnreachable)
	assert.EqualValues(t, 1, r.s.Stats().Originated.Failed)
}

// The transaction lives on the Call-ID's owner loop; the result is posted
// to the loop the op was started on.
func TestOriginatedResultOnCallerLoop(t *testing.T) {
	r := newRigN(t, 2, Config{}, Routes{})
	req := r.options()
	owner := r.s.owner(req.CallID().Value()).loop.ID()
	caller := 1 - owner
	o := r.originate(caller, req, SendOptions{})
	sent := r.expect("127.0.0.1:5062 OPTIONS")
	assert.Len(t, r.s.loops[owner].ctx, 1, "client transaction on the owner loop")
	assert.Empty(t, r.s.loops[caller].ctx)

	resp := respond(sent[0].msg, 200, "u")
	r.s.Receive(r.g.Loop(owner), []byte(resp.String()), uasAddr, r.tp)
	r.g.Loop(owner).RunPending()
	assert.Equal(t, 0, o.calls, "not reported on the owner loop")
	r.g.Loop(caller).RunPending()
	require.Equal(t, 1, o.calls, "reported on the caller's loop")
	assert.Equal(t, 200, o.resp.StatusCode)
}

func TestOriginatedLookup(t *testing.T) {
	var asked []string
	lookup := func(uri string) async.Op[NextHop] {
		asked = append(asked, uri)
		return async.Done(NextHop{Addr: uas2Addr}, nil)
	}
	r := newRig(t, Config{Lookup: lookup}, Routes{})
	req, err := r.s.NewRequest(OutOfDialog{Method: sip.MESSAGE, Target: "sip:bob@gw.example.com",
		ContentType: "text/plain", Body: []byte("hi")})
	require.NoError(t, err)
	r.originate(0, req, SendOptions{})
	out := r.expect("127.0.0.1:5063 MESSAGE")
	assert.Equal(t, []string{"sip:gw.example.com"}, asked)
	assert.Equal(t, "hi", string(out[0].msg.Body()))
	assert.Equal(t, "text/plain", out[0].msg.GetHeaders("Content-Type")[0].Value())
}

func TestOriginatedClose(t *testing.T) {
	r := newRig(t, Config{}, Routes{})
	o := r.originate(0, r.options(), SendOptions{})
	r.take()
	r.s.Close()
	r.run()
	require.Equal(t, 1, o.calls)
	assert.ErrorIs(t, o.err, ErrClosed)
	late := r.originate(0, r.options(), SendOptions{})
	assert.ErrorIs(t, late.err, ErrClosed)
	r.expect()
}

// callLegs sets up a call through the proxy with a proxy on each side:
// the INVITE as the proxy received it (Record-Route of the upstream proxy
// 192.0.2.1) and the 200 as it came back (the downstream proxy 192.0.2.3
// on top, ours in the middle).
func callLegs(t *testing.T, r *rig) (*sip.Request, *sip.Response) {
	t.Helper()
	r.recv(uacAddr, request("INVITE", "sip:bob@127.0.0.1:5062", "call-d", "z9hG4bK-d1", 7,
		"Record-Route: <sip:192.0.2.1;lr>\n"))
	out := r.expect("127.0.0.1:5061 100", "127.0.0.1:5062 INVITE")
	fwd := out[1].msg.(*sip.Request)
	ok := respond(fwd, 200, "b7")
	ok.PrependHeader(&sip.RecordRouteHeader{Address: sip.Uri{Scheme: "sip", Host: "192.0.2.3", UriParams: sip.HeaderParams{{K: "lr", V: ""}}}})
	ok.AppendHeader(&sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: "bob", Host: "127.0.0.1", Port: 5062}})
	inv, err := sip.ParseMessage([]byte(request("INVITE", "sip:bob@127.0.0.1:5062", "call-d", "z9hG4bK-d1", 7,
		"Record-Route: <sip:192.0.2.1;lr>\n")))
	require.NoError(t, err)
	return inv.(*sip.Request), ok
}

func TestCallDialogsByeBothSides(t *testing.T) {
	r := newRig(t, Config{}, Routes{Request: relayAll})
	inv, ok := callLegs(t, r)
	callee, caller, err := r.s.CallDialogs(inv, ok)
	require.NoError(t, err)

	bye, err := callee.Request(sip.BYE)
	require.NoError(t, err)
	assert.Equal(t, "sip:bob@127.0.0.1:5062", bye.Recipient.String())
	require.Len(t, bye.GetHeaders("Route"), 1)
	assert.Equal(t, "<sip:192.0.2.3;lr>", bye.Route().Value(), "only the hops towards the callee")
	assert.Equal(t, "a1", tagOf(bye.From().Params), "speaks for the caller")
	assert.Equal(t, "b7", tagOf(bye.To().Params))
	assert.EqualValues(t, 8, bye.CSeq().SeqNo, "the caller's CSeq + 1")
	assert.Equal(t, "call-d", bye.CallID().Value())

	back, err := caller.Request(sip.BYE)
	require.NoError(t, err)
	assert.Equal(t, "sip:alice@127.0.0.1:5061", back.Recipient.String())
	require.Len(t, back.GetHeaders("Route"), 1)
	assert.Equal(t, "<sip:192.0.2.1;lr>", back.Route().Value(), "only the hops towards the caller")
	assert.Equal(t, "b7", tagOf(back.From().Params), "speaks for the callee")
	assert.Equal(t, "a1", tagOf(back.To().Params))
	assert.EqualValues(t, 1, back.CSeq().SeqNo)
	again, err := caller.Request(sip.OPTIONS)
	require.NoError(t, err)
	assert.EqualValues(t, 2, again.CSeq().SeqNo, "CSeq goes up")

	// Sent, each goes to its first Route.
	r.originate(0, bye, SendOptions{})
	r.originate(0, back, SendOptions{})
	r.expect("192.0.2.3:5060 BYE", "192.0.2.1:5060 BYE")
}

func TestCallDialogsWithoutOurRecordRoute(t *testing.T) {
	r := newRig(t, Config{}, Routes{Request: relayAll})
	inv, ok := callLegs(t, r)
	ok.RemoveHeader("Record-Route")
	ok.RemoveHeader("Record-Route")
	_, _, err := r.s.CallDialogs(inv, ok)
	assert.ErrorIs(t, err, ErrNoDialog)
}

func TestDialogStateStrictRouter(t *testing.T) {
	r := newRig(t, Config{}, Routes{})
	d := DialogState{CallID: "c", LocalURI: "sip:a@127.0.0.1", LocalTag: "l", RemoteURI: "sip:b@127.0.0.1",
		RemoteTag: "r", RemoteTarget: "sip:b@127.0.0.1:5062", RouteSet: []string{"<sip:127.0.0.1:5063>"}}
	bye, err := d.Request(sip.BYE)
	require.NoError(t, err)
	r.originate(0, bye, SendOptions{})
	out := r.expect("127.0.0.1:5063 BYE")
	sent := out[0].msg.(*sip.Request)
	assert.Equal(t, "sip:127.0.0.1:5063", sent.Recipient.String(), "a strict router gets the Request-URI")
	assert.Equal(t, "<sip:b@127.0.0.1:5062>", sent.Route().Value(), "the remote target moves to the Route")
}

func tagOf(p sip.HeaderParams) string { v, _ := p.Get("tag"); return v }

// A caller reached over a connection: the proxy's BYE goes back on that
// connection (the flow token of our Record-Route facing it) while it is
// open, else to the caller's Contact.
func TestCallDialogsFlowToken(t *testing.T) {
	r, tcp := streamRig(t)
	inv := request("INVITE", "sip:bob@127.0.0.1:5062", "call-f", "z9hG4bK-f1", 1, "")
	inv = replaceOnce(inv, "SIP/2.0/UDP", "SIP/2.0/TCP")
	r.s.Receive(r.g.Loop(0), []byte(inv), uacAddr, tcp)
	r.run()
	out := r.expect("127.0.0.1:5062 INVITE")
	ok := respond(out[0].msg, 200, "b9")
	ok.AppendHeader(&sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: "bob", Host: "127.0.0.1", Port: 5062}})
	m, err := sip.ParseMessage([]byte(inv))
	require.NoError(t, err)
	callee, caller, err := r.s.CallDialogs(m.(*sip.Request), ok)
	require.NoError(t, err)
	assert.Empty(t, callee.RouteSet, "the callee side is plain UDP")
	require.Len(t, caller.RouteSet, 1, "our value facing the caller, with its flow token")

	tcp.open[uacAddr] = true
	bye, err := caller.Request(sip.BYE)
	require.NoError(t, err)
	n := len(tcp.out)
	r.originate(0, bye, SendOptions{})
	require.Len(t, tcp.out, n+1, "sent on the caller's connection")
	sent := tcp.out[n]
	assert.Equal(t, uacAddr, sent.to)
	assert.Nil(t, sent.msg.(*sip.Request).Route(), "our own Route taken off")
	assert.Equal(t, "TCP", sent.msg.Via().Transport)

	tcp.open[uacAddr] = false
	bye, err = caller.Request(sip.BYE)
	require.NoError(t, err)
	r.originate(0, bye, SendOptions{})
	r.expect("127.0.0.1:5061 BYE") // the connection is gone: the Contact, over UDP
}

// opLog is an async.Observer that records what it is told.
type opLog struct{ started, finished []string }

func (o *opLog) OpStarted(name string) { o.started = append(o.started, name) }
func (o *opLog) OpFinished(name string, _ time.Duration, err error) {
	o.finished = append(o.finished, name+" "+errString(err))
}

func errString(err error) string {
	if err == nil {
		return "ok"
	}
	return err.Error()
}

func TestOriginateObservedAndBoundedByTimerF(t *testing.T) {
	obs := &opLog{}
	r := newRig(t, Config{Observer: obs}, Routes{})
	var got []error
	r.s.Originate(r.g.Loop(0), r.options(), SendOptions{}, func(_ *sip.Response, err error) { got = append(got, err) })
	r.run()
	r.expect("127.0.0.1:5062 OPTIONS")
	assert.Equal(t, []string{"tm.send"}, obs.started)
	r.advance(32 * time.Second)
	require.Len(t, got, 1)
	assert.ErrorIs(t, got[0], ErrOriginatedTimeout, "Timer F, not the launch's own bound")
	assert.Equal(t, []string{"tm.send " + ErrOriginatedTimeout.Error()}, obs.finished)
}

// A lookup that does not complete is bounded by the send's timeout, and
// cancelled by it; one that completes later sends then.
func TestOriginatedLookupPending(t *testing.T) {
	var cancelled int
	var pending []func(NextHop, error)
	lookup := func(uri string) async.Op[NextHop] {
		return async.OpFunc[NextHop](func(_ *reactor.Loop, done func(NextHop, error)) func() {
			pending = append(pending, done)
			return func() { cancelled++ }
		})
	}
	r := newRig(t, Config{Lookup: lookup}, Routes{})
	mk := func() *sip.Request {
		req, err := r.s.NewRequest(OutOfDialog{Method: sip.OPTIONS, Target: "sip:gw.example.com"})
		require.NoError(t, err)
		return req
	}
	stuck := r.originate(0, mk(), SendOptions{Timeout: 3 * time.Second})
	late := r.originate(0, mk(), SendOptions{Timeout: 3 * time.Second})
	r.expect()
	require.Len(t, pending, 2)
	pending[1](NextHop{Addr: uasAddr}, nil)
	r.run()
	r.expect("127.0.0.1:5062 OPTIONS")
	r.advance(3 * time.Second)
	r.take()
	assert.ErrorIs(t, stuck.err, ErrOriginatedTimeout)
	assert.ErrorIs(t, late.err, ErrOriginatedTimeout)
	assert.Equal(t, 1, cancelled, "the stuck lookup was cancelled")
	assert.EqualValues(t, 0, r.s.Stats().Originated.InFlight)
}

// The caller gives up on another loop than the transaction's: the
// transaction ends on its owner loop.
func TestOriginatedCancelAcrossLoops(t *testing.T) {
	r := newRigN(t, 2, Config{}, Routes{})
	req := r.options()
	owner := r.s.owner(req.CallID().Value()).loop.ID()
	caller := 1 - owner
	var err error
	async.Launch(r.g.Loop(caller), r.s.Send(req, SendOptions{}), func(_ *sip.Response, e error) { err = e },
		async.Timeout(time.Second))
	r.run()
	r.expect("127.0.0.1:5062 OPTIONS")
	r.g.Loop(caller).Advance(time.Second)
	r.run()
	r.take() // the loops share the clock: Timer E may have fired on the owner meanwhile
	assert.ErrorIs(t, err, async.ErrTimeout)
	assert.Empty(t, r.s.loops[owner].ctx, "the transaction ended on its owner loop")
	r.g.Loop(owner).Advance(time.Minute)
	r.run()
	r.expect() // and retransmits nothing
	assert.EqualValues(t, 1, r.s.Stats().Originated.Cancelled)
	assert.EqualValues(t, 0, r.s.Stats().Originated.InFlight)
}
