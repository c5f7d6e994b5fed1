package rest_test

// A route that looks its target up over REST before relaying, driven by
// SIPp through the real server (asyncsip.New on udp:127.0.0.1:0).

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/asyncsip/asyncsip"
	"github.com/asyncsip/asyncsip/async"
	"github.com/asyncsip/asyncsip/internal/sipp"
	"github.com/asyncsip/asyncsip/internal/testenv"
	"github.com/asyncsip/asyncsip/modules/rest"
	"github.com/asyncsip/asyncsip/tm"
)

// lookupRoute relays in-dialog requests along their route set; a new
// request is relayed to the "host:port" that GET /target?user=U answers,
// or answered 503 when the lookup fails.
func lookupRoute(client *rest.Client) func(c *tm.Context) {
	return func(c *tm.Context) {
		if c.InDialog() { // ACK and BYE along our signed Record-Route
			_ = c.Relay()
			return
		}
		user := c.Recipient().User
		async.Await(c, client.Get("/target?user="+url.QueryEscape(user)), func(r rest.Result, err error) {
			if err != nil || r.Status != http.StatusOK {
				_ = c.Reply(503, "Routing lookup failed")
				return
			}
			_ = c.Relay("sip:" + user + "@" + r.Text())
		}, async.Timeout(5*time.Second))
	}
}

// blockingLookupRoute does the same lookup with http.Get inside the route:
// the worker loop is blocked for the whole request. It is what the async
// route is measured against; do not write routes like this.
func blockingLookupRoute(hc *http.Client, base string) func(c *tm.Context) {
	return func(c *tm.Context) {
		if c.InDialog() { // ACK and BYE along our signed Record-Route
			_ = c.Relay()
			return
		}
		user := c.Recipient().User
		resp, err := hc.Get(base + "/target?user=" + url.QueryEscape(user))
		if err != nil {
			_ = c.Reply(503, "Routing lookup failed")
			return
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			_ = c.Reply(503, "Routing lookup failed")
			return
		}
		_ = c.Relay("sip:" + user + "@" + string(body))
	}
}

// targetHandler answers GET /target with target after delay, counting the
// lookups.
func targetHandler(target string, delay time.Duration, lookups *atomic.Int64) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /target", func(w http.ResponseWriter, r *http.Request) {
		if lookups != nil {
			lookups.Add(1)
		}
		if r.URL.Query().Get("user") == "" {
			http.Error(w, "no user", http.StatusBadRequest)
			return
		}
		if delay > 0 {
			select {
			case <-time.After(delay):
			case <-r.Context().Done():
				return
			}
		}
		io.WriteString(w, target)
	})
	return mux
}

// startProxy runs the real server with routes for the test; its graceful
// shutdown must complete.
func startProxy(t testing.TB, workers int, request func(*tm.Context)) *asyncsip.Server {
	t.Helper()
	return runProxy(t, workers, request, true)
}

// runProxy runs the real server. With strict unset (measurements, which
// push it past its limits), a drain that reaches its deadline — calls left
// unfinished by an overloaded step — is logged rather than failed.
func runProxy(t testing.TB, workers int, request func(*tm.Context), strict bool) *asyncsip.Server {
	t.Helper()
	srv, err := asyncsip.New(asyncsip.Config{
		Listen: []string{"udp:127.0.0.1:0"}, Workers: workers,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	require.NoError(t, err)
	srv.Request(request)
	require.NoError(t, srv.Start())
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			if strict {
				t.Errorf("shutdown: %v", err)
			} else {
				t.Logf("shutdown: %v (transactions of an overloaded step were still in progress)", err)
			}
		}
	})
	return srv
}

func TestSIPpLookupThenRelay(t *testing.T) {
	testenv.SIPp(t)
	const calls = 200
	testenv.CheckFDs(t)
	uasPort := sipp.Start(t, sipp.Config{Scenario: sipp.UAS, Timeout: 90 * time.Second}).Port()

	var lookups atomic.Int64
	ts := httptest.NewServer(targetHandler("127.0.0.1:"+strconv.Itoa(uasPort), 5*time.Millisecond, &lookups))
	defer ts.Close()
	client := newClient(t, rest.Config{BaseURL: ts.URL, Timeout: 2 * time.Second})
	srv := startProxy(t, 2, lookupRoute(client))

	res := sipp.Run(t, sipp.Config{Scenario: sipp.UAC, Remote: srv.Addrs()[0].String(),
		Service: "bob", Calls: calls, Rate: 100, Timeout: 60 * time.Second})
	require.Equal(t, 0, res.ExitCode, res.String())
	require.Equal(t, calls, res.Successful, res.String())
	require.Zero(t, res.Failed, res.String())

	require.EqualValues(t, calls, lookups.Load(), "one lookup per INVITE, none for ACK and BYE")
	s := client.Stats()
	require.EqualValues(t, calls, s.Errors(rest.KindOK), "%+v", s)
	require.EqualValues(t, calls, s.Finished)
	st := srv.Stats()
	require.Zero(t, st.Panics, "%+v", st)
	require.Zero(t, st.Abandoned, "%+v", st)
}

func TestSIPpLookupTimeoutAnswers503(t *testing.T) {
	testenv.SIPp(t)
	const calls = 20
	testenv.CheckFDs(t)
	var lookups atomic.Int64
	// The lookup server answers after 2 s; the client gives up after 200 ms.
	ts := httptest.NewServer(targetHandler("127.0.0.1:9", 2*time.Second, &lookups))
	defer ts.Close()
	client := newClient(t, rest.Config{BaseURL: ts.URL, Timeout: 200 * time.Millisecond})
	srv := startProxy(t, 2, lookupRoute(client))

	res := sipp.Run(t, sipp.Config{Scenario: "testdata/uac_503.xml", Remote: srv.Addrs()[0].String(),
		Service: "bob", Calls: calls, Rate: 20, Timeout: 60 * time.Second})
	require.Equal(t, 0, res.ExitCode, res.String())
	require.Equal(t, calls, res.Successful, res.String())
	require.Zero(t, res.Failed, res.String())
	require.EqualValues(t, calls, lookups.Load())
	s := client.Stats()
	require.EqualValues(t, calls, s.Errors(rest.KindTimeout), "%+v", s)
	require.Zero(t, s.InFlight)
}
