package redis_test

import (
	"errors"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/asyncsip/asyncsip/async"
	"github.com/asyncsip/asyncsip/internal/testenv"
	"github.com/asyncsip/asyncsip/modules/redis"
)

// Every typed op against a real server: values, nil as ErrNil (or false,
// or KindNil), error replies as *ReplyError, wrong types as ErrType.
func TestOpsTyped(t *testing.T) {
	t.Parallel()
	c := shared(t)
	l := testenv.StartLoop(t)
	k := func(n string) string { return key(t, n) }
	for _, n := range []string{"s", "n", "f", "h", "l", "set", "missing", "nx"} {
		must(t, l, c.Del(k(n)))
	}
	t.Cleanup(func() {
		for _, n := range []string{"s", "n", "f", "h", "l", "set", "nx"} {
			_, _ = testenv.RedisCommand(testenv.Redis(t), "DEL", k(n))
		}
	})

	if ok := must(t, l, c.Set(k("s"), "hello", time.Minute)); !ok {
		t.Fatal("SET returned false")
	}
	if v := must(t, l, c.Get(k("s"))); v != "hello" {
		t.Fatalf("GET = %q", v)
	}
	if ttl := must(t, l, c.Int("PTTL", k("s"))); ttl <= 0 || ttl > 60_000 {
		t.Fatalf("PTTL after SET PX 60000 = %d", ttl)
	}
	if n := must(t, l, c.Incr(k("n"))); n != 1 {
		t.Fatalf("INCR = %d", n)
	}
	if n := must(t, l, c.IncrBy(k("n"), 41)); n != 42 {
		t.Fatalf("INCRBY = %d", n)
	}
	if n := must(t, l, c.Int("GET", k("n"))); n != 42 {
		t.Fatalf("Int(GET counter) = %d", n)
	}
	if s := must(t, l, c.String("INCR", k("n"))); s != "43" {
		t.Fatalf("String(INCR) = %q", s)
	}
	if f := must(t, l, c.Float("INCRBYFLOAT", k("f"), "1.5")); f != 1.5 {
		t.Fatalf("INCRBYFLOAT = %v", f)
	}
	if ok := must(t, l, c.Expire(k("n"), time.Minute)); !ok {
		t.Fatal("EXPIRE of an existing key = false")
	}
	if ok := must(t, l, c.Expire(k("missing"), time.Minute)); ok {
		t.Fatal("EXPIRE of a missing key = true")
	}
	if ok := must(t, l, c.SetNX(k("nx"), "a", time.Minute)); !ok {
		t.Fatal("first SET NX = false")
	}
	if ok := must(t, l, c.SetNX(k("nx"), "b", 0)); ok {
		t.Fatal("second SET NX = true (nil reply must read as false)")
	}
	must(t, l, c.Int("HSET", k("h"), "a", "1", "b", "2"))
	if m := must(t, l, c.HGetAll(k("h"))); !reflect.DeepEqual(m, map[string]string{"a": "1", "b": "2"}) {
		t.Fatalf("HGETALL = %v", m)
	}
	if m := must(t, l, c.HGetAll(k("missing"))); len(m) != 0 {
		t.Fatalf("HGETALL of a missing key = %v", m)
	}
	must(t, l, c.Int("RPUSH", k("l"), "x", "y", "z"))
	if s := must(t, l, c.Strings("LRANGE", k("l"), "0", "-1")); !slices.Equal(s, []string{"x", "y", "z"}) {
		t.Fatalf("LRANGE = %v", s)
	}
	if s := must(t, l, c.Strings("MGET", k("s"), k("missing"))); !slices.Equal(s, []string{"hello", ""}) {
		t.Fatalf("MGET with a missing key = %q", s)
	}
	if n := must(t, l, c.Del(k("s"), k("missing"))); n != 1 {
		t.Fatalf("DEL = %d", n)
	}

	// Do: the raw reply.
	r := must(t, l, c.Do("LRANGE", k("l"), "0", "0"))
	if r.Kind != redis.KindArray || len(r.Elems) != 1 || r.Elems[0].Kind != redis.KindString || r.Elems[0].Str != "x" {
		t.Fatalf("Do(LRANGE) = %+v", r)
	}
	if r := must(t, l, c.Do("GET", k("missing"))); !r.IsNil() {
		t.Fatalf("Do(GET missing) = %+v, want KindNil", r)
	}
	if r := must(t, l, c.Do("INCR", k("n"))); r.Kind != redis.KindInt || r.Int != 44 {
		t.Fatalf("Do(INCR) = %+v", r)
	}
}

