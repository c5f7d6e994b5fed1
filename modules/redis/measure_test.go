package redis_test

// Measurement, not a test: run with
//
//	ASYNCSIP_MEASURE=1 go test -run TestMeasure -v -count=1 ./modules/redis
//
// Each run starts its own redis-server on loopback (testenv.StartRedis).
// TestMeasureClients compares the two client libraries' own blocking calls
// (rueidis Do, go-redis Get/Incr): p50/p99 of one call at a time, then
// calls/s with 64 goroutines. TestMeasureAsyncOp measures the same GET/INCR
// through this package's async op, awaited on a reactor loop, and counts
// the goroutines per in-flight op. README.md quotes the figures.

import (
	"context"
	"os"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"github.com/redis/rueidis"

	"github.com/asyncsip/asyncsip/async"
	"github.com/asyncsip/asyncsip/internal/testenv"
	"github.com/asyncsip/asyncsip/modules/redis"
	"github.com/asyncsip/asyncsip/reactor"
)

const (
	measureSerial = 20000           // calls for the latency percentiles
	measureConc   = 64              // goroutines (or ops in flight) for throughput
	measureFor    = 2 * time.Second // throughput window
)

func needMeasure(t *testing.T) {
	if os.Getenv("ASYNCSIP_MEASURE") != "1" {
		t.Skip("measurement: set ASYNCSIP_MEASURE=1")
	}
}

// percentiles returns p50 and p99 of d (sorted in place).
func percentiles(d []time.Duration) (p50, p99 time.Duration) {
	slices.Sort(d)
	return d[len(d)/2], d[len(d)*99/100]
}

// serial times n calls of fn, one at a time.
func serial(t *testing.T, n int, fn func() error) (p50, p99 time.Duration) {
	d := make([]time.Duration, n)
	for i := range d {
		s := time.Now()
		if err := fn(); err != nil {
			t.Fatal(err)
		}
		d[i] = time.Since(s)
	}
	return percentiles(d)
}

// parallel runs fn from conc goroutines for measureFor and returns calls/s.
func parallel(t *testing.T, conc int, fn func() error) float64 {
	var n atomic.Int64
	var wg sync.WaitGroup
	stop := time.Now().Add(measureFor)
	for range conc {
		wg.Go(func() {
			for time.Now().Before(stop) {
				if err := fn(); err != nil {
					t.Error(err)
					return
				}
				n.Add(1)
			}
		})
	}
	wg.Wait()
	return float64(n.Load()) / measureFor.Seconds()
}

func TestMeasureClients(t *testing.T) {
	needMeasure(t)
	srv := testenv.StartRedis(t)
	ctx := context.Background()

	rc, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{srv.Addr()}, DisableCache: true})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	gr := goredis.NewClient(&goredis.Options{Addr: srv.Addr(), PoolSize: measureConc})
	defer gr.Close()
	if err := gr.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}

	calls := []struct {
		name string
		fn   func() error
	}{
		{"rueidis GET", func() error { return rc.Do(ctx, rc.B().Get().Key("k").Build()).Error() }},
		{"rueidis INCR", func() error { return rc.Do(ctx, rc.B().Incr().Key("n").Build()).Error() }},
		{"go-redis GET", func() error { return gr.Get(ctx, "k").Err() }},
		{"go-redis INCR", func() error { return gr.Incr(ctx, "n").Err() }},
	}
	t.Logf("%d cores, %d serial calls, %d goroutines for %v", runtime.NumCPU(), measureSerial, measureConc, measureFor)
	for _, c := range calls {
		p50, p99 := serial(t, measureSerial, c.fn)
		rate := parallel(t, measureConc, c.fn)
		t.Logf("%-14s p50 %6.1f µs  p99 %6.1f µs  %8.0f calls/s (%d goroutines)",
			c.name, us(p50), us(p99), rate, measureConc)
	}
}

func TestMeasureAsyncOp(t *testing.T) {
	needMeasure(t)
	srv := testenv.StartRedis(t)
	c := open(t, srv.URL(), redis.Dispatchers(measureDispatchers()))
	l := testenv.StartLoop(t)
	must(t, l, c.Set("k", "v", 0))

	// The alternative design: each op a rueidis Do on async's pool (a pool
	// goroutine per op in flight).
	rc, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{srv.Addr()}, DisableCache: true})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	pooled := async.Blocking(func(ctx context.Context) (string, error) {
		return rc.Do(ctx, rc.B().Get().Key("k").Build()).ToString()
	})

	ours := goroutinesPerOp(t, srv, l, c.Get("k")) // before any pool worker exists
	testenv.Eventually(t, 10*time.Second, "GET after the pause", func() bool { return run(t, l, c.Get("k")).err == nil })
	ops := []struct {
		name string
		op   async.Op[string]
	}{
		{"async GET", c.Get("k")},
		{"async INCR", c.String("INCR", "n")},
		{"pool+Do GET", pooled},
	}
	for _, o := range ops {
		p50, p99 := serialOnLoop(t, l, o.op, measureSerial)
		rate := inFlightOnLoop(t, l, o.op, measureConc)
		t.Logf("%-14s p50 %6.1f µs  p99 %6.1f µs  %8.0f ops/s (%d in flight on 1 loop)",
			o.name, us(p50), us(p99), rate, measureConc)
	}
	t.Logf("goroutines per in-flight op: this package %.3f (measured first), pool+Do %.3f (async.DefaultPool: at most %d workers, the rest queued)",
		ours, goroutinesPerOp(t, srv, l, pooled), runtime.GOMAXPROCS(0)*64)
}

