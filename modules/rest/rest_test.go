package rest_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/asyncsip/asyncsip/async"
	"github.com/asyncsip/asyncsip/internal/testenv"
	"github.com/asyncsip/asyncsip/modules/rest"
)

// echo answers with what it received: method, path and query, the request
// body and its content type in headers, and the request headers prefixed.
func echo(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	w.Header().Set("X-Method", r.Method)
	w.Header().Set("X-URI", r.URL.RequestURI())
	w.Header().Set("X-Req-Content-Type", r.Header.Get("Content-Type"))
	w.Header().Set("X-Req-Accept", r.Header.Get("Accept"))
	w.Header().Set("X-Req-Token", r.Header.Get("X-Token"))
	w.Header().Set("X-Req-Proto", r.Proto)
	w.Header().Set("Content-Type", "text/plain")
	w.WriteHeader(http.StatusOK)
	fmt.Fprintf(w, "%s %s %s", r.Method, r.URL.RequestURI(), body)
}

func TestMethods(t *testing.T) {
	testenv.CheckFDs(t)
	ts := httptest.NewServer(http.HandlerFunc(echo))
	defer ts.Close()
	l := testenv.StartLoop(t)
	c := newClient(t, rest.Config{BaseURL: ts.URL + "/api/"})

	patch, err := http.NewRequest(http.MethodPatch, "items/7", strings.NewReader("x=1"))
	require.NoError(t, err)
	patch.Header.Set("Content-Type", "application/x-www-form-urlencoded")

	for _, tc := range []struct {
		name, method, uri, ctype, body string
		op                             async.Op[rest.Result]
	}{
		{"get", "GET", "/api/items?id=7", "", "", c.Get("items?id=7")},
		{"get absolute", "GET", "/other", "", "", c.Get(ts.URL + "/other")},
		{"post", "POST", "/api/items", "text/plain", "hello", c.Post("items", "text/plain", []byte("hello"))},
		{"put", "PUT", "/api/items/7", "application/octet-stream", "\x00\x01", c.Put("items/7", "application/octet-stream", []byte{0, 1})},
		{"delete", "DELETE", "/api/items/7", "", "", c.Delete("items/7")},
		{"do patch", "PATCH", "/api/items/7", "application/x-www-form-urlencoded", "x=1", c.Do(patch)},
		{"root path", "GET", "/health", "", "", c.Get("/health")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := run(t, l, tc.op)
			require.NoError(t, o.err)
			r := o.v
			require.Equal(t, 200, r.Status)
			require.True(t, r.OK())
			require.Equal(t, "text/plain", r.ContentType)
			require.Equal(t, tc.method, r.Header.Get("X-Method"))
			require.Equal(t, tc.uri, r.Header.Get("X-URI"))
			require.Equal(t, tc.ctype, r.Header.Get("X-Req-Content-Type"))
			require.Equal(t, tc.method+" "+tc.uri+" "+tc.body, r.Text())
		})
	}
}

