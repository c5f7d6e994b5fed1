package metrics_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/asyncsip/asyncsip/async"
	"github.com/asyncsip/asyncsip/modules/metrics"
	"github.com/asyncsip/asyncsip/reactor"
	"github.com/asyncsip/asyncsip/tm"
)

// A nil *Exporter (what a program that creates one only when an address
// is configured holds otherwise) can be called like an enabled one: registering things
// reports ErrDisabled, the rest does nothing, nothing panics.
func TestNilExporterIsDisabled(t *testing.T) {
	var e *metrics.Exporter
	assert.False(t, e.Enabled())
	assert.True(t, metrics.New(metrics.Config{Logger: quiet}).Enabled())

	g := reactor.NewManualGroup(1, reactor.NewFakeClock(time.Unix(0, 0)))
	core := tm.NewServer(g.Loops(), tm.Config{Logger: quiet}, tm.Routes{})
	assert.ErrorIs(t, e.Watch(core, g), metrics.ErrDisabled)
	assert.ErrorIs(t, e.WatchPool("db", async.DefaultPool()), metrics.ErrDisabled)
	assert.ErrorIs(t, e.Start(), metrics.ErrDisabled)
	assert.Nil(t, e.Addr())
	e.OpStarted("db.query")
	e.OpFinished("db.query", time.Millisecond, errors.New("x"))
	assert.NoError(t, e.Close(context.Background()))

	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "mine_total", Help: "x"})
	require.NotNil(t, e.Registry())
	assert.NoError(t, e.Registry().Register(c), "registering on a disabled exporter works and exports nothing")

	rec := httptest.NewRecorder()
	e.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	assert.Equal(t, http.StatusNotFound, rec.Code)
	assert.Contains(t, rec.Body.String(), "metrics disabled")
}

// WatchPool refuses a nil pool instead of failing at the first scrape.
func TestWatchNilPool(t *testing.T) {
	exp := metrics.New(metrics.Config{Logger: quiet})
	g := reactor.NewManualGroup(1, reactor.NewFakeClock(time.Unix(0, 0)))
	core := tm.NewServer(g.Loops(), tm.Config{Logger: quiet}, tm.Routes{})
	require.NoError(t, exp.Watch(core, g))
	assert.ErrorContains(t, exp.WatchPool("db", nil), "nil pool")
	require.NoError(t, exp.Close(context.Background()))
}
