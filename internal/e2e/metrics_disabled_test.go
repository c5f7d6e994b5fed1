package e2e

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/asyncsip/asyncsip"
	"github.com/asyncsip/asyncsip/async"
	"github.com/asyncsip/asyncsip/modules/metrics"
)

// Without MetricsAddr, srv.Metrics() is a disabled exporter that user code
// can call without checking for nil: WatchPool says ErrDisabled, the
// registry accepts collectors, nothing panics.
func TestMetricsWithoutAddrIsSafe(t *testing.T) {
	srv, err := asyncsip.New(asyncsip.Config{Listen: []string{"udp:127.0.0.1:0"}, Workers: 1})
	require.NoError(t, err)
	require.NoError(t, srv.Start())
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		assert.NoError(t, srv.Shutdown(ctx))
	}()
	m := srv.Metrics()
	assert.False(t, m.Enabled())
	assert.ErrorIs(t, m.WatchPool("db", async.DefaultPool()), metrics.ErrDisabled)
	assert.NoError(t, m.Registry().Register(prometheus.NewCounter(prometheus.CounterOpts{Name: "mine_total", Help: "x"})))
	assert.Nil(t, m.Addr())
}
