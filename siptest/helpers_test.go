package siptest_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"

	"go.uber.org/goleak"

	"github.com/asyncsip/asyncsip/reactor"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// The ops below have the shapes the modules give theirs (see the package
// doc of Fake): a description, arguments for SQL, and results that are
// plain structs (exec, rest) or opaque (db). Started for real (no fake
// answered) they fail at once, so a test that forgets to fake one sees it.

var errNotFaked = errors.New("op started for real: no fake answered it")

// dbOp is a database op: "db.<verb>: <SQL>" with Args.
type dbOp[T any] struct {
	verb, sql string
	args      []any
}

func query[T any](sql string, args ...any) *dbOp[T] {
	return &dbOp[T]{verb: "query", sql: sql, args: args}
}

func (o *dbOp[T]) Start(_ *reactor.Loop, done func(T, error)) func() {
	var zero T
	done(zero, errNotFaked)
	return nil
}
func (o *dbOp[T]) Describe() string { return "db." + o.verb + ": " + o.sql }
func (o *dbOp[T]) Args() []any      { return o.args }

// opaqueRows is a result type with unexported fields, like modules/db's
// Rows: a test cannot build one, so its op converts.
type opaqueRows struct {
	cols []string
	vals [][]any
}

func (r *opaqueRows) first() string { return fmt.Sprint(r.vals[0][0]) }

// opaqueOp converts siptest.Rows into opaqueRows (siptest.RowsConverter),
// and fails like a single-row query when there is no row.
type opaqueOp struct{ dbOp[*opaqueRows] }

var errOpaqueNoRows = errors.New("opaque: no rows")

func (o *opaqueOp) FromRows(cols []string, rows [][]any) (any, error) {
	if len(rows) == 0 {
		return nil, errOpaqueNoRows
	}
	return &opaqueRows{cols: cols, vals: rows}, nil
}

// execResult has the fields of modules/exec's Result.
type execResult struct {
	Stdout, Stderr []byte
	ExitCode       int
	Pid            int
}

type execOp struct{ argv []string }

func (o *execOp) Start(_ *reactor.Loop, done func(execResult, error)) func() {
	done(execResult{}, errNotFaked)
	return nil
}
func (o *execOp) Describe() string { return "exec: " + strings.Join(o.argv, " ") }

// restResult has the fields of modules/rest's Result.
type restResult struct {
	Status      int
	Header      http.Header
	ContentType string
	Body        []byte
}

type restOp struct{ method, url string }

func (o *restOp) Start(_ *reactor.Loop, done func(restResult, error)) func() {
	done(restResult{}, errNotFaked)
	return nil
}
func (o *restOp) Describe() string { return "rest: " + o.method + " " + o.url }

// jsonOp is a REST query whose result is the decoded JSON body, like
// modules/rest's JSON ops: it converts an HTTPResponse itself.
type jsonOp[T any] struct{ restOp }

func (o *jsonOp[T]) Start(_ *reactor.Loop, done func(T, error)) func() {
	var zero T
	done(zero, errNotFaked)
	return nil
}

var errStatus = errors.New("json: status")

func (o *jsonOp[T]) FromHTTP(status int, _ http.Header, body []byte) (any, error) {
	var v T
	if status/100 != 2 {
		return v, fmt.Errorf("%w %d", errStatus, status)
	}
	err := json.Unmarshal(body, &v)
	return v, err
}

// recordingT is a testing.TB whose failures are recorded instead of
// failing the test, to test what siptest reports. Fatalf stops the
// function run by catch.
type recordingT struct {
	testing.TB
	mu     sync.Mutex
	errors []string
	logs   []string
}

type fatal struct{}

func (r *recordingT) Errorf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errors = append(r.errors, fmt.Sprintf(format, args...))
}

func (r *recordingT) Fatalf(format string, args ...any) {
	r.Errorf(format, args...)
	panic(fatal{})
}

func (r *recordingT) Helper() {}

func (r *recordingT) Logf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.logs = append(r.logs, fmt.Sprintf(format, args...))
}

func (r *recordingT) logged() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return strings.Join(r.logs, "\n")
}

func (r *recordingT) failures() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return strings.Join(r.errors, "\n")
}

// catch runs fn and reports whether it stopped on Fatalf.
func catch(fn func()) (stopped bool) {
	defer func() {
		if r := recover(); r != nil {
			if _, ok := r.(fatal); !ok {
				panic(r)
			}
			stopped = true
		}
	}()
	fn()
	return false
}
