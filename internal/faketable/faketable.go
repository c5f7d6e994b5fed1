// Package faketable is the rule table behind the typed fakes of the modules
// (modules/db/dbtest, modules/rest/resttest, modules/exec/exectest): rules
// tried in order, the first whose match accepts the op answers. Each fake
// recognizes its module's ops and gives the table what it read of the op
// (S: a db.Statement, an *http.Request, an *exec.Cmd).
package faketable

import (
	"fmt"
	"time"

	"github.com/asyncsip/asyncsip/siptest"
)

// Rule is one row: what it matches, and how it answers.
type Rule[S any] struct {
	label string
	match func(S) bool
	value func(S) (any, error) // nil: the zero value
	err   error
	delay time.Duration
	never bool
	hits  int
}

// Answer makes the rule answer with what value builds from the op.
func (r *Rule[S]) Answer(value func(S) (any, error)) { r.value = value }

// Fail makes the rule answer with err.
func (r *Rule[S]) Fail(err error) { r.err = err }

// After delays the answer by d on the harness clock.
func (r *Rule[S]) After(d time.Duration) { r.delay = d }

// Never makes the rule never answer: the await times out.
func (r *Rule[S]) Never() { r.never = true }

// Hits returns how many awaits the rule answered.
func (r *Rule[S]) Hits() int { return r.hits }

// Table holds the rules of one fake.
type Table[S any] struct {
	kind  string
	rules []*Rule[S]
	seen  []string
}

// New returns an empty table; kind names the fake ("dbtest.Fake").
func New[S any](kind string) *Table[S] { return &Table[S]{kind: kind} }

// Add appends a rule that matches what match accepts; label is how the
// exchange names it.
func (t *Table[S]) Add(label string, match func(S) bool) *Rule[S] {
	r := &Rule[S]{label: label, match: match}
	t.rules = append(t.rules, r)
	return r
}

// Answer returns the answer of the first rule that matches op, whose text
// (the SQL, the request line, the command line) is recorded as seen.
func (t *Table[S]) Answer(op S, text string) (siptest.Answer, bool) {
	for _, r := range t.rules {
		if !r.match(op) {
			continue
		}
		r.hits++
		t.seen = append(t.seen, text)
		ans := siptest.Answer{Err: r.err, Delay: r.delay, Never: r.never,
			By: fmt.Sprintf("%s rule %q", t.kind, r.label)}
		if r.err == nil && r.value != nil {
			ans.Value, ans.Err = r.value(op)
		}
		return ans, true
	}
	return siptest.Answer{}, false
}

// Seen returns the text of the ops the table answered, in order.
func (t *Table[S]) Seen() []string { return t.seen }

// String names the fake.
func (t *Table[S]) String() string { return t.kind }
