package rest_test

import (
	"bufio"
	"context"
	"github.com/asyncsip/asyncsip/internal/testenv"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/asyncsip/asyncsip/async"
	"github.com/asyncsip/asyncsip/modules/rest"
)

// gate is a handler that holds every request until released (or the
// request is cancelled), counting arrivals and cancellations.
type gate struct {
	release   chan struct{}
	once      sync.Once
	arrived   atomic.Int64
	cancelled atomic.Int64
}

func newGate() *gate { return &gate{release: make(chan struct{})} }

func (g *gate) open() { g.once.Do(func() { close(g.release) }) }

func (g *gate) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	g.arrived.Add(1)
	select {
	case <-g.release:
		io.WriteString(w, "released")
	case <-r.Context().Done():
		g.cancelled.Add(1)
	case <-time.After(15 * time.Second): // bound for a broken test
	}
}

func TestTimeout(t *testing.T) {
	testenv.CheckFDs(t)
	mux := http.NewServeMux()
	g := newGate()
	mux.Handle("/headers", g) // the response never starts
	mux.HandleFunc("/body", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "1000")
		io.WriteString(w, "partial body")
		w.(http.Flusher).Flush()
		<-r.Context().Done() // the rest never comes
	})
	ts := httptest.NewServer(mux)
	defer ts.Close()
	defer g.open()
	l := testenv.StartLoop(t)
	c := newClient(t, rest.Config{BaseURL: ts.URL, Timeout: 200 * time.Millisecond})

	for _, path := range []string{"/headers", "/body"} {
		t.Run(path, func(t *testing.T) {
			start := time.Now()
			o := run(t, l, c.Get(path))
			require.ErrorIs(t, o.err, rest.ErrTimeout)
			require.ErrorIs(t, o.err, async.ErrTimeout, "also an async timeout")
			require.Equal(t, rest.KindTimeout, rest.KindOf(o.err))
			require.Nil(t, o.v.Body, "partial body discarded")
			require.Zero(t, o.v.Status)
			// Not early: the deadline is armed on the loop's clock, which
			// is read once per loop iteration and may predate start by a
			// fraction of a millisecond (199.95 ms was seen under CI load).
			require.GreaterOrEqual(t, time.Since(start), 190*time.Millisecond)
		})
	}
	testenv.Eventually(t, 10*time.Second, "server saw the cancellation", func() bool { return g.cancelled.Load() == 1 })
	require.Zero(t, c.Stats().InFlight)
}

// TestTimeoutStuckWorker: Timeout holds even when the worker is stuck in
// code that ignores the request context (here the request's GetBody), for
// the stuck request and for the one queued behind it.
func TestTimeoutStuckWorker(t *testing.T) {
	g := newGate()
	ts := httptest.NewServer(g)
	defer ts.Close()
	defer g.open()
	l := testenv.StartLoop(t)
	c := newClient(t, rest.Config{MaxConcurrent: 1, Queue: 1, Timeout: 150 * time.Millisecond})

	unblock := make(chan struct{})
	defer close(unblock)
	entered := make(chan struct{})
	req, err := http.NewRequest(http.MethodPost, ts.URL, strings.NewReader("body"))
	require.NoError(t, err)
	req.GetBody = func() (io.ReadCloser, error) {
		close(entered)
		select {
		case <-unblock:
		case <-time.After(10 * time.Second):
		}
		return io.NopCloser(strings.NewReader("body")), nil
	}
	stuck := launch(t, l, c.Do(req))
	testenv.Wait(t, 15*time.Second, entered, "worker stuck in GetBody")
	queued := run(t, l, c.Get(ts.URL))
	require.ErrorIs(t, queued.err, rest.ErrTimeout)
	require.False(t, queued.inline, "it was queued, not rejected")
	s := testenv.Wait(t, 15*time.Second, stuck, "stuck request")
	require.ErrorIs(t, s.err, rest.ErrTimeout)
	require.Zero(t, g.arrived.Load(), "neither request reached the server")
}