func TestOpStartedTwiceSendsTwice(t *testing.T) {
	var mu sync.Mutex
	var bodies []string
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		bodies = append(bodies, string(b))
		mu.Unlock()
	}))
	defer ts.Close()
	l := testenv.StartLoop(t)
	c := newClient(t, rest.Config{})
	req, err := http.NewRequest(http.MethodPost, ts.URL, strings.NewReader("do"))
	require.NoError(t, err)
	for _, op := range []async.Op[rest.Result]{c.Post(ts.URL, "text/plain", []byte("post")), c.Do(req)} {
		for range 2 {
			require.NoError(t, run(t, l, op).err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	require.Equal(t, []string{"post", "post", "do", "do"}, bodies)
}

func TestHeaders(t *testing.T) {
	ts := httptest.NewServer(http.HandlerFunc(echo))
	defer ts.Close()
	l := testenv.StartLoop(t)
	c := newClient(t, rest.Config{Header: http.Header{"X-Token": {"default"}, "Accept": {"text/plain"}}})

	r := run(t, l, c.Get(ts.URL)).v
	require.Equal(t, "default", r.Header.Get("X-Req-Token"), "default header sent")
	require.Equal(t, "text/plain", r.Header.Get("X-Req-Accept"))

	r = run(t, l, c.GetJSON(ts.URL)).v
	require.Equal(t, "application/json", r.Header.Get("X-Req-Accept"), "the op's Accept wins")
	require.Equal(t, "default", r.Header.Get("X-Req-Token"))

	req, err := http.NewRequest(http.MethodGet, ts.URL, nil)
	require.NoError(t, err)
	req.Header.Set("X-Token", "mine")
	r = run(t, l, c.Do(req)).v
	require.Equal(t, "mine", r.Header.Get("X-Req-Token"), "the request's header wins")
	require.Equal(t, "text/plain", r.Header.Get("X-Req-Accept"), "defaults fill in the rest")
	require.Equal(t, "mine", req.Header.Get("X-Token"), "the caller's request is not modified")
	require.Empty(t, req.Header.Get("Accept"))
}

type route struct {
	User    string   `json:"user"`
	Targets []string `json:"targets"`
	Weight  int      `json:"weight"`
}

func TestJSON(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /route", func(w http.ResponseWriter, r *http.Request) {
		var in route
		if r.Header.Get("Content-Type") != "application/json" || json.NewDecoder(r.Body).Decode(&in) != nil {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		in.Targets = append(in.Targets, "127.0.0.1:5070")
		in.Weight++
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(in)
	})
	mux.HandleFunc("PUT /route", func(w http.ResponseWriter, r *http.Request) { io.Copy(w, r.Body) })
	mux.HandleFunc("GET /missing", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, `{"error":"no route"}`, http.StatusNotFound)
	})
	mux.HandleFunc("GET /garbage", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "{not json") })
	mux.HandleFunc("GET /empty", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) })
	ts := httptest.NewServer(mux)
	defer ts.Close()
	l := testenv.StartLoop(t)
	c := newClient(t, rest.Config{BaseURL: ts.URL})

	in := route{User: "alice", Targets: []string{"127.0.0.1:5060"}, Weight: 1}
	want := route{User: "alice", Targets: []string{"127.0.0.1:5060", "127.0.0.1:5070"}, Weight: 2}

	t.Run("post and decode on the worker", func(t *testing.T) {
		o := run(t, l, rest.JSON[route](c.PostJSON("/route", in)))
		require.NoError(t, o.err)
		require.Equal(t, want, o.v)
	})
	t.Run("Result.JSON", func(t *testing.T) {
		o := run(t, l, c.PostJSON("/route", in))
		require.NoError(t, o.err)
		require.Equal(t, "application/json", o.v.ContentType)
		var got route
		require.NoError(t, o.v.JSON(&got))
		require.Equal(t, want, got)
	})
	t.Run("put", func(t *testing.T) {
		o := run(t, l, rest.JSON[route](c.PutJSON("/route", in)))
		require.NoError(t, o.err)
		require.Equal(t, in, o.v)
	})
	t.Run("decode on the loop for other ops", func(t *testing.T) {
		o := run(t, l, rest.JSON[route](async.Done(rest.Result{Status: 200, Body: []byte(`{"user":"bob"}`)}, nil)))
		require.NoError(t, o.err)
		require.Equal(t, route{User: "bob"}, o.v)
	})
	t.Run("status", func(t *testing.T) {
		o := run(t, l, rest.JSON[route](c.GetJSON("/missing")))
		require.ErrorIs(t, o.err, rest.ErrStatus)
		var se *rest.StatusError
		require.ErrorAs(t, o.err, &se)
		require.Equal(t, 404, se.Status)
		require.Contains(t, string(se.Body), "no route")
		require.Equal(t, rest.KindStatus, rest.KindOf(o.err))
	})
	t.Run("garbage", func(t *testing.T) {
		o := run(t, l, rest.JSON[route](c.GetJSON("/garbage")))
		require.ErrorIs(t, o.err, rest.ErrDecode)
		require.Equal(t, rest.KindDecode, rest.KindOf(o.err))
	})
	t.Run("no content", func(t *testing.T) {
		o := run(t, l, rest.JSON[*route](c.GetJSON("/empty")))
		require.NoError(t, o.err)
		require.Nil(t, o.v)
	})
	t.Run("unencodable", func(t *testing.T) {
		o := run(t, l, c.PostJSON("/route", func() {}))
		require.Error(t, o.err)
		require.True(t, o.inline, "fails before any I/O")
	})
}

