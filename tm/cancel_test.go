package tm

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/asyncsip/asyncsip/async"
	"github.com/asyncsip/asyncsip/reactor"
)

// pendingOp is an op that completes only when the test says so, and
// records its cancellation the way real ops see it: a context cancelled.
type pendingOp struct {
	done      func(string, error)
	ctx       context.Context
	cancelled int
}

func (p *pendingOp) Start(_ *reactor.Loop, done func(string, error)) func() {
	ctx, cancel := context.WithCancel(context.Background())
	p.done, p.ctx = done, ctx
	return func() { p.cancelled++; cancel() }
}

// A CANCEL while the request route awaits: 200 and 487 at once, the op's
// context is cancelled, its late completion does nothing, and no second
// final response ever leaves.
func TestCancelWhileAwaitingAbortsOpAnd487AtOnce(t *testing.T) {
	op := &pendingOp{}
	resumed := 0
	r := newRig(t, Config{}, Routes{Request: func(c *Context) {
		async.Await(c, async.Op[string](op), func(string, error) {
			resumed++
			_ = c.Relay("sip:bob@127.0.0.1:5063")
		}, async.Timeout(time.Hour))
	}})
	r.recv(uacAddr, invite("c-1", "z9hG4bK-c1"))
	r.expect("127.0.0.1:5061 100")
	r.recv(uacAddr, request("CANCEL", "sip:bob@127.0.0.1:5062", "c-1", "z9hG4bK-c1", 1, ""))
	r.expect("127.0.0.1:5061 200", "127.0.0.1:5061 487")
	assert.Equal(t, 1, op.cancelled, "the op's cancel ran")
	require.ErrorIs(t, op.ctx.Err(), context.Canceled, "the op sees its context cancelled")
	assert.EqualValues(t, 0, r.s.Stats().Suspended)

	r.recv(uacAddr, request("ACK", "sip:bob@127.0.0.1:5062", "c-1", "z9hG4bK-c1", 1, ""))
	op.done("sip:gw@127.0.0.1:5063", nil) // a late completion
	r.advance(time.Hour)                  // and the await's own timeout
	r.expect()                            // nothing relayed, no second final
	assert.Zero(t, resumed, "the resume never runs")
	assert.EqualValues(t, 0, r.s.Stats().InProgress)
}

// A CANCEL while the failure route awaits (serial forking): 487 at once.
func TestCancelWhileFailureRouteAwaits(t *testing.T) {
	op := &pendingOp{}
	r := newRig(t, Config{}, Routes{
		Request: relayAll,
		Failure: func(c *Context) {
			async.Await(c, async.Op[string](op), func(gw string, _ error) { _ = c.Relay(gw) }, async.Timeout(time.Hour))
		},
	})
	r.recv(uacAddr, invite("c-2", "z9hG4bK-c2"))
	out := r.expect("127.0.0.1:5061 100", "127.0.0.1:5062 INVITE")
	r.recvMsg(uasAddr, respond(out[1].msg, 503, "b1"))
	r.expect("127.0.0.1:5062 ACK")
	r.recv(uacAddr, request("CANCEL", "sip:bob@127.0.0.1:5062", "c-2", "z9hG4bK-c2", 1, ""))
	r.expect("127.0.0.1:5061 200", "127.0.0.1:5061 487")
	assert.Equal(t, 1, op.cancelled)
	op.done("sip:bob@127.0.0.1:5063", nil)
	r.run()
	r.expect()
}

// A CANCEL while a reply route awaits on a 180: the held 180 goes up (fail
// open, as on the suspension bound), the branch is cancelled at once and
// its 487 reaches the caller.
func TestCancelWhileReplyRouteAwaits(t *testing.T) {
	op := &pendingOp{}
	r := newRig(t, Config{}, Routes{
		Request: relayAll,
		Reply: func(c *Context) {
			if c.Resp.StatusCode == 180 {
				async.Await(c, async.Op[string](op), func(string, error) { t.Error("resume after cancel") }, async.Timeout(time.Hour))
			}
		},
	})
	r.recv(uacAddr, invite("c-3", "z9hG4bK-c3"))
	out := r.expect("127.0.0.1:5061 100", "127.0.0.1:5062 INVITE")
	r.recvMsg(uasAddr, respond(out[1].msg, 180, "b1"))
	r.expect()
	r.recv(uacAddr, request("CANCEL", "sip:bob@127.0.0.1:5062", "c-3", "z9hG4bK-c3", 1, ""))
	r.expect("127.0.0.1:5061 200", "127.0.0.1:5061 180", "127.0.0.1:5062 CANCEL")
	assert.Equal(t, 1, op.cancelled)
	r.recvMsg(uasAddr, respond(out[1].msg, 487, "b1"))
	r.expect("127.0.0.1:5062 ACK", "127.0.0.1:5061 487")
	op.done("", nil)
	r.run()
	r.expect()
}
