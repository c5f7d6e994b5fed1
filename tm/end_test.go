package tm

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// endLog records what Routes.End saw.
type endLog struct {
	codes    []int
	elapsed  []time.Duration
	branches []int
}

func (e *endLog) end(c *Context) {
	e.codes = append(e.codes, c.FinalCode())
	e.elapsed = append(e.elapsed, c.Elapsed())
	e.branches = append(e.branches, len(c.Branches()))
}

func TestEndRunsOncePerTransaction(t *testing.T) {
	cases := []struct {
		name     string
		route    func(c *Context)
		answer   int // UAS answer, 0 = the route replies itself
		code     int
		branches int
	}{
		{"local reply", func(c *Context) { _ = c.Reply(404, "") }, 0, 404, 0},
		{"relayed 2xx", relayAll, 200, 200, 1},
		{"relayed failure", relayAll, 486, 486, 1},
		{"dropped", func(c *Context) { c.Drop() }, 0, 0, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var log endLog
			r := newRig(t, Config{}, Routes{Request: tc.route, End: log.end})
			r.recv(uacAddr, invite("call-end", "z9hG4bK-end1"))
			if tc.answer != 0 {
				out := r.take()
				require.Len(t, out, 2)
				r.advance(2 * time.Second)
				r.recvMsg(uasAddr, respond(out[1].msg, tc.answer, "b1"))
			}
			r.recv(uacAddr, invite("call-end", "z9hG4bK-end1")) // a retransmission ends nothing
			r.advance(40 * time.Second)                         // every timer of the transaction
			require.Equal(t, []int{tc.code}, log.codes, "End ran exactly once")
			assert.Equal(t, []int{tc.branches}, log.branches)
			if tc.answer != 0 {
				assert.Equal(t, 2*time.Second, log.elapsed[0], "elapsed on the loop clock")
			}
		})
	}
}

func TestBranchTimeoutFailsSilentBranchEarly(t *testing.T) {
	var failures int
	routes := Routes{
		Request: func(c *Context) {
			c.SetBranchTimeout(3 * time.Second)
			_ = c.Relay()
		},
		Failure: func(c *Context) {
			failures++
			assert.Equal(t, 408, c.Resp.StatusCode)
			_ = c.Relay("sip:bob@127.0.0.1:5063") // the next gateway
		},
	}
	r := newRig(t, Config{}, routes)
	r.recv(uacAddr, invite("call-bt", "z9hG4bK-bt1"))
	r.expect("127.0.0.1:5061 100", "127.0.0.1:5062 INVITE")
	r.advance(2500 * time.Millisecond)
	r.expect("127.0.0.1:5062 INVITE", "127.0.0.1:5062 INVITE") // Timer A retransmissions only
	require.Zero(t, failures, "not before the branch timeout")
	r.advance(500 * time.Millisecond)
	out := r.expect("127.0.0.1:5063 INVITE")
	assert.Equal(t, 1, failures)

	// The second branch answers with a provisional: Timer C, not the
	// branch timeout, bounds it from then on.
	r.recvMsg(uas2Addr, respond(out[0].msg, 180, "b2"))
	r.expect("127.0.0.1:5061 180")
	r.advance(10 * time.Second)
	r.take()
	assert.Equal(t, 1, failures, "a ringing branch is not cut at the branch timeout")
}

func TestBranchTimeoutZeroKeepsTimerB(t *testing.T) {
	var failedAt time.Duration
	var start time.Time
	r := newRig(t, Config{}, Routes{Request: relayAll, Failure: func(c *Context) { failedAt = c.Elapsed() }})
	start = r.clk.Now()
	r.recv(uacAddr, invite("call-bt0", "z9hG4bK-bt0"))
	for r.clk.Now().Sub(start) < 40*time.Second {
		r.advance(500 * time.Millisecond)
	}
	assert.Equal(t, 32*time.Second, failedAt, "Timer B = 64*T1")
}
