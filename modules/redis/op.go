package redis

import (
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"

	"github.com/asyncsip/asyncsip/async"
	"github.com/asyncsip/asyncsip/reactor"
)

// cmdOp is an op of any result type: a command (or a script call) and the
// conversion of its reply. It is immutable: one op value may be started
// many times, each start sends the command again.
type cmdOp[T any] struct {
	c      *Client
	name   string // upper-case command name, a metric label
	args   []string
	script *Script
	codec  codec[T]
	block  bool
}

// newOp validates args and returns the op, or an op that fails at once with
// ErrCommand.
func newOp[T any](c *Client, args []string, cd codec[T]) async.Op[T] {
	if len(args) == 0 || args[0] == "" {
		var zero T
		return async.Done(zero, fmt.Errorf("%w: empty command", ErrCommand))
	}
	name := upper(args[0])
	if refused(name) {
		var zero T
		return async.Done(zero, fmt.Errorf("%w: %s", ErrCommand, name))
	}
	return &cmdOp[T]{c: c, name: name, args: args, codec: cd, block: blocking(name, args)}
}

// Describe says what the op sends, for siptest's interception and logs:
// "redis: GET user:1" (at most 8 arguments shown).
func (o *cmdOp[T]) Describe() string {
	if o.script != nil {
		return "redis.script " + o.script.sha + ": " + strings.Join(o.args, " ")
	}
	a := o.args
	if len(a) > 8 {
		a = a[:8]
	}
	return "redis: " + strings.Join(a, " ")
}

// Start queues the command (see the package doc for the failure modes).
func (o *cmdOp[T]) Start(l *reactor.Loop, done func(T, error)) func() {
	var zero T
	c := o.c
	switch {
	case c == nil:
		done(zero, ErrClosed)
		return nil
	case c.down.Load():
		c.rejected(o.name, ErrUnavailable)
		done(zero, fmt.Errorf("redis: %s: %w", o.name, ErrUnavailable))
		return nil
	}
	if n := c.m.inFlight.Add(1); n > int64(c.cfg.MaxInFlight) {
		c.m.inFlight.Add(-1)
		c.rejected(o.name, async.ErrOverloaded)
		done(zero, fmt.Errorf("redis: %s: %w", o.name, async.ErrOverloaded))
		return nil
	}
	j := &cmdJob[T]{op: o, loop: l, done: done, start: time.Now()}
	j.timer = l.AfterFunc(c.cfg.Timeout, j.expire)
	if o.block {
		c.mu.Lock()
		closed := c.closed
		if !closed {
			c.wg.Add(1)
		}
		c.mu.Unlock()
		if !closed {
			go c.runBlocking(j)
			return j.cancel
		}
	} else if c.q.push(j) {
		return j.cancel
	}
	j.timer.Stop()
	c.m.inFlight.Add(-1)
	done(zero, ErrClosed)
	return nil
}

// cmdJob is one start of a cmdOp. over, timer and done belong to the loop;
// gone is read by the dispatcher; v and err are written by the dispatcher
// before the post that hands them to the loop.
type cmdJob[T any] struct {
	op    *cmdOp[T]
	loop  *reactor.Loop
	done  func(T, error)
	timer *reactor.Timer
	start time.Time
	gone  atomic.Bool // the loop no longer wants the result
	over  bool
	v     T
	err   error
}

func (j *cmdJob[T]) started() time.Time { return j.start }

func (j *cmdJob[T]) build(b rueidis.Builder) (rueidis.Completed, bool) {
	if j.gone.Load() {
		return rueidis.Completed{}, false
	}
	o := j.op
	if o.script != nil {
		return o.script.evalsha(b, o.args), true
	}
	a := b.Arbitrary(o.args[0]).Args(o.args[1:]...)
	if o.block {
		return a.Blocking(), true
	}
	return a.Build(), true
}

func (j *cmdJob[T]) fallback(b rueidis.Builder) (rueidis.Completed, bool) {
	if j.op.script == nil {
		return rueidis.Completed{}, false
	}
	return j.op.script.eval(b, j.op.args), true
}

// finish runs on a dispatcher: convert, count, post.
func (j *cmdJob[T]) finish(r rueidis.RedisResult, latency time.Duration) {
	c := j.op.c
	j.v, j.err = j.convert(r)
	c.m.inFlight.Add(-1)
	c.observe(j.op.name, latency, j.err)
	if errors.Is(j.err, ErrUnavailable) {
		c.markDown()
	}
	_ = async.PostDone(j.loop, j.deliver, j.v, j.err)
}

