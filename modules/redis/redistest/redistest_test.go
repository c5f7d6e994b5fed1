package redistest_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/asyncsip/asyncsip/async"
	"github.com/asyncsip/asyncsip/modules/redis"
	"github.com/asyncsip/asyncsip/modules/redis/redistest"
	"github.com/asyncsip/asyncsip/siptest"
	"github.com/asyncsip/asyncsip/tm"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// client returns a client whose ops the fakes answer: nothing listens on
// its address, and the harness never starts its ops.
func client(t *testing.T) *redis.Client {
	t.Helper()
	c, err := redis.Open("redis://127.0.0.1:1/0", redis.DialTimeout(100*time.Millisecond))
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close(context.Background()) })
	return c
}

var limit = redis.NewScript(`
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
if n > tonumber(ARGV[1]) then redis.call('DECR', KEYS[1]) return 0 end
return n`)

// callLimit is a route: a per-user call limit kept in Redis (script), the
// target looked up in Redis (GET), 503 when Redis fails, 404 when the
// user has no target.
func callLimit(c *redis.Client) func(*tm.Context) {
	return func(ctx *tm.Context) {
		user := ctx.Recipient().User
		async.Await(ctx, limit.Int(c, []string{"calls:" + user}, "2", "60000"), func(n int64, err error) {
			switch {
			case err != nil:
				ctx.Set("err", err)
				_ = ctx.Reply(503, "")
				return
			case n == 0:
				_ = ctx.Reply(486, "Limit reached")
				return
			}
			async.Await(ctx, c.Get("route:"+user), func(target string, err error) {
				switch {
				case errors.Is(err, redis.ErrNil):
					_ = ctx.Reply(404, "")
				case err != nil:
					ctx.Set("err", err)
					_ = ctx.Reply(503, "")
				default:
					_ = ctx.Relay(target)
				}
			}, async.Timeout(time.Second))
		}, async.Timeout(time.Second))
	}
}

func TestFakeAnswersCommandsAndScripts(t *testing.T) {
	t.Parallel()
	c := client(t)
	kv := redistest.New()
	kv.OnScript(limit, "calls:bob").Int(1)
	kv.OnScript(limit, "calls:busy").Int(0)
	kv.OnScript(limit, "calls:down").Fail(redis.ErrUnavailable)
	kv.OnScript(limit, "calls:slow").After(5 * time.Second).Int(1)
	kv.OnScript(limit).Int(1)
	kv.On("GET", "route:bob").Reply("sip:bob@10.0.0.7")
	kv.On("get", "route:*").Nil() // command names match without regard to case

	for _, tc := range []struct {
		user    string
		advance time.Duration
		code    int
		relay   string
	}{
		{"bob", 0, 0, "sip:bob@10.0.0.7"},
		{"carol", 0, 404, ""},
		{"busy", 0, 486, ""},
		{"down", 0, 503, ""},
		{"slow", 2 * time.Second, 503, ""}, // the await's 1 s timeout beats the fake's 5 s
	} {
		t.Run(tc.user, func(t *testing.T) {
			h := siptest.NewHarness(t, callLimit(c), siptest.WithFakes(kv))
			res := h.Send(siptest.NewRequest("INVITE", "sip:"+tc.user+"@example.com"))
			h.Clock.Advance(tc.advance)
			if tc.relay != "" {
				siptest.AssertRelayedTo(t, res, tc.relay)
				return
			}
			siptest.AssertReplied(t, res, tc.code)
			if tc.code == 503 {
				err, _ := tm.Value[error](res.Context(), "err")
				switch tc.user {
				case "down":
					assert.ErrorIs(t, err, redis.ErrUnavailable)
				case "slow":
					assert.ErrorIs(t, err, async.ErrTimeout)
				}
			}
		})
	}
	assert.Contains(t, kv.Seen(), "GET route:bob")
	assert.Contains(t, kv.Seen(), "EVALSHA "+limit.SHA1()+" 1 calls:bob 2 60000")
}