func TestConnectTimeout(t *testing.T) {
	addr := blackhole(t)
	testenv.CheckFDs(t)
	l := testenv.StartLoop(t)
	c := newClient(t, rest.Config{ConnectTimeout: 200 * time.Millisecond, Timeout: 5 * time.Second})
	start := time.Now()
	o := run(t, l, c.Get("http://"+addr+"/"))
	require.ErrorIs(t, o.err, rest.ErrConnectTimeout)
	require.Equal(t, rest.KindConnectTimeout, rest.KindOf(o.err))
	require.Less(t, time.Since(start), 5*time.Second, "the connect timeout, not the total one")

	t.Run("total timeout first", func(t *testing.T) {
		c := newClient(t, rest.Config{ConnectTimeout: 5 * time.Second, Timeout: 200 * time.Millisecond})
		o := run(t, l, c.Get("http://"+addr+"/"))
		require.ErrorIs(t, o.err, rest.ErrTimeout)
		// The dial goes on in net/http (for a later request) until the
		// connect timeout; Close aborts it, so no fd outlives the client.
		start := time.Now()
		closeClient(t, c)
		require.Less(t, time.Since(start), 4*time.Second)
	})
	t.Run("https", func(t *testing.T) {
		c := newClient(t, rest.Config{ConnectTimeout: 200 * time.Millisecond})
		o := run(t, l, c.Get("https://"+addr+"/"))
		require.ErrorIs(t, o.err, rest.ErrConnectTimeout)
	})
	t.Run("tls handshake", func(t *testing.T) {
		// A TCP server that accepts and never answers the ClientHello.
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		defer ln.Close()
		var conns sync.WaitGroup
		defer conns.Wait()
		conns.Add(1)
		go func() {
			defer conns.Done()
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			defer conn.Close()
			conn.SetReadDeadline(time.Now().Add(10 * time.Second))
			io.Copy(io.Discard, conn)
		}()
		c := newClient(t, rest.Config{ConnectTimeout: 200 * time.Millisecond})
		o := run(t, l, c.Get("https://"+ln.Addr().String()+"/"))
		require.ErrorIs(t, o.err, rest.ErrConnectTimeout)
		closeClient(t, c)
	})
}

func TestOverload(t *testing.T) {
	g := newGate()
	ts := httptest.NewServer(g)
	defer ts.Close()
	defer g.open()
	l := testenv.StartLoop(t)

	t.Run("fail fast", func(t *testing.T) {
		c := newClient(t, rest.Config{MaxConcurrent: 2})
		a, b := launch(t, l, c.Get(ts.URL)), launch(t, l, c.Get(ts.URL))
		testenv.Eventually(t, 10*time.Second, "two requests running", func() bool { return c.Stats().Pool.Busy == 2 })
		o := run(t, l, c.Get(ts.URL))
		require.ErrorIs(t, o.err, async.ErrOverloaded)
		require.True(t, o.inline, "rejected at once, without suspending")
		require.Equal(t, rest.KindOverloaded, rest.KindOf(o.err))
		require.EqualValues(t, 1, c.Stats().Pool.Rejected)
		g.open()
		require.NoError(t, testenv.Wait(t, 15*time.Second, a, "a").err)
		require.NoError(t, testenv.Wait(t, 15*time.Second, b, "b").err)
	})
	t.Run("bounded queue", func(t *testing.T) {
		g := newGate()
		ts := httptest.NewServer(g)
		defer ts.Close()
		defer g.open()
		c := newClient(t, rest.Config{MaxConcurrent: 1, Queue: 2})
		var chs []<-chan outcome[rest.Result]
		for range 3 {
			chs = append(chs, launch(t, l, c.Get(ts.URL)))
		}
		testenv.Eventually(t, 10*time.Second, "one running, two queued", func() bool {
			s := c.Stats().Pool
			return s.Busy == 1 && s.Queued == 2
		})
		o := run(t, l, c.Get(ts.URL))
		require.ErrorIs(t, o.err, async.ErrOverloaded)
		require.True(t, o.inline)
		g.open()
		for _, ch := range chs {
			r := testenv.Wait(t, 15*time.Second, ch, "queued request")
			require.NoError(t, r.err)
			require.Equal(t, "released", r.v.Text())
		}
	})
}

// TestKeepAliveClosedByServer: servers close idle keep-alive connections
// (timeouts, restarts, one request per connection); requests keep working.
func TestKeepAliveClosedByServer(t *testing.T) {
	testenv.CheckFDs(t)
	l := testenv.StartLoop(t)
	t.Run("closed between requests", func(t *testing.T) {
		ts := httptest.NewServer(http.HandlerFunc(echo))
		defer ts.Close()
		c := newClient(t, rest.Config{})
		for i := range 20 {
			o := run(t, l, c.Get(ts.URL+"/"+strconv.Itoa(i)))
			require.NoError(t, o.err, "request %d", i)
			ts.CloseClientConnections()
		}
	})
	t.Run("connection close", func(t *testing.T) {
		ts := httptest.NewUnstartedServer(http.HandlerFunc(echo))
		ts.Config.SetKeepAlivesEnabled(false)
		ts.Start()
		defer ts.Close()
		c := newClient(t, rest.Config{})
		for i := range 20 {
			require.NoError(t, run(t, l, c.Post(ts.URL, "text/plain", []byte("x"))).err, "request %d", i)
		}
	})
	t.Run("closed right after the response", func(t *testing.T) {
		// A raw server that answers with an implicit keep-alive and closes
		// at once: the client may pick the dying connection. Idempotent
		// requests (GET, PUT, DELETE) are then retried once on a new one.
		addr, stop := closingServer(t)
		defer stop()
		c := newClient(t, rest.Config{})
		url := "http://" + addr + "/"
		req, err := http.NewRequest(http.MethodDelete, url, nil)
		require.NoError(t, err)
		for _, op := range []async.Op[rest.Result]{
			c.Get(url), c.Put(url, "text/plain", []byte("x")), c.Delete(url), c.Do(req),
		} {
			for i := range 50 {
				o := run(t, l, op)
				require.NoError(t, o.err, "request %d", i)
				require.Equal(t, "ok", o.v.Text())
			}
		}
	})
}

