// Package sharedtest holds the conformance tests of the shared-state
// contract (modules/shared): every implementation — the in-process ones and
// the Redis ones — runs the same functions, so they keep the same meaning.
//
//	func TestCounter(t *testing.T) {
//		sharedtest.Counter(t, func(t *testing.T, instance string, ttl time.Duration) shared.Counter {
//			return myStore.For(instance, ttl)
//		})
//	}
package sharedtest

import (
	"context"
	"testing"
	"time"

	"github.com/asyncsip/asyncsip/async"
	"github.com/asyncsip/asyncsip/reactor"
)

// opTimeout bounds every op the tests run.
const opTimeout = 5 * time.Second

// Loop starts a reactor loop for the test, stopped at its end.
func Loop(t testing.TB) *reactor.Loop {
	t.Helper()
	l, err := reactor.New(reactor.Config{})
	if err != nil {
		t.Fatalf("reactor.New: %v", err)
	}
	l.Start()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := l.Stop(ctx); err != nil {
			t.Errorf("loop stop: %v", err)
		}
	})
	return l
}

// Run runs op on l (launched, bounded by a timeout) and returns its result.
func Run[T any](t testing.TB, l *reactor.Loop, op async.Op[T]) (T, error) {
	t.Helper()
	type result struct {
		v   T
		err error
	}
	ch := make(chan result, 1)
	if err := l.Post(func() {
		async.Launch(l, op, func(v T, err error) { ch <- result{v, err} }, async.Timeout(opTimeout))
	}); err != nil {
		t.Fatalf("post: %v", err)
	}
	select {
	case r := <-ch:
		return r.v, r.err
	case <-time.After(2 * opTimeout):
		t.Fatalf("op did not report within %v", 2*opTimeout)
	}
	var zero T
	return zero, nil
}

// Must is Run that fails the test on an error.
func Must[T any](t testing.TB, l *reactor.Loop, op async.Op[T]) T {
	t.Helper()
	v, err := Run(t, l, op)
	if err != nil {
		t.Fatalf("op failed: %v", err)
	}
	return v
}
