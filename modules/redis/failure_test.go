package redis_test

import (
	"errors"
	"runtime"
	"testing"
	"time"

	"github.com/asyncsip/asyncsip/async"
	"github.com/asyncsip/asyncsip/internal/testenv"
	"github.com/asyncsip/asyncsip/modules/redis"
)

// A stalled server (CLIENT PAUSE) makes every op end with async.ErrTimeout
// within the client's Timeout, whatever the await's (longer) timeout; the
// client is not marked unavailable (slow is not down) and works again when
// the pause ends.
func TestTimeoutWhileServerPaused(t *testing.T) {
	t.Parallel()
	srv := testenv.StartRedis(t)
	c := open(t, srv.URL(), redis.Timeout(150*time.Millisecond))
	l := testenv.StartLoop(t)
	must(t, l, c.Set("k", "v", 0))
	if _, err := testenv.RedisCommand(srv.Addr(), "CLIENT", "PAUSE", "1500", "ALL"); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		o := run(t, l, c.Get("k"), async.Timeout(10*time.Second))
		if !errors.Is(o.err, async.ErrTimeout) || errors.Is(o.err, redis.ErrUnavailable) {
			t.Fatalf("op during CLIENT PAUSE: err = %v, want async.ErrTimeout", o.err)
		}
	}
	if !c.Available() {
		t.Fatal("a paused server marked the client unavailable")
	}
	if s := c.Stats(); s.Expired == 0 {
		t.Fatalf("no op expired on its timer: %+v", s)
	}
	// After the pause: the same client answers again.
	testenv.Eventually(t, 10*time.Second, "GET after the pause", func() bool {
		o := run(t, l, c.Get("k"))
		return o.err == nil && o.v == "v"
	})
}

// MaxInFlight bounds the ops in flight: beyond it an op fails at once
// (synchronously) with async.ErrOverloaded, nothing queues without bound,
// and the client works normally once ops complete.
func TestOverload(t *testing.T) {
	t.Parallel()
	srv := testenv.StartRedis(t)
	var rejected []error
	obs := redis.ObserverFuncs{OnRejected: func(_ string, err error) { rejected = append(rejected, err) }}
	c := open(t, srv.URL(), redis.MaxInFlight(4), redis.Timeout(5*time.Second), redis.WithObserver(obs))
	l := testenv.StartLoop(t)
	must(t, l, c.Set("k", "v", 0))
	if _, err := testenv.RedisCommand(srv.Addr(), "CLIENT", "PAUSE", "600", "ALL"); err != nil {
		t.Fatal(err)
	}
	results := make(chan outcome[string], 10)
	testenv.OnLoop(t, l, func() {
		for range 10 {
			launched := false
			async.Launch(l, c.Get("k"), func(v string, err error) { results <- outcome[string]{v, err, !launched} })
			launched = true
		}
	})
	var ok, over int
	for range 10 {
		o := testenv.Wait(t, 10*time.Second, results, "op result")
		switch {
		case errors.Is(o.err, async.ErrOverloaded):
			if !o.inline {
				t.Error("an overloaded op was not failed at once")
			}
			over++
		case o.err == nil && o.v == "v":
			ok++
		default:
			t.Errorf("unexpected outcome %+v", o)
		}
	}
	if ok != 4 || over != 6 {
		t.Fatalf("ok %d, overloaded %d; want 4 and 6", ok, over)
	}
	testenv.OnLoop(t, l, func() {
		if len(rejected) != 6 || !errors.Is(rejected[0], async.ErrOverloaded) {
			t.Errorf("observer saw rejections %v", rejected)
		}
	})
	if s := c.Stats(); s.Overloaded != 6 || s.InFlight != 0 {
		t.Fatalf("stats %+v", s)
	}
	if v := must(t, l, c.Get("k")); v != "v" {
		t.Fatalf("GET after the burst = %q", v)
	}
}

