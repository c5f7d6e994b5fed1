package redis_test

import (
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/asyncsip/asyncsip/async"
	"github.com/asyncsip/asyncsip/internal/testenv"
	"github.com/asyncsip/asyncsip/modules/redis"
	"github.com/asyncsip/asyncsip/reactor"
	"github.com/asyncsip/asyncsip/siptest"
	"github.com/asyncsip/asyncsip/tm"
)

// A tm route awaits real Redis ops (siptest runs them for real): a call
// counter per trunk with a limit, then a target lookup; the transaction is
// suspended meanwhile and resumes with the typed results.
func TestRouteAwaitsRealRedis(t *testing.T) {
	t.Parallel()
	c := shared(t)
	l := testenv.StartLoop(t)
	counter, route := key(t, "calls"), key(t, "route")
	must(t, l, c.Del(counter, route))
	must(t, l, c.Set(route, "sip:bob@10.0.0.7", time.Minute))
	t.Cleanup(func() { _, _ = testenv.RedisCommand(testenv.Redis(t), "DEL", counter, route) })

	const limit = 2
	proxy := func(ctx *tm.Context) {
		async.Await(ctx, c.Incr(counter), func(n int64, err error) {
			switch {
			case err != nil:
				_ = ctx.Reply(503, "")
				return
			case n > limit:
				_ = ctx.Reply(486, "Trunk full")
				return
			}
			async.Await(ctx, c.Get(route), func(target string, err error) {
				if err != nil {
					_ = ctx.Reply(503, "")
					return
				}
				_ = ctx.Relay(target)
			}, async.Timeout(time.Second))
		}, async.Timeout(time.Second))
	}
	h := siptest.NewHarness(t, proxy, siptest.WithRealOps("redis"))
	for i := range limit {
		res := h.Send(siptest.NewRequest("INVITE", "sip:bob@example.com"))
		siptest.AssertRelayedTo(t, res, "sip:bob@10.0.0.7", "call %d", i+1)
	}
	siptest.AssertReplied(t, h.Send(siptest.NewRequest("INVITE", "sip:bob@example.com")), 486)
	if n := must(t, l, c.Int("GET", counter)); n != limit+1 {
		t.Fatalf("counter = %d", n)
	}
}

// Outcome (what redistest answers with) converts a reply exactly as the op
// converts it from the wire: for each typed op, its real result equals
// Outcome of the raw reply of the same command.
func TestOutcomeMatchesWire(t *testing.T) {
	t.Parallel()
	c := shared(t)
	l := testenv.StartLoop(t)
	k := func(n string) string { return key(t, n) }
	must(t, l, c.Del(k("s"), k("n"), k("h"), k("l"), k("f")))
	must(t, l, c.Set(k("s"), "text", time.Minute))
	must(t, l, c.Set(k("n"), "12", time.Minute))
	must(t, l, c.Set(k("f"), "2.5", time.Minute))
	must(t, l, c.Int("HSET", k("h"), "a", "1"))
	must(t, l, c.Int("RPUSH", k("l"), "x", "y"))
	t.Cleanup(func() {
		_, _ = testenv.RedisCommand(testenv.Redis(t), "DEL", k("s"), k("n"), k("h"), k("l"), k("f"))
	})

	commands := [][]string{
		{"GET", k("s")}, {"GET", k("n")}, {"GET", k("f")}, {"GET", k("missing")},
		{"EXISTS", k("s")}, {"HGETALL", k("h")}, {"HGETALL", k("missing")}, {"LRANGE", k("l"), "0", "-1"},
		{"MGET", k("s"), k("missing")}, {"PING"}, {"TYPE", k("l")}, {"GET", k("l")},
	}
	typed := map[string]func(args []string) any{
		"String":    func(a []string) any { return c.String(a...) },
		"Int":       func(a []string) any { return c.Int(a...) },
		"Float":     func(a []string) any { return c.Float(a...) },
		"Bool":      func(a []string) any { return c.Bool(a...) },
		"Strings":   func(a []string) any { return c.Strings(a...) },
		"StringMap": func(a []string) any { return c.StringMap(a...) },
	}
	for _, args := range commands {
		raw := run(t, l, c.Do(args...))
		for name, mk := range typed {
			op := mk(args)
			wireV, wireErr := runAny(t, l, op)
			if raw.err != nil { // an error reply: the typed op gets the same
				var a, b *redis.ReplyError
				if !errors.As(wireErr, &a) || !errors.As(raw.err, &b) || a.Msg != b.Msg {
					t.Errorf("%s%q: typed err %v, raw err %v", name, args, wireErr, raw.err)
				}
				continue
			}
			v, err, ok := redis.Outcome(op, raw.v)
			if !ok {
				t.Fatalf("Outcome does not know %T", op)
			}
			if !sameErr(err, wireErr) || (err == nil && !reflect.DeepEqual(v, wireV)) {
				t.Errorf("%s%q: wire (%#v, %v), Outcome (%#v, %v)", name, args, wireV, wireErr, v, err)
			}
		}
	}
}

// sameErr reports whether two conversion errors are the same kind.
func sameErr(a, b error) bool {
	for _, target := range []error{redis.ErrNil, redis.ErrType} {
		if errors.Is(a, target) != errors.Is(b, target) {
			return false
		}
	}
	return (a == nil) == (b == nil)
}

// runAny runs an op of any of the package's result types.
func runAny(t *testing.T, lp *reactor.Loop, op any) (any, error) {
	t.Helper()
	switch op := op.(type) {
	case async.Op[string]:
		o := run(t, lp, op)
		return o.v, o.err
	case async.Op[int64]:
		o := run(t, lp, op)
		return o.v, o.err
	case async.Op[float64]:
		o := run(t, lp, op)
		return o.v, o.err
	case async.Op[bool]:
		o := run(t, lp, op)
		return o.v, o.err
	case async.Op[[]string]:
		o := run(t, lp, op)
		return o.v, o.err
	case async.Op[map[string]string]:
		o := run(t, lp, op)
		return o.v, o.err
	}
	t.Fatalf("op of type %T", op)
	return nil, nil
}
