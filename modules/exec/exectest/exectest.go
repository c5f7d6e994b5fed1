// Package exectest fakes modules/exec in route tests run by siptest: a Fake
// answers *exec.Cmd ops by program and arguments, with the real
// exec.Result, and no process runs.
//
//	fake := exectest.New()
//	fake.On("/etc/asyncsip/route.sh", "bob").Output("sip:bob@10.0.0.9:5060\n", 0)
//	fake.On("/etc/asyncsip/route.sh").Output("", 1) // any other argument: exit status 1
//	h := siptest.NewHarness(t, route, siptest.WithFakes(fake))
//
// As a real command does, a Result with a non-zero exit status comes with
// an error wrapping exec.ErrExitStatus, and one with a signal with
// exec.ErrSignaled. Rules are tried in the order they were added; the
// first that matches answers. A command no rule matches is held by the
// harness, as any await without a fake.
package exectest

import (
	"fmt"
	"regexp"
	"slices"
	"time"

	"github.com/asyncsip/asyncsip/internal/faketable"
	"github.com/asyncsip/asyncsip/modules/exec"
	"github.com/asyncsip/asyncsip/siptest"
)

// Fake answers *exec.Cmd ops from a table of rules. It is a siptest.Fake.
type Fake struct{ t *faketable.Table[*exec.Cmd] }

// New returns a Fake without rules.
func New() *Fake { return &Fake{faketable.New[*exec.Cmd]("exectest.Fake")} }

// On adds a rule for commands of program name — as given to Command, or
// its Path — whose arguments start with args: On(name) matches the
// program whatever its arguments.
func (f *Fake) On(name string, args ...string) *Rule {
	label := (&exec.Cmd{Path: name, Args: append([]string{name}, args...)}).String()
	return &Rule{f.t.Add(label, func(c *exec.Cmd) bool {
		if c.Path != name && (len(c.Args) == 0 || c.Args[0] != name) {
			return false
		}
		var got []string
		if len(c.Args) > 0 {
			got = c.Args[1:]
		}
		return len(got) >= len(args) && slices.Equal(got[:len(args)], args)
	})}
}

// OnRegexp adds a rule for the commands whose command line (Cmd.String,
// shell-quoted) re matches.
func (f *Fake) OnRegexp(re *regexp.Regexp) *Rule {
	return &Rule{f.t.Add(re.String(), func(c *exec.Cmd) bool { return re.MatchString(c.String()) })}
}

// Answer implements siptest.Fake: it answers the *exec.Cmd ops a rule
// matches.
func (f *Fake) Answer(w *siptest.Await) (siptest.Answer, bool) {
	c, ok := w.Op().(*exec.Cmd)
	if !ok {
		return siptest.Answer{}, false
	}
	return f.t.Answer(c, c.String())
}

// Seen returns the command lines (Cmd.String) the fake answered, in order.
func (f *Fake) Seen() []string { return f.t.Seen() }

// String names the fake in the harness's exchanges.
func (f *Fake) String() string { return f.t.String() }

// Rule is one rule of a Fake: what it matches and how it answers. Its
// methods return the rule, so that it reads as a sentence.
type Rule struct{ r *faketable.Rule[*exec.Cmd] }

// Result answers with res: with an error wrapping exec.ErrExitStatus when
// res.ExitCode is not 0, exec.ErrSignaled when res.Signal is set, as the
// command would.
func (r *Rule) Result(res exec.Result) *Rule {
	r.r.Answer(func(c *exec.Cmd) (any, error) {
		switch {
		case res.Signal != 0:
			return res, fmt.Errorf("%s: %w: %v", c.Path, exec.ErrSignaled, res.Signal)
		case res.ExitCode != 0:
			return res, fmt.Errorf("%s: %w %d", c.Path, exec.ErrExitStatus, res.ExitCode)
		}
		return res, nil
	})
	return r
}

// Output answers with what stdout printed and the exit status (see
// Result).
func (r *Rule) Output(stdout string, exitCode int) *Rule {
	return r.Result(exec.Result{Stdout: []byte(stdout), ExitCode: exitCode})
}

// Fail answers with err (exec.ErrTimeout, exec.ErrStart,
// async.ErrOverloaded…) and an empty Result.
func (r *Rule) Fail(err error) *Rule { r.r.Fail(err); return r }

// After delays the answer by d on the harness clock: an await whose
// timeout is shorter times out first.
func (r *Rule) After(d time.Duration) *Rule { r.r.After(d); return r }

// Never never answers: the await times out as the clock advances.
func (r *Rule) Never() *Rule { r.r.Never(); return r }

// Hits returns how many commands the rule answered.
func (r *Rule) Hits() int { return r.r.Hits() }
