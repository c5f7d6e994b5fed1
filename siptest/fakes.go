package siptest

import (
	"fmt"
	"regexp"
	"strings"
	"time"
)

// Fake answers the awaits it knows from a table of rules; give fakes to
// NewHarness with WithFakes. FakeDB, FakeExec, FakeREST and FakeOps are
// Fakes. They recognize an op by its description (async.Describer), which
// the modules give their ops:
//
//	db:   "db.query: <SQL>", "db.queryrow: <SQL>", "db.exec: <SQL>"
//	      (the arguments, if the op has an Args() []any method)
//	exec: "exec: <program and arguments, space-separated>"
//	rest: "rest: <METHOD> <URL>"
type Fake interface {
	// Answer returns the answer for w, and false when no rule matches.
	Answer(w *Await) (Answer, bool)
}

// Answer is how a fake completes an await.
type Answer struct {
	// Value is the result (converted to the resume's type by Convert).
	Value any
	// Err is the error the resume gets.
	Err error
	// Delay delays the answer on the harness clock; 0 answers as soon as
	// the loop runs (a completion posted to the loop, as a real op's).
	Delay time.Duration
	// Never leaves the await waiting: it times out as the clock advances.
	Never bool
}

// Rule is one row of a fake's table: what it matches, and its answer. The
// answer methods return the rule, so that a rule reads as a sentence:
//
//	db.On("SELECT gw FROM lcr WHERE prefix = ?").WithArgs("1555").ReturnRows([]string{"gw"}, []any{"10.0.0.1"})
//	rest.On("GET", "http://routing/route").After(3 * time.Second).Status(200, "sip:gw1")
type Rule struct {
	pattern string
	match   func(w *Await, detail string) bool
	args    []any
	hasArgs bool
	answer  Answer
	hits    int
}

// WithArgs makes the rule match only when the op's arguments (its Args()
// []any method) are args, compared as text (fmt %v). With no args it
// matches only an op without arguments.
func (r *Rule) WithArgs(args ...any) *Rule { r.args, r.hasArgs = args, true; return r }

// Return answers with v.
func (r *Rule) Return(v any) *Rule { r.answer.Value = v; return r }

// Fail answers with err.
func (r *Rule) Fail(err error) *Rule { r.answer.Err = err; return r }

// After delays the answer by d on the harness clock (an await whose
// timeout is shorter times out first).
func (r *Rule) After(d time.Duration) *Rule { r.answer.Delay = d; return r }

// Never never answers: the await times out as the clock advances.
func (r *Rule) Never() *Rule { r.answer.Never = true; return r }

// ReturnRows answers with a Rows of columns and rows.
func (r *Rule) ReturnRows(columns []string, rows ...[]any) *Rule {
	return r.Return(Rows{Columns: columns, Values: rows})
}

// Output answers with an ExecResult: stdout and exit code.
func (r *Rule) Output(stdout string, exitCode int) *Rule {
	return r.Return(ExecResult{Stdout: stdout, ExitCode: exitCode})
}

// Status answers with an HTTPResponse: status code and body.
func (r *Rule) Status(code int, body string) *Rule {
	return r.Return(HTTPResponse{Status: code, Body: body})
}

// Hits returns how many awaits the rule answered.
func (r *Rule) Hits() int { return r.hits }

// table is the part every fake shares: rules, tried in order.
type table struct {
	kind   string   // "FakeDB", …
	prefix []string // description prefixes this fake reads ("db.", …)
	rules  []*Rule
	seen   []string
}

func (t *table) add(pattern string, match func(w *Await, detail string) bool) *Rule {
	r := &Rule{pattern: pattern, match: match}
	t.rules = append(t.rules, r)
	return r
}

// Answer implements Fake.
func (t *table) Answer(w *Await) (Answer, bool) {
	detail, ok := t.detail(w)
	if !ok {
		return Answer{}, false
	}
	for _, r := range t.rules {
		if r.match(w, detail) && r.argsMatch(w) {
			r.hits++
			t.seen = append(t.seen, w.Desc)
			w.by = fmt.Sprintf("%s rule %q", t.kind, r.pattern)
			return r.answer, true
		}
	}
	return Answer{}, false
}

