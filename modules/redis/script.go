package redis

import (
	"crypto/sha1"
	"encoding/hex"
	"strconv"

	"github.com/redis/rueidis"

	"github.com/asyncsip/asyncsip/async"
)

// Script is a Lua script run with EVALSHA: only its SHA1 travels with each
// call. When Redis answers NOSCRIPT (its script cache was flushed, or it
// restarted) the call is sent again as EVAL, which runs the script and
// loads it for the next calls. A Script is immutable and safe for
// concurrent use; make it once (a package variable) and call it from any
// loop.
//
//	var incrTTL = redis.NewScript(`
//		local n = redis.call('INCR', KEYS[1])
//		redis.call('PEXPIRE', KEYS[1], ARGV[1])
//		return n`)
//	...
//	async.Await(c, incrTTL.Int(rc, []string{"calls:" + trunk}, "60000"), func(n int64, err error) { ... })
type Script struct {
	src string
	sha string
}

// NewScript returns the script of Lua source src.
func NewScript(src string) *Script {
	sum := sha1.Sum([]byte(src))
	return &Script{src: src, sha: hex.EncodeToString(sum[:])}
}

// SHA1 returns the script's SHA1 in hex, the name EVALSHA knows it by.
func (s *Script) SHA1() string { return s.sha }

// Do runs the script with keys and args on c; its raw reply.
func (s *Script) Do(c *Client, keys []string, args ...string) async.Op[Reply] {
	return scriptOp(c, s, keys, args, replyCodec)
}

// String runs the script; its reply as a string (nil is ErrNil).
func (s *Script) String(c *Client, keys []string, args ...string) async.Op[string] {
	return scriptOp(c, s, keys, args, stringCodec)
}

// Int runs the script; its reply as an integer (nil is ErrNil).
func (s *Script) Int(c *Client, keys []string, args ...string) async.Op[int64] {
	return scriptOp(c, s, keys, args, intCodec)
}

// Bool runs the script; its reply as a bool (a Lua false or nil is false).
func (s *Script) Bool(c *Client, keys []string, args ...string) async.Op[bool] {
	return scriptOp(c, s, keys, args, boolCodec)
}

// Strings runs the script; its reply as an array of strings.
func (s *Script) Strings(c *Client, keys []string, args ...string) async.Op[[]string] {
	return scriptOp(c, s, keys, args, stringsCodec)
}

// scriptOp stores the call as [numkeys, keys..., args...]; the command
// word (EVALSHA or EVAL) is added when it is built.
func scriptOp[T any](c *Client, s *Script, keys, args []string, cd codec[T]) async.Op[T] {
	words := make([]string, 0, 1+len(keys)+len(args))
	words = append(words, strconv.Itoa(len(keys)))
	words = append(words, keys...)
	words = append(words, args...)
	return &cmdOp[T]{c: c, name: "EVALSHA", args: words, script: s, codec: cd}
}

func (s *Script) evalsha(b rueidis.Builder, words []string) rueidis.Completed {
	return b.Arbitrary("EVALSHA", s.sha).Args(words...).Build()
}

func (s *Script) eval(b rueidis.Builder, words []string) rueidis.Completed {
	return b.Arbitrary("EVAL", s.src).Args(words...).Build()
}
