package db_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/asyncsip/asyncsip"
	"github.com/asyncsip/asyncsip/async"
	"github.com/asyncsip/asyncsip/internal/testenv"
	"github.com/asyncsip/asyncsip/modules/db"
	"github.com/asyncsip/asyncsip/modules/metrics"
)

// A handle's pool is exported by the server's metrics exporter: after one
// query, /metrics shows the pool's workers and the completed call under
// pool="db".
func TestPoolWatchedByMetrics(t *testing.T) {
	h, err := db.Open(db.DriverSQLite, filepath.Join(t.TempDir(), "m.db"))
	require.NoError(t, err)
	defer h.Close()
	require.NotNil(t, h.Pool())

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
	require.NoError(t, exp.WatchPool("db", h.Pool()))

	done := make(chan error, 1)
	l := srv.Group().Loop(0)
	require.NoError(t, l.Post(func() {
		async.Launch(l, h.QueryRow("SELECT 1"), func(_ db.Row, err error) { done <- err })
	}))
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("the query did not complete within 10 s")
	}

	var body string
	// The pool counts the call completed just after its result is posted.
	ok := testenv.Poll(5*time.Second, func() bool {
		body = scrapeMetrics(exp)
		return strings.Contains(body, `asyncsip_pool_completed_total{pool="db"} 1`)
	})
	require.True(t, ok, "pool metrics of the handle:\n%s", grepLines(body, `pool="db"`))
	assert.Contains(t, body, fmt.Sprintf(`asyncsip_pool_workers{pool="db"} %d`, h.Pool().Stats().Workers))
}

func scrapeMetrics(exp *metrics.Exporter) string {
	rec := httptest.NewRecorder()
	exp.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	return rec.Body.String()
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
