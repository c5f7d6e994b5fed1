package tm

import (
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/asyncsip/asyncsip/async"
)

// suspender captures the resumer a route obtained.
type suspender struct {
	res     async.Resumer
	aborted int
}

func (s *suspender) route(edit func(c *Context)) func(c *Context) {
	return func(c *Context) {
		if edit != nil {
			edit(c)
		}
		r, err := c.Suspend()
		if err != nil {
			panic(err)
		}
		r.OnAbort(func() { s.aborted++ })
		s.res = r
	}
}

func TestSuspendResumeKeepsContext(t *testing.T) {
	sp := &suspender{}
	var ctx *Context
	r := newRig(t, Config{}, Routes{Request: sp.route(func(c *Context) {
		ctx = c
		c.Set("gw", "sip:127.0.0.1:5063")
		c.SetFlag(3)
		c.Req().AppendHeader(sip.NewHeader("X-Routed", "yes"))
	})})
	r.recv(uacAddr, invite("s-1", "z9hG4bK-s1"))
	r.expect("127.0.0.1:5061 100")
	assert.EqualValues(t, 1, r.s.Stats().Suspended)
	// Retransmissions are absorbed while suspended.
	r.recv(uacAddr, invite("s-1", "z9hG4bK-s1"))
	r.expect("127.0.0.1:5061 100")

	ok := sp.res.Resume(func() {
		gw, _ := Value[string](ctx, "gw")
		assert.True(t, ctx.Flag(3))
		require.NoError(t, ctx.SetDestination(gw))
		require.NoError(t, ctx.Relay())
	})
	require.True(t, ok)
	r.run()
	out := r.expect("127.0.0.1:5063 INVITE")
	assert.Equal(t, "yes", out[0].msg.GetHeaders("X-Routed")[0].Value())
	assert.False(t, sp.res.Resume(func() { t.Fatal("second resume ran") }), "a resume runs once")
	assert.EqualValues(t, 0, r.s.Stats().Suspended)
}

func TestSuspendBoundExpires(t *testing.T) {
	sp := &suspender{}
	r := newRig(t, Config{Timers: Timers{SuspendBound: 5 * time.Second}}, Routes{Request: sp.route(nil)})
	r.recv(uacAddr, request("OPTIONS", "sip:bob@127.0.0.1:5062", "s-2", "z9hG4bK-s2", 1, ""))
	r.expect()
	r.advance(5 * time.Second)
	r.expect("127.0.0.1:5061 504")
	assert.Equal(t, 1, sp.aborted)
	assert.False(t, sp.res.Resume(func() { t.Fatal("late resume ran") }))
	assert.EqualValues(t, 1, r.s.Stats().SuspendTimeouts)
}

func TestCancelWhileSuspended(t *testing.T) {
	sp := &suspender{}
	r := newRig(t, Config{}, Routes{Request: sp.route(nil)})
	r.recv(uacAddr, invite("s-3", "z9hG4bK-s3"))
	r.expect("127.0.0.1:5061 100")
	r.recv(uacAddr, request("CANCEL", "sip:bob@127.0.0.1:5062", "s-3", "z9hG4bK-s3", 1, ""))
	r.expect("127.0.0.1:5061 200", "127.0.0.1:5061 487")
	assert.Equal(t, 1, sp.aborted, "the pending op is aborted")
	assert.False(t, sp.res.Resume(func() { t.Fatal("late resume ran") }), "a late resume does nothing")
	r.run()
	r.expect()
	assert.EqualValues(t, 0, r.s.Stats().Suspended)
}

func TestAbandonedAfterResume(t *testing.T) {
	sp := &suspender{}
	r := newRig(t, Config{AbandonCode: 503}, Routes{Request: sp.route(nil)})
	r.recv(uacAddr, request("MESSAGE", "sip:bob@127.0.0.1:5062", "s-4", "z9hG4bK-s4", 1, ""))
	require.True(t, sp.res.Resume(func() {}))
	r.run()
	r.expect("127.0.0.1:5061 503")
}

func TestReplyRouteSuspendHoldsResponse(t *testing.T) {
	sp := &suspender{}
	var ctx *Context
	r := newRig(t, Config{}, Routes{
		Request: relayAll,
		Reply: func(c *Context) {
			ctx = c
			if c.Resp.StatusCode == 180 {
				sp.route(nil)(c)
			}
		},
	})
	r.recv(uacAddr, invite("s-5", "z9hG4bK-s5"))
	out := r.expect("127.0.0.1:5061 100", "127.0.0.1:5062 INVITE")
	r.recvMsg(uasAddr, respond(out[1].msg, 180, "b1"))
	r.expect() // held while the reply route is suspended
	r.recvMsg(uasAddr, respond(out[1].msg, 200, "b1"))
	r.expect() // queued behind the suspended reply route
	require.True(t, sp.res.Resume(func() { assert.Equal(t, 180, ctx.Resp.StatusCode) }))
	r.run()
	r.expect("127.0.0.1:5061 180", "127.0.0.1:5061 200")
}

