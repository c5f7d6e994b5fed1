package rest_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/asyncsip/asyncsip/async"
	"github.com/asyncsip/asyncsip/internal/testenv"
	"github.com/asyncsip/asyncsip/modules/rest"
)

// benchServerT answers "127.0.0.1:5060" at once.
func benchServerT(t testing.TB) *httptest.Server {
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "127.0.0.1:5060")
	}))
	t.Cleanup(ts.Close)
	return ts
}

func benchServer(b *testing.B) *httptest.Server { return benchServerT(b) }

// BenchmarkGet: one GET at a time, started on a loop, result back on the
// loop: the latency of the whole path (loop → pool → net/http → loop).
func BenchmarkGet(b *testing.B) {
	ts := benchServer(b)
	l := testenv.StartLoop(b)
	c := newClient(b, rest.Config{BaseURL: ts.URL})
	op := c.Get("/target?user=bob")
	done := make(chan error, 1)
	report := func(_ rest.Result, err error) { done <- err }
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		l.Post(func() { async.Launch(l, op, report, async.Timeout(5*time.Second)) })
		if err := <-done; err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkGetInFlight64: 64 GETs in flight at any time from one loop: the
// throughput and CPU per request of the client under load.
func BenchmarkGetInFlight64(b *testing.B) {
	const inFlight = 64
	ts := benchServer(b)
	l := testenv.StartLoop(b)
	c := newClient(b, rest.Config{BaseURL: ts.URL})
	op := c.Get("/target?user=bob")
	var wg sync.WaitGroup
	var failed error
	var next func()
	left := b.N
	report := func(_ rest.Result, err error) {
		if err != nil && failed == nil {
			failed = err
		}
		next()
		wg.Done()
	}
	next = func() { // on the loop
		if left > 0 {
			left--
			async.Launch(l, op, report, async.Timeout(5*time.Second))
		}
	}
	wg.Add(b.N)
	b.ReportAllocs()
	b.ResetTimer()
	l.Post(func() {
		for range inFlight {
			next()
		}
	})
	wg.Wait()
	b.StopTimer()
	if failed != nil {
		b.Fatal(failed)
	}
}

// BenchmarkNetHTTPInFlight64 is the baseline: 64 goroutines calling
// net/http directly with the same transport settings, no loop, no pool.
func BenchmarkNetHTTPInFlight64(b *testing.B) {
	ts := benchServer(b)
	tr := &http.Transport{MaxIdleConnsPerHost: 256}
	b.Cleanup(tr.CloseIdleConnections)
	hc := &http.Client{Transport: tr}
	b.ReportAllocs()
	b.SetParallelism(64 / max(1, runtimeProcs()))
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			resp, err := hc.Get(ts.URL + "/target?user=bob")
			if err != nil {
				b.Error(err)
				return
			}
			io.ReadAll(resp.Body)
			resp.Body.Close()
		}
	})
}