// closingServer answers each connection's first request with 200 "ok"
// (HTTP/1.1, no Connection: close) and closes the connection.
func closingServer(t *testing.T) (string, func()) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer conn.Close()
				conn.SetDeadline(time.Now().Add(5 * time.Second))
				req, err := http.ReadRequest(bufio.NewReader(conn))
				if err != nil {
					return
				}
				io.Copy(io.Discard, req.Body)
				io.WriteString(conn, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
			}()
		}
	}()
	return ln.Addr().String(), func() { ln.Close(); wg.Wait() }
}

// TestCancelledAwait: an await that gives up cancels the HTTP request.
func TestCancelledAwait(t *testing.T) {
	g := newGate()
	ts := httptest.NewServer(g)
	defer ts.Close()
	defer g.open()
	l := testenv.StartLoop(t)
	obs := &recordingObserver{}
	c := newClient(t, rest.Config{Observer: obs})
	done := make(chan error, 1)
	require.NoError(t, l.Post(func() {
		async.Launch(l, c.Get(ts.URL), func(_ rest.Result, err error) { done <- err }, async.Timeout(100*time.Millisecond))
	}))
	err := testenv.Wait(t, 15*time.Second, done, "launch report")
	require.ErrorIs(t, err, async.ErrTimeout)
	require.Equal(t, rest.KindTimeout, rest.KindOf(err))
	testenv.Eventually(t, 10*time.Second, "server request cancelled", func() bool { return g.cancelled.Load() == 1 })
	testenv.Eventually(t, 10*time.Second, "observer told", func() bool {
		obs.mu.Lock()
		defer obs.mu.Unlock()
		return len(obs.finished) == 1
	})
	require.Equal(t, "GET 0 cancelled", obs.finished[0])
	require.EqualValues(t, 1, c.Stats().Errors(rest.KindCancelled))
}

func TestClose(t *testing.T) {
	ts := httptest.NewServer(http.HandlerFunc(echo))
	defer ts.Close()
	l := testenv.StartLoop(t)
	c, err := rest.NewClient(rest.Config{})
	require.NoError(t, err)
	require.NoError(t, run(t, l, c.Get(ts.URL)).err)
	closeClient(t, c)
	o := run(t, l, c.Get(ts.URL))
	require.ErrorIs(t, o.err, async.ErrClosed)
	require.True(t, o.inline)
	require.NoError(t, c.Close(context.Background()), "idempotent")
}

// TestThousandInFlight holds 1,000 requests at the server at once, then
// checks that every one completes and nothing (goroutine, fd) is left.
func TestThousandInFlight(t *testing.T) {
	if testing.Short() {
		t.Skip("short mode")
	}
	const n = 1000
	testenv.CheckFDs(t)
	g := newGate()
	ts := httptest.NewUnstartedServer(g)
	ts.Start()
	defer ts.Close()
	defer g.open()
	l1, l2 := testenv.StartLoop(t), testenv.StartLoop(t)
	c := newClient(t, rest.Config{BaseURL: ts.URL, MaxConcurrent: n, Timeout: 60 * time.Second})
	var chs []<-chan outcome[rest.Result]
	for i := range n {
		l := l1
		if i%2 == 1 {
			l = l2
		}
		chs = append(chs, launch(t, l, c.Get("/"+strconv.Itoa(i))))
	}
	testenv.Eventually(t, 10*time.Second, "1,000 requests at the server", func() bool { return g.arrived.Load() == n })
	s := c.Stats()
	require.EqualValues(t, n, s.InFlight)
	require.Equal(t, n, s.Pool.Busy)
	g.open()
	for i, ch := range chs {
		o := testenv.Wait(t, 15*time.Second, ch, "request "+strconv.Itoa(i))
		require.NoError(t, o.err)
		require.Equal(t, "released", o.v.Text())
	}
	s = c.Stats()
	require.Zero(t, s.InFlight)
	require.EqualValues(t, n, s.Errors(rest.KindOK))
	closeClient(t, c)
	ts.Close()
	// checkFDs (cleanup) and goleak (TestMain) check that the 1,000
	// connections and their goroutines are gone.
}