func TestReplyRouteDropsProvisional(t *testing.T) {
	r := newRig(t, Config{}, Routes{
		Request: relayAll,
		Reply: func(c *Context) {
			if c.Resp.StatusCode == 183 {
				c.Drop()
			}
		},
	})
	r.recv(uacAddr, invite("s-6", "z9hG4bK-s6"))
	out := r.take()
	r.recvMsg(uasAddr, respond(out[1].msg, 183, "b1"))
	r.expect()
	r.recvMsg(uasAddr, respond(out[1].msg, 180, "b1"))
	r.expect("127.0.0.1:5061 180")
}

func TestFailureRouteSuspendsThenRelays(t *testing.T) {
	sp := &suspender{}
	var ctx *Context
	r := newRig(t, Config{}, Routes{
		Request: relayAll,
		Failure: func(c *Context) { ctx = c; sp.route(nil)(c) },
	})
	r.recv(uacAddr, invite("s-7", "z9hG4bK-s7"))
	out := r.take()
	r.recvMsg(uasAddr, respond(out[1].msg, 503, "b1"))
	r.expect("127.0.0.1:5062 ACK")
	require.True(t, sp.res.Resume(func() { require.NoError(t, ctx.Relay("sip:bob@127.0.0.1:5063")) }))
	r.run()
	out = r.expect("127.0.0.1:5063 INVITE")
	r.recvMsg(uas2Addr, respond(out[0].msg, 200, "b2"))
	r.expect("127.0.0.1:5061 200")
}

func TestSuspendNotAllowedAfterFinal(t *testing.T) {
	var err error
	r := newRig(t, Config{}, Routes{Request: func(c *Context) {
		_ = c.Reply(404, "")
		_, err = c.Suspend()
	}})
	r.recv(uacAddr, request("OPTIONS", "sip:bob@127.0.0.1:5062", "s-8", "z9hG4bK-s8", 1, ""))
	r.expect("127.0.0.1:5061 404")
	assert.ErrorIs(t, err, ErrFinalSent)
}

func TestHandOffToOwnerLoop(t *testing.T) {
	loops := map[int]int{}
	r := newRigN(t, 2, Config{}, Routes{Request: func(c *Context) {
		loops[c.Loop().ID()]++
		_ = c.Reply(200, "")
	}})
	for i := 0; i < 40; i++ {
		id := "h-" + string(rune('a'+i%26)) + string(rune('a'+i/26))
		r.recv(uacAddr, request("OPTIONS", "sip:bob@127.0.0.1:5062", id, "z9hG4bK-h"+id, 1, ""))
	}
	assert.Len(t, r.take(), 40)
	assert.Len(t, loops, 2, "Call-IDs spread over both loops")
	assert.Greater(t, r.s.Stats().Handoffs, uint64(0))
}

func TestStatelessForwardAndResponseByVia(t *testing.T) {
	r := newRig(t, Config{}, Routes{Request: func(c *Context) { require.NoError(t, c.Forward()) }})
	msg := request("MESSAGE", "sip:bob@127.0.0.1:5062", "sl-1", "z9hG4bK-sl", 1, "")
	r.recv(uacAddr, msg)
	out := r.expect("127.0.0.1:5062 MESSAGE")
	b1, _ := out[0].msg.Via().Params.Get("branch")
	r.recv(uacAddr, msg) // a retransmission is forwarded again, same branch
	out2 := r.expect("127.0.0.1:5062 MESSAGE")
	b2, _ := out2[0].msg.Via().Params.Get("branch")
	assert.Equal(t, b1, b2)
	r.recvMsg(uasAddr, respond(out[0].msg, 200, "b1"))
	r.expect("127.0.0.1:5061 200")
}

func TestStrictRouterRequestURI(t *testing.T) {
	r := newRig(t, Config{}, Routes{Request: relayAll})
	// A strict router put our Record-Route URI in the Request-URI and the
	// remote target in the last Route.
	raw := replaceTo(request("BYE", r.signedURI("sr-1", "sip:127.0.0.1:5060;lr"), "sr-1", "z9hG4bK-sr", 2, "Route: <sip:bob@127.0.0.1:5062>\n"))
	r.recv(uacAddr, raw)
	out := r.expect("127.0.0.1:5062 BYE")
	req := out[0].msg.(*sip.Request)
	assert.Equal(t, "sip:bob@127.0.0.1:5062", req.Recipient.String())
	assert.Nil(t, req.Route())
}

func TestCancelledInviteFailureReplyBecomes487(t *testing.T) {
	r := newRig(t, Config{}, Routes{Request: func(c *Context) {
		c.cancelled = true // as if a CANCEL had arrived before the route ran
		require.NoError(t, c.Reply(503, "Lookup Failed"))
	}})
	r.recv(uacAddr, invite("s-9", "z9hG4bK-s9"))
	r.expect("127.0.0.1:5061 487") // an immediate final response needs no 100

}