// detail returns the part of w's description after "<module>[.verb]: ".
func (t *table) detail(w *Await) (string, bool) {
	if t.prefix == nil {
		return w.Desc, true
	}
	for _, p := range t.prefix {
		if strings.HasPrefix(w.Desc, p) {
			if _, d, ok := strings.Cut(w.Desc, ": "); ok {
				return d, true
			}
		}
	}
	return "", false
}

func (r *Rule) argsMatch(w *Await) bool {
	if !r.hasArgs {
		return true
	}
	a, ok := w.Op().(interface{ Args() []any })
	if !ok {
		return false
	}
	got := a.Args()
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

// String names the fake, for the recorder.
func (t *table) String() string { return t.kind }

// Seen returns the descriptions of the awaits the fake answered, in order.
func (t *table) Seen() []string { return t.seen }

// FakeDB answers database ops ("db.<verb>: <SQL>") by their SQL.
type FakeDB struct{ table }

// NewFakeDB returns an empty FakeDB.
func NewFakeDB() *FakeDB { return &FakeDB{table{kind: "FakeDB", prefix: []string{"db."}}} }

// On matches the SQL query, compared with runs of white space collapsed.
func (f *FakeDB) On(query string) *Rule {
	want := squash(query)
	return f.add(query, func(_ *Await, sql string) bool { return squash(sql) == want })
}

// OnRegexp matches SQL queries that re matches.
func (f *FakeDB) OnRegexp(re *regexp.Regexp) *Rule {
	return f.add(re.String(), func(_ *Await, sql string) bool { return re.MatchString(sql) })
}

// FakeExec answers command ops ("exec: <command line>").
type FakeExec struct{ table }

// NewFakeExec returns an empty FakeExec.
func NewFakeExec() *FakeExec {
	return &FakeExec{table{kind: "FakeExec", prefix: []string{"exec: ", "exec."}}}
}

// On matches the command line command, or any command line that starts
// with command and a space (the program, whatever its arguments).
func (f *FakeExec) On(command string) *Rule {
	want := squash(command)
	return f.add(command, func(_ *Await, cmd string) bool {
		cmd = squash(cmd)
		return cmd == want || strings.HasPrefix(cmd, want+" ")
	})
}

// OnRegexp matches command lines that re matches.
func (f *FakeExec) OnRegexp(re *regexp.Regexp) *Rule {
	return f.add(re.String(), func(_ *Await, cmd string) bool { return re.MatchString(cmd) })
}

// FakeREST answers HTTP ops ("rest: <METHOD> <URL>").
type FakeREST struct{ table }

// NewFakeREST returns an empty FakeREST.
func NewFakeREST() *FakeREST {
	return &FakeREST{table{kind: "FakeREST", prefix: []string{"rest: ", "rest."}}}
}

// On matches method ("" for any) and url; a url ending in "*" matches every
// URL with that prefix.
func (f *FakeREST) On(method, url string) *Rule {
	return f.add(method+" "+url, func(_ *Await, d string) bool {
		m, u, _ := strings.Cut(d, " ")
		if method != "" && !strings.EqualFold(m, method) {
			return false
		}
		if p, ok := strings.CutSuffix(url, "*"); ok {
			return strings.HasPrefix(u, p)
		}
		return u == url
	})
}

// OnRegexp matches method ("" for any) and URLs that re matches.
func (f *FakeREST) OnRegexp(method string, re *regexp.Regexp) *Rule {
	return f.add(method+" "+re.String(), func(_ *Await, d string) bool {
		m, u, _ := strings.Cut(d, " ")
		return (method == "" || strings.EqualFold(m, method)) && re.MatchString(u)
	})
}

// FakeOps answers any op by name: the fake for a route's own
// async.Blocking or OpFunc ops.
type FakeOps struct{ table }

// NewFakeOps returns an empty FakeOps.
func NewFakeOps() *FakeOps { return &FakeOps{table{kind: "FakeOps"}} }

// On matches the ops that op names, as WithPassThrough matches them: the
// await's async.Name, a description prefix, or the name given to
// async.Blocking ("lcr" for async.Blocking(fn, async.Name("lcr"))).
func (f *FakeOps) On(op string) *Rule {
	return f.add(op, func(w *Await, _ string) bool { return matchOp(w, op) })
}

// squash collapses runs of white space and trims, so that SQL and command
// lines compare regardless of layout.
func squash(s string) string { return strings.Join(strings.Fields(s), " ") }
