package siptest_test

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"go.uber.org/goleak"

	"github.com/asyncsip/asyncsip/reactor"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// dbOp has the shape of modules/db's ops: a description and arguments.
// Started for real (no fake answered) it fails at once, so a test that
// forgets to fake one sees it.

var errNotFaked = errors.New("op started for real: no fake answered it")

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