// The fake gives the real result types: the reply a rule names is
// converted as the op would convert it from the wire.
func TestFakeTypedResults(t *testing.T) {
	t.Parallel()
	c := client(t)
	kv := redistest.New()
	kv.On("GET", "counter").Reply("41")
	kv.On("HGETALL", "h").Map("a", "1", "b", "2")
	kv.On("SMEMBERS", "s").Strings("x", "y")
	kv.On("SET", "k").OK()
	kv.On("SET").Nil() // SET NX that did not set
	kv.On("GET", "list").Error("WRONGTYPE Operation against a key holding the wrong kind of value")
	kv.On("INCR").Strings("not", "an", "int")

	type got struct {
		v   any
		err error
	}
	run := func(t *testing.T, await func(ctx *tm.Context, done func(any, error))) got {
		var g got
		h := siptest.NewHarness(t, func(ctx *tm.Context) {
			await(ctx, func(v any, err error) { g = got{v, err}; _ = ctx.Reply(200, "") })
		}, siptest.WithFakes(kv))
		siptest.AssertReplied(t, h.Send(siptest.NewRequest("OPTIONS", "sip:x@example.com")), 200)
		return g
	}
	awaitOp := func(op any) func(ctx *tm.Context, done func(any, error)) {
		return func(ctx *tm.Context, done func(any, error)) {
			switch op := op.(type) {
			case async.Op[int64]:
				async.Await(ctx, op, func(v int64, err error) { done(v, err) })
			case async.Op[map[string]string]:
				async.Await(ctx, op, func(v map[string]string, err error) { done(v, err) })
			case async.Op[[]string]:
				async.Await(ctx, op, func(v []string, err error) { done(v, err) })
			case async.Op[bool]:
				async.Await(ctx, op, func(v bool, err error) { done(v, err) })
			case async.Op[string]:
				async.Await(ctx, op, func(v string, err error) { done(v, err) })
			}
		}
	}
	assert.Equal(t, got{int64(41), nil}, run(t, awaitOp(c.Int("GET", "counter"))))
	assert.Equal(t, got{map[string]string{"a": "1", "b": "2"}, nil}, run(t, awaitOp(c.HGetAll("h"))))
	assert.Equal(t, got{[]string{"x", "y"}, nil}, run(t, awaitOp(c.Strings("SMEMBERS", "s"))))
	assert.Equal(t, got{true, nil}, run(t, awaitOp(c.Set("k", "v", time.Second))))
	assert.Equal(t, got{false, nil}, run(t, awaitOp(c.SetNX("other", "v", time.Second))))

	g := run(t, awaitOp(c.Get("list")))
	var re *redis.ReplyError
	require.ErrorAs(t, g.err, &re)
	assert.Equal(t, "WRONGTYPE", re.Prefix())
	assert.ErrorIs(t, run(t, awaitOp(c.Incr("n"))).err, redis.ErrType)
	assert.Equal(t, []string{"GET counter", "HGETALL h", "SMEMBERS s", "SET k v PX 1000",
		"SET other v NX PX 1000", "GET list", "INCR n"}, kv.Seen())
}

// An op no rule matches is held, as any await without a fake: it times out
// as the harness clock advances.
func TestFakeNoRuleHolds(t *testing.T) {
	t.Parallel()
	c := client(t)
	kv := redistest.New()
	kv.On("GET", "other").Reply("x")
	h := siptest.NewHarness(t, callLimit(c), siptest.WithFakes(kv))
	res := h.Send(siptest.NewRequest("INVITE", "sip:eve@example.com"))
	siptest.AssertAwaiting(t, res, "redis.script")
	h.Clock.Advance(2 * time.Second)
	siptest.AssertReplied(t, res, 503)
	rule := kv.On("GET", "x")
	assert.Equal(t, 0, rule.Hits())

}