// Nil and errors are distinct: a missing key is ErrNil and nothing else; an
// error reply is a *ReplyError and not ErrNil; a reply of the wrong type is
// ErrType.
func TestOpsNilVersusError(t *testing.T) {
	t.Parallel()
	c := shared(t)
	l := testenv.StartLoop(t)
	missing, list := key(t, "missing"), key(t, "list")
	must(t, l, c.Del(missing, list))
	must(t, l, c.Int("RPUSH", list, "a"))
	t.Cleanup(func() { _, _ = testenv.RedisCommand(testenv.Redis(t), "DEL", list) })

	o := run(t, l, c.Get(missing))
	if o.err != redis.ErrNil {
		t.Fatalf("GET missing: err = %v, want ErrNil itself", o.err)
	}
	if o := run(t, l, c.Int("GET", missing)); !errors.Is(o.err, redis.ErrNil) {
		t.Fatalf("Int(GET missing): err = %v", o.err)
	}
	o = run(t, l, c.Get(list)) // WRONGTYPE
	var re *redis.ReplyError
	if !errors.As(o.err, &re) || re.Prefix() != "WRONGTYPE" || errors.Is(o.err, redis.ErrNil) {
		t.Fatalf("GET of a list: err = %v, want a WRONGTYPE *ReplyError", o.err)
	}
	if o := run(t, l, c.Int("LRANGE", list, "0", "-1")); !errors.Is(o.err, redis.ErrType) {
		t.Fatalf("Int(LRANGE): err = %v, want ErrType", o.err)
	}
	if o := run(t, l, c.Do("NOSUCHCOMMAND")); !errors.As(o.err, &re) || re.Prefix() != "ERR" {
		t.Fatalf("unknown command: err = %v", o.err)
	}
}

// Commands that would change the shared connection's mode are refused at
// once, without a panic and without being sent.
func TestOpsRefusedCommands(t *testing.T) {
	t.Parallel()
	c := shared(t)
	l := testenv.StartLoop(t)
	for _, args := range [][]string{{}, {""}, {"subscribe", "x"}, {"MULTI"}, {"SELECT", "1"}, {"monitor"}} {
		o := run(t, l, c.Do(args...))
		if !errors.Is(o.err, redis.ErrCommand) || !o.inline {
			t.Errorf("Do(%q) = %v (inline %v), want ErrCommand at once", args, o.err, o.inline)
		}
	}
	if s := c.Stats(); s.Commands != 0 {
		t.Errorf("refused commands were sent: %+v", s)
	}
}

// An op value may be started any number of times; each start sends the
// command again.
func TestOpReusable(t *testing.T) {
	t.Parallel()
	c := shared(t)
	l := testenv.StartLoop(t)
	k := key(t, "n")
	must(t, l, c.Del(k))
	t.Cleanup(func() { _, _ = testenv.RedisCommand(testenv.Redis(t), "DEL", k) })
	op := c.Incr(k)
	for i := int64(1); i <= 3; i++ {
		if n := must(t, l, op); n != i {
			t.Fatalf("start %d: INCR = %d", i, n)
		}
	}
}

// The Await timeout is the route's: an await shorter than the client's
// Timeout ends with async.ErrTimeout and the late reply is dropped.
func TestAwaitTimeoutShorterThanClient(t *testing.T) {
	t.Parallel()
	c := shared(t)
	l := testenv.StartLoop(t)
	o := run(t, l, c.Do("BLPOP", key(t, "never"), "0.5"), async.Timeout(50*time.Millisecond))
	if !errors.Is(o.err, async.ErrTimeout) {
		t.Fatalf("err = %v, want async.ErrTimeout", o.err)
	}
	testenv.Eventually(t, 5*time.Second, "the blocked command finishes", func() bool { return c.Stats().InFlight == 0 })
}