// fail completes the job without a reply; a nil err only releases it.
func (j *cmdJob[T]) fail(err error) {
	j.op.c.m.inFlight.Add(-1)
	if err == nil {
		return
	}
	var zero T
	_ = async.PostDone(j.loop, j.deliver, zero, fmt.Errorf("redis: %s: %w", j.op.name, err))
}

func (j *cmdJob[T]) convert(r rueidis.RedisResult) (T, error) {
	var zero T
	if err := r.NonRedisError(); err != nil {
		return zero, j.transportError(err)
	}
	m, _ := r.ToMessage() // nil and error replies: conv reads them from m
	v, err := j.op.codec.msg(&m)
	if err != nil {
		return zero, j.replyError(err)
	}
	return v, nil
}

// transportError classifies an error that is not a Redis reply.
func (j *cmdJob[T]) transportError(err error) error {
	name := j.op.name
	switch {
	case errors.Is(err, ErrType):
		return err
	case errors.Is(err, rueidis.ErrClosing) && j.op.c.q.isClosed():
		return fmt.Errorf("redis: %s: %w", name, ErrClosed)
	case isTimeout(err):
		return fmt.Errorf("redis: %s after %v: %w: %w", name, j.op.c.cfg.Timeout, async.ErrTimeout, err)
	case isUnavailable(err):
		return fmt.Errorf("redis: %s: %w: %w", name, ErrUnavailable, err)
	}
	return fmt.Errorf("redis: %s: %w", name, err)
}

// replyError turns an error from a reply (or from its conversion) into
// this package's errors: ErrNil, *ReplyError, ErrType, ErrUnavailable.
func (j *cmdJob[T]) replyError(err error) error {
	if rueidis.IsRedisNil(err) {
		return ErrNil
	}
	var re *rueidis.RedisError
	if errors.As(err, &re) {
		if re.IsLoading() {
			return fmt.Errorf("redis: %s: %w: %s", j.op.name, ErrUnavailable, re.Error())
		}
		return &ReplyError{Msg: errorText(re.Error())}
	}
	if errors.Is(err, ErrNil) || errors.Is(err, ErrType) {
		return err
	}
	return fmt.Errorf("redis: %s: %w: %w", j.op.name, ErrType, err)
}

// deliver, expire and cancel run on the loop; whichever comes first wins.
func (j *cmdJob[T]) deliver(v T, err error) {
	if j.over {
		return
	}
	j.over = true
	j.timer.Stop()
	j.done(v, err)
}

func (j *cmdJob[T]) expire() {
	if j.over {
		return
	}
	j.over = true
	j.gone.Store(true)
	c := j.op.c
	c.m.expired.Add(1)
	var zero T
	j.done(zero, fmt.Errorf("redis: %s after %v: %w", j.op.name, c.cfg.Timeout, async.ErrTimeout))
}

func (j *cmdJob[T]) cancel() {
	if j.over {
		return
	}
	j.over = true
	j.gone.Store(true)
	j.timer.Stop()
}

// upper returns s in upper case, without allocating when it already is.
func upper(s string) string {
	for i := 0; i < len(s); i++ {
		if 'a' <= s[i] && s[i] <= 'z' {
			return strings.ToUpper(s)
		}
	}
	return s
}

// refused reports whether a command would change the shared connection's
// state or mode, which no op may do on a multiplexed connection.
func refused(name string) bool {
	switch name {
	case "SUBSCRIBE", "PSUBSCRIBE", "SSUBSCRIBE", "UNSUBSCRIBE", "PUNSUBSCRIBE", "SUNSUBSCRIBE",
		"MONITOR", "MULTI", "EXEC", "DISCARD", "WATCH", "UNWATCH", "SELECT", "QUIT", "RESET",
		"HELLO", "AUTH", "SYNC", "PSYNC":
		return true
	}
	return false
}

// blocking reports whether a command may block the connection it is sent
// on until data arrives: it then gets a connection of its own.
func blocking(name string, args []string) bool {
	switch name {
	case "BLPOP", "BRPOP", "BRPOPLPUSH", "BLMOVE", "BLMPOP", "BZPOPMIN", "BZPOPMAX", "BZMPOP", "WAIT", "WAITAOF":
		return true
	case "XREAD", "XREADGROUP":
		for _, a := range args[1:] {
			if strings.EqualFold(a, "BLOCK") {
				return true
			}
		}
	}
	return false
}

// errorText returns an error reply's text as Redis sent it: rueidis drops
// the "ERR " code from generic errors, which starts with a lower-case word
// then; every Redis error code is an upper-case word.
func errorText(msg string) string {
	code, _, _ := strings.Cut(msg, " ")
	if code == "" || upper(code) != code {
		return "ERR " + msg
	}
	return strings.Clone(msg)
}