// goroutinesPerOp holds 1000 ops of op in flight (the server paused) and
// returns the goroutines added per op.
func goroutinesPerOp(t *testing.T, srv *testenv.RedisProc, l *reactor.Loop, op async.Op[string]) float64 {
	const held = 1000
	testenv.Eventually(t, 10*time.Second, "goroutines settled", func() bool {
		n := runtime.NumGoroutine()
		time.Sleep(50 * time.Millisecond)
		return runtime.NumGoroutine() == n
	})
	base := runtime.NumGoroutine()
	if _, err := testenv.RedisCommand(srv.Addr(), "CLIENT", "PAUSE", "1500", "ALL"); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{}, held)
	testenv.OnLoop(t, l, func() {
		for range held {
			async.Launch(l, op, func(string, error) { done <- struct{}{} })
		}
	})
	time.Sleep(300 * time.Millisecond)
	during := runtime.NumGoroutine()
	for range held {
		testenv.Wait(t, 10*time.Second, done, "held op")
	}
	time.Sleep(time.Second) // the pause is over
	return float64(during-base) / held
}

// serialOnLoop awaits op n times in a row on l (each start after the
// previous result) and returns the percentiles of start-to-result.
func serialOnLoop(t *testing.T, l *reactor.Loop, op async.Op[string], n int) (p50, p99 time.Duration) {
	d := make([]time.Duration, 0, n)
	fin := make(chan error, 1)
	var next func()
	next = func() {
		s := time.Now()
		async.Launch(l, op, func(_ string, err error) {
			d = append(d, time.Since(s))
			if err != nil || len(d) == n {
				fin <- err
				return
			}
			next()
		})
	}
	if err := l.Post(next); err != nil {
		t.Fatal(err)
	}
	if err := testenv.Wait(t, 5*time.Minute, fin, "serial ops"); err != nil {
		t.Fatalf("after %d ops: %v", len(d), err)
	}
	return percentiles(d)
}

// inFlightOnLoop keeps depth ops in flight on l for measureFor and returns
// completions per second.
func inFlightOnLoop(t *testing.T, l *reactor.Loop, op async.Op[string], depth int) float64 {
	var n int
	var errs error
	stop := time.Now().Add(measureFor)
	fin := make(chan struct{})
	live := depth
	var start func()
	start = func() {
		async.Launch(l, op, func(_ string, err error) {
			if err != nil && errs == nil {
				errs = err
			}
			n++
			if time.Now().Before(stop) {
				start()
				return
			}
			if live--; live == 0 {
				close(fin)
			}
		})
	}
	if err := l.Post(func() {
		for range depth {
			start()
		}
	}); err != nil {
		t.Fatal(err)
	}
	testenv.Wait(t, time.Minute, fin, "in-flight ops")
	var got int
	var err error
	testenv.OnLoop(t, l, func() { got, err = n, errs })
	if err != nil {
		t.Fatal(err)
	}
	return float64(got) / measureFor.Seconds()
}

func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

// Benchmarks: one GET at a time, through the async op on a loop and through
// the two clients' own blocking calls (the shared Redis of `make test`).
//
//	go test -run '^$' -bench . -benchmem ./modules/redis
func BenchmarkAsyncGet(b *testing.B) {
	c := shared(b)
	l := testenv.StartLoop(b)
	must(b, l, c.Set("bench:k", "v", 0))
	benchSerial(b, l, c.Get("bench:k"))
}

// benchSerial awaits op b.N times in a row on l.
func benchSerial[T any](b *testing.B, l *reactor.Loop, op async.Op[T]) {
	fin := make(chan error, 1)
	b.ReportAllocs()
	b.ResetTimer()
	i := 0
	var next func()
	next = func() {
		async.Launch(l, op, func(_ T, err error) {
			if i++; err != nil || i >= b.N {
				fin <- err
				return
			}
			next()
		})
	}
	if err := l.Post(next); err != nil {
		b.Fatal(err)
	}
	if err := testenv.Wait(b, 5*time.Minute, fin, "ops"); err != nil {
		b.Fatal(err)
	}
}

func BenchmarkRueidisGet(b *testing.B) {
	addr := testenv.Redis(b)
	rc, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{addr}, DisableCache: true})
	if err != nil {
		b.Fatal(err)
	}
	defer rc.Close()
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if err := rc.Do(ctx, rc.B().Get().Key("bench:k").Build()).Error(); err != nil && !rueidis.IsRedisNil(err) {
			b.Fatal(err)
		}
	}
}

func BenchmarkGoRedisGet(b *testing.B) {
	gr := goredis.NewClient(&goredis.Options{Addr: testenv.Redis(b)})
	defer gr.Close()
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if err := gr.Get(ctx, "bench:k").Err(); err != nil && err != goredis.Nil {
			b.Fatal(err)
		}
	}
}

// measureDispatchers is ASYNCSIP_MEASURE_DISPATCHERS, or the default.
func measureDispatchers() int {
	n, _ := strconv.Atoi(os.Getenv("ASYNCSIP_MEASURE_DISPATCHERS"))
	return n
}

// BenchmarkPooledGet is the alternative design: a rueidis Do per op on
// async's pool, awaited on a loop.
func BenchmarkPooledGet(b *testing.B) {
	rc, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{testenv.Redis(b)}, DisableCache: true})
	if err != nil {
		b.Fatal(err)
	}
	defer rc.Close()
	l := testenv.StartLoop(b)
	op := async.Blocking(func(ctx context.Context) (string, error) {
		s, err := rc.Do(ctx, rc.B().Get().Key("bench:k").Build()).ToString()
		if rueidis.IsRedisNil(err) {
			err = nil
		}
		return s, err
	})
	benchSerial(b, l, op)
}
