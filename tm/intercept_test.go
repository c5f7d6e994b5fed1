package tm

import (
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/asyncsip/asyncsip/async"
	"github.com/asyncsip/asyncsip/reactor"
)

var errTestIntercept = errors.New("lookup failed")

// Config.Intercept reaches async.Await through the Context: the op is
// handed to the interceptor instead of starting, the transaction suspends
// as usual (100 Trying, retransmissions absorbed), and the value given to
// Complete reaches the resume.
func TestInterceptAwaitThroughConfig(t *testing.T) {
	var got []*async.Intercepted
	started := 0
	op := async.OpFunc[string](func(_ *reactor.Loop, done func(string, error)) func() { started++; return nil })
	cfg := Config{Intercept: func(a *async.Intercepted) bool { got = append(got, a); return true }}
	r := newRig(t, cfg, Routes{Request: func(c *Context) {
		async.Await(c, op, func(target string, err error) {
			require.NoError(t, err)
			require.NoError(t, c.Relay(target))
		}, async.Name("lcr"), async.Timeout(time.Second))
	}})
	r.recv(uacAddr, invite("i-1", "z9hG4bK-i1"))
	r.expect("127.0.0.1:5061 100")
	require.Len(t, got, 1)
	assert.Zero(t, started, "an intercepted op never starts")
	assert.Equal(t, "lcr", got[0].Name)
	assert.EqualValues(t, 1, r.s.Stats().Suspended)
	r.recv(uacAddr, invite("i-1", "z9hG4bK-i1"))
	r.expect("127.0.0.1:5061 100")

	require.NoError(t, got[0].Complete("sip:bob@127.0.0.1:5062", nil))
	r.run()
	r.expect("127.0.0.1:5062 INVITE")
	assert.EqualValues(t, 0, r.s.Stats().Suspended)
}

// Without Config.Intercept the Context has no interceptor and ops start.
func TestInterceptNilByDefault(t *testing.T) {
	started := 0
	op := async.OpFunc[string](func(_ *reactor.Loop, done func(string, error)) func() {
		started++
		done("", errTestIntercept)
		return nil
	})
	r := newRig(t, Config{}, Routes{Request: func(c *Context) {
		assert.Nil(t, c.Interceptor())
		async.Await(c, op, func(_ string, err error) {
			assert.ErrorIs(t, err, errTestIntercept)
			_ = c.Reply(503, "")
		})
	}})
	r.recv(uacAddr, request("OPTIONS", "sip:bob@127.0.0.1:5062", "i-2", "z9hG4bK-i2", 1, ""))
	r.expect("127.0.0.1:5061 503")
	assert.Equal(t, 1, started)
}
