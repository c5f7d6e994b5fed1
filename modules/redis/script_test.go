package redis_test

import (
	"errors"
	"slices"
	"testing"

	"github.com/asyncsip/asyncsip/internal/testenv"
	"github.com/asyncsip/asyncsip/modules/redis"
)

var incrTTL = redis.NewScript(`
local n = redis.call('INCR', KEYS[1])
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return n`)

// A script runs with EVALSHA; after SCRIPT FLUSH the call is answered
// NOSCRIPT, sent again as EVAL (which loads it), and the next call is an
// EVALSHA hit again. Script results are typed like commands'.
func TestScriptLoadOnMiss(t *testing.T) {
	t.Parallel()
	srv := testenv.StartRedis(t)
	c := open(t, srv.URL())
	l := testenv.StartLoop(t)
	if _, err := testenv.RedisCommand(srv.Addr(), "SCRIPT", "FLUSH"); err != nil {
		t.Fatal(err)
	}
	if n := must(t, l, incrTTL.Int(c, []string{"calls"}, "60000")); n != 1 {
		t.Fatalf("first call = %d", n)
	}
	if s := c.Stats(); s.ScriptLoads != 1 {
		t.Fatalf("ScriptLoads after a call on a flushed cache = %d, want 1", s.ScriptLoads)
	}
	if n := must(t, l, incrTTL.Int(c, []string{"calls"}, "60000")); n != 2 {
		t.Fatalf("second call = %d", n)
	}
	if s := c.Stats(); s.ScriptLoads != 1 {
		t.Fatalf("the second call was not an EVALSHA hit: ScriptLoads = %d", s.ScriptLoads)
	}
	if line, err := testenv.RedisCommand(srv.Addr(), "SCRIPT", "EXISTS", incrTTL.SHA1()); err != nil || line != "*1" {
		t.Fatalf("SCRIPT EXISTS: %q %v", line, err)
	}
	if _, err := testenv.RedisCommand(srv.Addr(), "SCRIPT", "FLUSH"); err != nil {
		t.Fatal(err)
	}
	if n := must(t, l, incrTTL.Int(c, []string{"calls"}, "60000")); n != 3 {
		t.Fatalf("call after a second flush = %d", n)
	}
	if s := c.Stats(); s.ScriptLoads != 2 {
		t.Fatalf("ScriptLoads = %d, want 2", s.ScriptLoads)
	}

	echo := redis.NewScript(`return {KEYS[1], ARGV[1], ARGV[2]}`)
	if v := must(t, l, echo.Strings(c, []string{"k"}, "a", "b")); !slices.Equal(v, []string{"k", "a", "b"}) {
		t.Fatalf("Strings = %v", v)
	}
	isNil := redis.NewScript(`return redis.call('GET', KEYS[1])`)
	if o := run(t, l, isNil.String(c, []string{"missing"})); !errors.Is(o.err, redis.ErrNil) {
		t.Fatalf("script returning nil: %v", o.err)
	}
	if v := must(t, l, isNil.Bool(c, []string{"missing"})); v {
		t.Fatal("Bool of a nil script reply = true")
	}
	fails := redis.NewScript(`return redis.error_reply('LIMIT reached')`)
	var re *redis.ReplyError
	if o := run(t, l, fails.Do(c, nil)); !errors.As(o.err, &re) || re.Prefix() != "LIMIT" {
		t.Fatalf("script error: %v", o.err)
	}
}
