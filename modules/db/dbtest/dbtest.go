// Package dbtest fakes modules/db in route tests run by siptest: a Fake
// answers the ops of any db.Handle by their SQL and arguments, with the
// real result types (*db.Rows, db.Row, db.Result), and no statement runs.
//
//	fake := dbtest.New()
//	fake.On(`SELECT gw FROM lcr WHERE user = ?`).WithArgs("bob").Rows([]string{"gw"}, []any{"10.0.0.1:5060"})
//	fake.On(`SELECT gw FROM lcr WHERE user = ?`).WithArgs("carol").Rows([]string{"gw"}) // QueryRow: db.ErrNoRows
//	fake.On(`SELECT gw FROM lcr WHERE user = ?`).Fail(db.ErrUnavailable)                // any other user
//	h := siptest.NewHarness(t, route, siptest.WithFakes(fake))
//
// Rules are tried in the order they were added; the first that matches
// answers. An op no rule matches is held by the harness, as any await
// without a fake: the test completes it, or it times out.
package dbtest

import (
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/asyncsip/asyncsip/internal/faketable"
	"github.com/asyncsip/asyncsip/modules/db"
	"github.com/asyncsip/asyncsip/siptest"
)

// Fake answers the ops of db.Handles (Query, QueryRow, Exec) from a table of
// rules. It is a siptest.Fake.
type Fake struct {
	t *faketable.Table[db.Statement]
}

// New returns a Fake without rules.
func New() *Fake { return &Fake{faketable.New[db.Statement]("dbtest.Fake")} }

// On adds a rule for the statement query, compared with runs of white
// space collapsed (the layout of the SQL does not matter).
func (f *Fake) On(query string) *Rule {
	want := squash(query)
	return f.add(query, func(s db.Statement) bool { return squash(s.Query) == want })
}

// OnRegexp adds a rule for the statements re matches.
func (f *Fake) OnRegexp(re *regexp.Regexp) *Rule {
	return f.add(re.String(), func(s db.Statement) bool { return re.MatchString(s.Query) })
}

func (f *Fake) add(label string, match func(db.Statement) bool) *Rule {
	r := &Rule{}
	r.r = f.t.Add(label, func(s db.Statement) bool { return match(s) && r.argsMatch(s.Args) })
	return r
}

// Answer implements siptest.Fake: it answers the ops of a db.Handle that a
// rule matches.
func (f *Fake) Answer(w *siptest.Await) (siptest.Answer, bool) {
	s, ok := db.Inspect(w.Op())
	if !ok {
		return siptest.Answer{}, false
	}
	return f.t.Answer(s, s.Query)
}

// Seen returns the SQL of the statements the fake answered, in order.
func (f *Fake) Seen() []string { return f.t.Seen() }

// String names the fake in the harness's exchanges.
func (f *Fake) String() string { return f.t.String() }

// Rule is one rule of a Fake: what it matches and how it answers. Its
// methods return the rule, so that it reads as a sentence.
type Rule struct {
	r       *faketable.Rule[db.Statement]
	args    []any
	hasArgs bool
}

// WithArgs makes the rule match only a statement with these arguments,
// compared as text (fmt %v: 1555 matches "1555" and int64(1555)). With no
// args it matches only a statement without arguments.
func (r *Rule) WithArgs(args ...any) *Rule { r.args, r.hasArgs = args, true; return r }

// Rows answers with the rows of columns: a Query gets them as *db.Rows, a
// QueryRow the first (db.ErrNoRows when there is none). A row must have a
// value per column (int64, float64, bool, []byte, string, time.Time, nil).
func (r *Rule) Rows(columns []string, rows ...[]any) *Rule {
	r.r.Answer(func(s db.Statement) (any, error) {
		rs, err := db.NewRows(columns, rows...)
		switch {
		case err != nil:
			return nil, fmt.Errorf("dbtest: rule for %q: %w", s.Query, err)
		case s.Op != db.OpQueryRow:
			return rs, nil
		case rs.Len() == 0:
			return nil, db.ErrNoRows
		}
		return rs.Row(0), nil
	})
	return r
}

// Result answers an Exec with res.
func (r *Rule) Result(res db.Result) *Rule {
	r.r.Answer(func(db.Statement) (any, error) { return res, nil })
	return r
}

// Fail answers with err (db.ErrUnavailable, async.ErrOverloaded…).
func (r *Rule) Fail(err error) *Rule { r.r.Fail(err); return r }

// After delays the answer by d on the harness clock: an await whose
// timeout is shorter times out first.
func (r *Rule) After(d time.Duration) *Rule { r.r.After(d); return r }

// Never never answers: the await times out as the clock advances.
func (r *Rule) Never() *Rule { r.r.Never(); return r }

// Hits returns how many ops the rule answered.
func (r *Rule) Hits() int { return r.r.Hits() }

func (r *Rule) argsMatch(got []any) bool {
	if !r.hasArgs {
		return true
	}
	if len(got) != len(r.args) {
		return false
	}
	for i := range got {
		if fmt.Sprint(got[i]) != fmt.Sprint(r.args[i]) {
			return false
		}
	}
	return true
}

// squash collapses runs of white space and trims.
func squash(s string) string { return strings.Join(strings.Fields(s), " ") }
