package redis_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/asyncsip/asyncsip/async"
	"github.com/asyncsip/asyncsip/internal/testenv"
	"github.com/asyncsip/asyncsip/modules/redis"
	"github.com/asyncsip/asyncsip/reactor"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type outcome[T any] struct {
	v      T
	err    error
	inline bool // the report ran before Launch returned
}

// run launches op on l and waits for its report: what a route's resume
// would get.
func run[T any](t testing.TB, l *reactor.Loop, op async.Op[T], opts ...async.Option) outcome[T] {
	t.Helper()
	ch := make(chan outcome[T], 1)
	testenv.OnLoop(t, l, func() {
		launched := false
		async.Launch(l, op, func(v T, err error) { ch <- outcome[T]{v, err, !launched} }, opts...)
		launched = true
	})
	return testenv.Wait(t, 10*time.Second, ch, "op report")
}

// must runs op and fails the test on an error.
func must[T any](t testing.TB, l *reactor.Loop, op async.Op[T]) T {
	t.Helper()
	o := run(t, l, op)
	if o.err != nil {
		t.Fatalf("op failed: %v", o.err)
	}
	return o.v
}

// open opens a client that is closed when the test ends.
func open(t testing.TB, url string, opts ...redis.Option) *redis.Client {
	t.Helper()
	c, err := redis.Open(url, opts...)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := c.Close(ctx); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return c
}

// shared opens a client on the Redis of `make test` (testenv.Redis).
func shared(t testing.TB, opts ...redis.Option) *redis.Client {
	t.Helper()
	return open(t, "redis://"+testenv.Redis(t)+"/0", opts...)
}

// key returns a key of the test's own on the shared server.
func key(t testing.TB, name string) string {
	return "asyncsip-test:" + strings.ReplaceAll(t.Name(), "/", ":") + ":" + name
}