func TestBadURL(t *testing.T) {
	l := testenv.StartLoop(t)
	c := newClient(t, rest.Config{})
	based := newClient(t, rest.Config{BaseURL: "http://127.0.0.1:1/api/"})
	for _, tc := range []struct {
		name string
		op   async.Op[rest.Result]
	}{
		{"unparsable", c.Get("http://[::1")},
		{"control char", c.Get("http://127.0.0.1/\x7f")},
		{"relative without base", c.Get("/route")},
		{"scheme", c.Get("ftp://127.0.0.1/x")},
		{"no host", c.Get("http:///x")},
		{"port out of range", c.Post("http://127.0.0.1:99999/", "text/plain", nil)},
		{"bad relative on base", based.Get("http://%zz")},
		{"nil request", c.Do(nil)},
		{"request without URL", c.Do(&http.Request{Method: "GET"})},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := run(t, l, tc.op)
			require.ErrorIs(t, o.err, rest.ErrBadURL)
			require.True(t, o.inline, "a bad URL fails inline, without I/O")
			require.Equal(t, rest.KindBadURL, rest.KindOf(o.err))
		})
	}
	for _, base := range []string{"::", "ftp://x/", "http://", "http://h:70000/"} {
		_, err := rest.NewClient(rest.Config{BaseURL: base})
		require.ErrorIs(t, err, rest.ErrBadURL, base)
	}
	require.Zero(t, c.Stats().Pool.Completed, "no request reached the pool")
}

func TestTLS(t *testing.T) {
	testenv.CheckFDs(t)
	l := testenv.StartLoop(t)
	ts := httptest.NewUnstartedServer(http.HandlerFunc(echo))
	ts.Config.ErrorLog = log.New(io.Discard, "", 0) // the unknown-authority case logs a handshake error
	ts.StartTLS()
	defer ts.Close()
	pool := ts.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs

	c := newClient(t, rest.Config{RootCAs: pool})
	o := run(t, l, c.Post(ts.URL+"/secure", "text/plain", []byte("s")))
	require.NoError(t, o.err)
	require.Equal(t, "POST /secure s", o.v.Text())
	require.Equal(t, "HTTP/1.1", o.v.Header.Get("X-Req-Proto"))

	t.Run("unknown authority", func(t *testing.T) {
		c := newClient(t, rest.Config{})
		o := run(t, l, c.Get(ts.URL))
		require.ErrorIs(t, o.err, rest.ErrTLS)
		require.Equal(t, rest.KindTLS, rest.KindOf(o.err))
	})
	t.Run("http2", func(t *testing.T) {
		h2 := httptest.NewUnstartedServer(http.HandlerFunc(echo))
		h2.EnableHTTP2 = true
		h2.StartTLS()
		defer h2.Close()
		c := newClient(t, rest.Config{RootCAs: h2.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs})
		o := run(t, l, c.Get(h2.URL))
		require.NoError(t, o.err)
		require.Equal(t, "HTTP/2.0", o.v.Header.Get("X-Req-Proto"))
	})
}

func TestConnRefused(t *testing.T) {
	l := testenv.StartLoop(t)
	port := testenv.FreeTCPPort(t)
	c := newClient(t, rest.Config{})
	o := run(t, l, c.Get("http://127.0.0.1:"+strconv.Itoa(port)+"/"))
	require.ErrorIs(t, o.err, rest.ErrConnRefused)
	require.Equal(t, rest.KindRefused, rest.KindOf(o.err))
	require.Zero(t, o.v.Status)
	require.Contains(t, o.err.Error(), "GET http://127.0.0.1:")
}