// Redis stopped: ops fail with ErrUnavailable within the bound (the first
// ones when the connection breaks, the next ones at once without being
// sent); Redis restarted on the same address: ops succeed again on the same
// client, and the goroutines and fds are back where they were.
func TestRedisStopRestartRecovers(t *testing.T) {
	srv := testenv.StartRedis(t)
	const timeout = 500 * time.Millisecond
	c := open(t, srv.URL(), redis.Timeout(timeout), redis.RetryInterval(50*time.Millisecond))
	l := testenv.StartLoop(t)
	must(t, l, c.Set("k", "v", 0))
	baseG, baseFD := runtime.NumGoroutine(), testenv.CountFDs()

	for cycle := range 3 {
		srv.Stop()
		// The first op after the stop finds the connection closed.
		o := run(t, l, c.Get("k"), async.Timeout(10*time.Second))
		if !errors.Is(o.err, redis.ErrUnavailable) {
			t.Fatalf("cycle %d: op after stop: err = %v, want ErrUnavailable", cycle, o.err)
		}
		// Then fast failure: at once, nothing sent.
		o2 := run(t, l, c.Incr("n"), async.Timeout(10*time.Second))
		if !errors.Is(o2.err, redis.ErrUnavailable) || !o2.inline {
			t.Fatalf("cycle %d: op while down: err = %v inline %v, want ErrUnavailable at once", cycle, o2.err, o2.inline)
		}
		if c.Available() {
			t.Fatalf("cycle %d: client still available with Redis stopped", cycle)
		}
		srv.Start() // empty data
		testenv.Eventually(t, 10*time.Second, "recovery after restart", func() bool {
			o := run(t, l, c.Incr("n"))
			return o.err == nil
		})
		if !c.Available() {
			t.Fatalf("cycle %d: ops succeed but the client says unavailable", cycle)
		}
	}
	s := c.Stats()
	if s.Downs != 3 || s.Unavailable < 3 || s.InFlight != 0 {
		t.Fatalf("stats after 3 cycles: %+v", s)
	}
	testenv.Eventually(t, 10*time.Second, "goroutines back to the baseline", func() bool {
		return runtime.NumGoroutine() <= baseG
	})
	testenv.FDsBackTo(t, baseFD, 10*time.Second)
}

// A client opened while Redis is down starts unavailable (Open does not
// fail) and connects once Redis comes up.
func TestOpenWhileDown(t *testing.T) {
	t.Parallel()
	srv := testenv.StartRedis(t)
	srv.Stop()
	c := open(t, srv.URL(), redis.RetryInterval(50*time.Millisecond), redis.DialTimeout(200*time.Millisecond))
	l := testenv.StartLoop(t)
	if c.Available() || c.Rueidis() != nil {
		t.Fatal("client opened on a stopped server says available")
	}
	o := run(t, l, c.Get("k"))
	if !errors.Is(o.err, redis.ErrUnavailable) || !o.inline {
		t.Fatalf("op on a client that never connected: %v (inline %v)", o.err, o.inline)
	}
	srv.Start()
	testenv.Eventually(t, 10*time.Second, "first connection", func() bool {
		return run(t, l, c.Set("k", "v", 0)).err == nil
	})
	if v := must(t, l, c.Get("k")); v != "v" {
		t.Fatalf("GET = %q", v)
	}
}

// Ops on a closed client fail with ErrClosed; Close is idempotent.
func TestClosed(t *testing.T) {
	t.Parallel()
	c, err := redis.Open("redis://" + testenv.Redis(t) + "/0")
	if err != nil {
		t.Fatal(err)
	}
	l := testenv.StartLoop(t)
	must(t, l, c.Do("PING"))
	if err := c.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	if o := run(t, l, c.Get("k")); !errors.Is(o.err, redis.ErrClosed) {
		t.Fatalf("op after Close: %v", o.err)
	}
	if _, err := redis.Open("http://nope"); err == nil {
		t.Fatal("Open of a non-redis URL succeeded")
	}
}

// Close with ops queued and in flight (the server paused): every op still
// completes exactly once — with its reply, a timeout or ErrClosed — and
// nothing is left running (goleak checks the package at the end).
func TestCloseWithOpsInFlight(t *testing.T) {
	t.Parallel()
	srv := testenv.StartRedis(t)
	c, err := redis.Open(srv.URL(), redis.Timeout(300*time.Millisecond), redis.Dispatchers(1), redis.MaxBatch(4))
	if err != nil {
		t.Fatal(err)
	}
	l := testenv.StartLoop(t)
	must(t, l, c.Set("k", "v", 0))
	if _, err := testenv.RedisCommand(srv.Addr(), "CLIENT", "PAUSE", "1000", "ALL"); err != nil {
		t.Fatal(err)
	}
	const n = 50
	results := make(chan error, 2*n)
	testenv.OnLoop(t, l, func() {
		for range n {
			async.Launch(l, c.Get("k"), func(_ string, err error) { results <- err })
		}
	})
	if err := c.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	for range n {
		err := testenv.Wait(t, 10*time.Second, results, "op result")
		if err != nil && !errors.Is(err, redis.ErrClosed) && !errors.Is(err, async.ErrTimeout) {
			t.Fatalf("op after Close: %v", err)
		}
	}
	select {
	case err := <-results:
		t.Fatalf("an op completed twice: %v", err)
	case <-time.After(100 * time.Millisecond):
	}
	if s := c.Stats(); s.InFlight != 0 {
		t.Fatalf("in flight after Close: %d", s.InFlight)
	}
}
