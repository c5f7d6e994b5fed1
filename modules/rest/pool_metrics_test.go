package rest_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/asyncsip/asyncsip"
	"github.com/asyncsip/asyncsip/async"
	"github.com/asyncsip/asyncsip/internal/testenv"
	"github.com/asyncsip/asyncsip/modules/metrics"
	"github.com/asyncsip/asyncsip/modules/rest"
)

// A client's pool is exported by the server's metrics exporter: after one
// request, /metrics shows the pool's workers and the completed call under
// pool="rest".
func TestPoolWatchedByMetrics(t *testing.T) {
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprint(w, "ok")
	}))
	defer api.Close()
	c, err := rest.NewClient(rest.Config{})
	require.NoError(t, err)
	defer c.Close(context.Background())
	require.NotNil(t, c.Pool())

	exp := metrics.New(metrics.Config{})
	srv, err := asyncsip.New(asyncsip.Config{Listen: []string{"udp:127.0.0.1:0"}, Workers: 1,
		Extensions: []asyncsip.Extension{exp}})
	require.NoError(t, err)
	require.NoError(t, srv.Start())
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		assert.NoError(t, srv.Shutdown(ctx))
	})
	require.NoError(t, exp.WatchPool("rest", c.Pool()))

	done := make(chan error, 1)
	l := srv.Group().Loop(0)
	require.NoError(t, l.Post(func() {
		async.Launch(l, c.Get(api.URL), func(r rest.Result, err error) {
			if err == nil && r.Status != http.StatusOK {
				err = fmt.Errorf("status %d", r.Status)
			}
			done <- err
		})
	}))
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("the request did not complete within 10 s")
	}

	var body string
	// The pool counts the call completed just after its result is posted.
	ok := testenv.Poll(5*time.Second, func() bool {
		rec := httptest.NewRecorder()
		exp.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
		body = rec.Body.String()
		return strings.Contains(body, `asyncsip_pool_completed_total{pool="rest"} 1`)
	})
	require.True(t, ok, "no completed call under pool=\"rest\":\n%s", body)
	assert.Contains(t, body, fmt.Sprintf(`asyncsip_pool_workers{pool="rest"} %d`, c.Pool().Stats().Workers))
}
