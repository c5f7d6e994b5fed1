package rtpengine_test

import (
	"context"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/asyncsip/asyncsip/async"
	"github.com/asyncsip/asyncsip/modules/rtpengine"
	"github.com/asyncsip/asyncsip/reactor"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// newGroup starts n real loops, stopped at cleanup.
func newGroup(t testing.TB, n int) *reactor.Group {
	t.Helper()
	g, err := reactor.NewGroup(n, reactor.Config{})
	if err != nil {
		t.Fatal(err)
	}
	g.Start()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = g.Stop(ctx)
	})
	return g
}

type result[T any] struct {
	v   T
	err error
}

// run starts op on loop l and waits (bounded) for its result.
func run[T any](t testing.TB, l *reactor.Loop, op async.Op[T]) (T, error) {
	t.Helper()
	ch := make(chan result[T], 1)
	if err := l.Post(func() {
		async.Launch(l, op, func(v T, err error) { ch <- result[T]{v, err} }, async.Timeout(20*time.Second))
	}); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-ch:
		return r.v, r.err
	case <-time.After(30 * time.Second):
		t.Fatal("op did not complete in 30s")
	}
	var zero T
	return zero, nil
}

func newClient(t testing.TB, cfg rtpengine.Config) *rtpengine.Client {
	t.Helper()
	c, err := rtpengine.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}