func TestBodyLimit(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("/sized/{n}", func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(r.PathValue("n"))
		w.Header().Set("Content-Length", strconv.Itoa(n))
		w.Write([]byte(strings.Repeat("a", n)))
	})
	mux.HandleFunc("/chunked/{n}", func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(r.PathValue("n"))
		for i := 0; i < n; i += 10 {
			w.Write([]byte(strings.Repeat("b", min(10, n-i))))
			w.(http.Flusher).Flush()
		}
	})
	mux.HandleFunc("/truncated", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "50")
		w.Write([]byte("short"))
		conn, _, _ := w.(http.Hijacker).Hijack()
		conn.Close()
	})
	ts := httptest.NewServer(mux)
	defer ts.Close()
	l := testenv.StartLoop(t)
	c := newClient(t, rest.Config{BaseURL: ts.URL, MaxBody: 100})
	for _, tc := range []struct {
		path string
		size int // expected body size, or -1 for ErrBodyTooLarge
	}{
		{"/sized/100", 100}, {"/sized/0", 0}, {"/sized/101", -1}, {"/sized/100000", -1},
		{"/chunked/100", 100}, {"/chunked/101", -1}, {"/chunked/5000", -1},
	} {
		t.Run(tc.path, func(t *testing.T) {
			o := run(t, l, c.Get(tc.path))
			if tc.size < 0 {
				require.ErrorIs(t, o.err, rest.ErrBodyTooLarge)
				require.Equal(t, rest.KindBodyTooLarge, rest.KindOf(o.err))
				require.Nil(t, o.v.Body)
				return
			}
			require.NoError(t, o.err)
			require.Len(t, o.v.Body, tc.size)
		})
	}
	t.Run("truncated", func(t *testing.T) {
		o := run(t, l, c.Get("/truncated"))
		require.Error(t, o.err)
		require.ErrorIs(t, o.err, io.ErrUnexpectedEOF)
		require.Equal(t, rest.KindOther, rest.KindOf(o.err))
	})
}

// recordingObserver records what a client reports.
type recordingObserver struct {
	mu       sync.Mutex
	started  []string
	finished []string // "METHOD status kind"
}

func (o *recordingObserver) RequestStarted(method string) {
	o.mu.Lock()
	o.started = append(o.started, method)
	o.mu.Unlock()
}

func (o *recordingObserver) RequestFinished(method string, status int, kind rest.Kind, latency time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if latency < 0 {
		kind = 255
	}
	o.finished = append(o.finished, fmt.Sprintf("%s %d %s", method, status, kind))
}

func TestObserverAndStats(t *testing.T) {
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/404" {
			http.NotFound(w, r)
		}
	}))
	defer ts.Close()
	l := testenv.StartLoop(t)
	obs := &recordingObserver{}
	c := newClient(t, rest.Config{BaseURL: ts.URL, Observer: obs})
	run(t, l, c.Get("/ok"))
	run(t, l, c.Delete("/404"))
	run(t, l, rest.JSON[route](c.GetJSON("/404")))
	run(t, l, c.Get("gopher://x"))
	obs.mu.Lock()
	require.Equal(t, []string{"GET", "DELETE", "GET", "GET"}, obs.started)
	require.Equal(t, []string{"GET 200 ok", "DELETE 404 ok", "GET 404 status", "GET 0 bad_url"}, obs.finished)
	obs.mu.Unlock()
	s := c.Stats()
	require.EqualValues(t, 4, s.Started)
	require.EqualValues(t, 4, s.Finished)
	require.Zero(t, s.InFlight)
	require.EqualValues(t, 2, s.Errors(rest.KindOK))
	require.EqualValues(t, 1, s.Errors(rest.KindStatus))
	require.EqualValues(t, 1, s.Errors(rest.KindBadURL))
	require.Zero(t, s.Errors(rest.Kind(200)))
	require.Equal(t, "unknown", rest.Kind(200).String())
}

func TestKindOf(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want rest.Kind
	}{
		{nil, rest.KindOK},
		{fmt.Errorf("x: %w", async.ErrTimeout), rest.KindTimeout},
		{fmt.Errorf("x: %w", async.ErrOverloaded), rest.KindOverloaded},
		{fmt.Errorf("x: %w", async.ErrCancelled), rest.KindCancelled},
		{fmt.Errorf("x: %w", rest.ErrConnectTimeout), rest.KindConnectTimeout},
		{errors.New("other"), rest.KindOther},
	} {
		require.Equal(t, tc.want, rest.KindOf(tc.err), "%v", tc.err)
	}
}

func TestStartWithoutLoop(t *testing.T) {
	c := newClient(t, rest.Config{})
	var got error
	calls := 0
	cancel := c.Get("http://127.0.0.1:1/").Start(nil, func(_ rest.Result, err error) { calls++; got = err })
	require.Nil(t, cancel)
	require.Equal(t, 1, calls)
	require.ErrorContains(t, got, "without a loop")
}
