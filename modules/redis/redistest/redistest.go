// Package redistest fakes modules/redis in route tests run by siptest: a
// Fake answers the ops of any redis.Client (commands and script calls) by
// their words, with the real result types — the value a String, Int, Bool,
// Strings, StringMap or Do op would give for the reply the rule names, nil
// as redis.ErrNil (or false, or a nil Reply) — and nothing is sent.
//
//	kv := redistest.New()
//	kv.On("GET", "route:1555").Reply("sip:+1555@10.0.0.7")
//	kv.On("GET", "route:*").Nil()
//	kv.On("INCR", "calls:*").Int(3)
//	kv.OnScript(limitScript).Fail(redis.ErrUnavailable)
//	h := siptest.NewHarness(t, route, siptest.WithFakes(kv))
//
// Rules are tried in the order they were added; the first that matches
// answers. An op no rule matches is held by the harness, as any await
// without a fake: the test completes it, or it times out.
package redistest

import (
	"fmt"
	"strings"
	"time"

	"github.com/asyncsip/asyncsip/modules/redis"
	"github.com/asyncsip/asyncsip/siptest"
)

// Fake answers the ops of redis.Clients from a table of rules. It is a
// siptest.Fake.
type Fake struct {
	rules []*Rule
	seen  []string
}

// New returns a Fake without rules.
func New() *Fake { return &Fake{} }

// On adds a rule for commands whose words start with words: the command
// name matches without regard to case, each other word exactly, or, when
// it ends in "*", any word that starts with what precedes it. Words the
// rule does not name match anything: On("SET", "k") matches
// "SET k v PX 1000".
func (f *Fake) On(words ...string) *Rule {
	r := &Rule{label: strings.Join(words, " "), match: func(c redis.Command) bool {
		return c.Script == nil && wordsMatch(words, c.Args, true)
	}}
	f.rules = append(f.rules, r)
	return r
}

// OnScript adds a rule for calls of script s whose keys start with keys
// (matched as On matches words).
func (f *Fake) OnScript(s *redis.Script, keys ...string) *Rule {
	r := &Rule{label: "script " + s.SHA1()[:8] + " " + strings.Join(keys, " "), match: func(c redis.Command) bool {
		return c.Script == s && wordsMatch(keys, c.Keys, false)
	}}
	f.rules = append(f.rules, r)
	return r
}

// OnCommand adds a rule for the commands match accepts; label names it in
// the harness's exchanges.
func (f *Fake) OnCommand(label string, match func(redis.Command) bool) *Rule {
	r := &Rule{label: label, match: match}
	f.rules = append(f.rules, r)
	return r
}

// Answer implements siptest.Fake: it answers the ops of a redis.Client or
// redis.Script that a rule matches.
func (f *Fake) Answer(w *siptest.Await) (siptest.Answer, bool) {
	cmd, ok := redis.Inspect(w.Op())
	if !ok {
		return siptest.Answer{}, false
	}
	for _, r := range f.rules {
		if !r.match(cmd) {
			continue
		}
		r.hits++
		f.seen = append(f.seen, strings.Join(cmd.Args, " "))
		ans := siptest.Answer{Err: r.err, Delay: r.delay, Never: r.never}
		if r.err == nil && !r.never {
			v, err, _ := redis.Outcome(w.Op(), r.reply)
			ans.Value, ans.Err = v, err
		}
		return ans, true
	}
	return siptest.Answer{}, false
}

// Seen returns the commands the fake answered, their words joined by
// spaces, in order.
func (f *Fake) Seen() []string { return f.seen }

// String names the fake in the harness's exchanges.
func (f *Fake) String() string { return "redistest.Fake" }

// Rule is one rule of a Fake: what it matches and how it answers. Its
// methods return the rule, so that it reads as a sentence. Without an
// answer method the rule answers nil.
type Rule struct {
	label string
	match func(redis.Command) bool
	reply redis.Reply
	err   error
	delay time.Duration
	never bool
	hits  int
}

// Respond answers with reply r, converted to the op's result type as a
// real reply would be (a string reply to an Int op is parsed, an array to
// an Int op is redis.ErrType).
func (r *Rule) Respond(reply redis.Reply) *Rule { r.reply = reply; return r }

// Reply answers with a string reply.
func (r *Rule) Reply(s string) *Rule {
	return r.Respond(redis.Reply{Kind: redis.KindString, Str: s})
}

// Int answers with an integer reply.
func (r *Rule) Int(n int64) *Rule { return r.Respond(redis.Reply{Kind: redis.KindInt, Int: n}) }

// OK answers with the status reply OK (SET, a Bool op: true).
func (r *Rule) OK() *Rule { return r.Reply("OK") }

// Nil answers with Redis's nil: redis.ErrNil for String, Int, Strings...,
// false for Bool, a KindNil Reply for Do.
func (r *Rule) Nil() *Rule { return r.Respond(redis.Reply{Kind: redis.KindNil}) }

// Strings answers with an array of strings.
func (r *Rule) Strings(s ...string) *Rule {
	a := redis.Reply{Kind: redis.KindArray, Elems: make([]redis.Reply, len(s))}
	for i, v := range s {
		a.Elems[i] = redis.Reply{Kind: redis.KindString, Str: v}
	}
	return r.Respond(a)
}

// Map answers with a map reply of the fields and values in kv (field,
// value, field, value...), as HGETALL gives.
func (r *Rule) Map(kv ...string) *Rule {
	if len(kv)%2 != 0 {
		return r.Fail(fmt.Errorf("redistest: Map needs field, value pairs, got %d strings", len(kv)))
	}
	m := r.Strings(kv...).reply
	m.Kind = redis.KindMap
	return r.Respond(m)
}

// Error answers with an error reply of Redis (the op fails with a
// *redis.ReplyError of that message, "WRONGTYPE ...").
func (r *Rule) Error(msg string) *Rule { return r.Respond(redis.ErrorReply(msg)) }

// Fail fails the op with err (redis.ErrUnavailable, async.ErrOverloaded,
// async.ErrTimeout...).
func (r *Rule) Fail(err error) *Rule { r.err = err; return r }

// After delays the answer by d on the harness clock: an await whose
// timeout is shorter times out first.
func (r *Rule) After(d time.Duration) *Rule { r.delay = d; return r }

// Never never answers: the await times out as the clock advances.
func (r *Rule) Never() *Rule { r.never = true; return r }

// Hits returns how many ops the rule answered.
func (r *Rule) Hits() int { return r.hits }

// wordsMatch reports whether args start with the words of pattern; with
// fold, the first word (a command name) matches without regard to case.
func wordsMatch(pattern, args []string, fold bool) bool {
	if len(pattern) > len(args) {
		return false
	}
	for i, p := range pattern {
		a := args[i]
		if prefix, glob := strings.CutSuffix(p, "*"); glob {
			if !strings.HasPrefix(a, prefix) {
				return false
			}
			continue
		}
		if i == 0 && fold && strings.EqualFold(p, a) {
			continue
		}
		if p != a {
			return false
		}
	}
	return true
}
