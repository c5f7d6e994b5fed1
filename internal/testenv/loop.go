package testenv

import (
	"context"
	"testing"
	"time"

	"github.com/asyncsip/asyncsip/reactor"
)

// StartLoop starts a real loop that is stopped when the test ends (a stop
// that does not complete within 5 s fails the test). Package reactor's own
// tests cannot use it (testenv imports reactor) and keep theirs.
func StartLoop(t testing.TB) *reactor.Loop {
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

// OnLoop runs fn on l and waits for it to return, failing the test after
// 10 s.
func OnLoop(t testing.TB, l *reactor.Loop, fn func()) {
	t.Helper()
	ran := make(chan struct{})
	if err := l.Post(func() { defer close(ran); fn() }); err != nil {
		t.Fatalf("post: %v", err)
	}
	Wait(t, 10*time.Second, ran, "task on loop")
}
