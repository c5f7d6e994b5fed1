package e2etest

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/asyncsip/asyncsip"
	"github.com/asyncsip/asyncsip/internal/testenv"
	"github.com/asyncsip/asyncsip/tm"
)

// Quiet is the logger of test servers: nothing is written.
var Quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// NewServer creates a server for a test with routes, not started (Start,
// Serve or ServeSignals is the test's). Zero fields of cfg get test
// defaults: one UDP listener on an ephemeral port of 127.0.0.1, 2 workers,
// the Quiet logger. When the test ends the server is shut down (an error
// fails the test; a server the test shut down already reports none) and
// the descriptors it opened must be closed within 5 s.
func NewServer(t testing.TB, cfg asyncsip.Config, routes tm.Routes) *asyncsip.Server {
	t.Helper()
	fds := testenv.CountFDs()
	t.Cleanup(func() { testenv.FDsBackTo(t, fds, 5*time.Second) })
	if len(cfg.Listen) == 0 {
		cfg.Listen = []string{"udp:127.0.0.1:0"}
	}
	if cfg.Workers == 0 {
		cfg.Workers = 2
	}
	if cfg.Logger == nil {
		cfg.Logger = Quiet
	}
	srv, err := asyncsip.New(cfg)
	require.NoError(t, err)
	srv.SetRoutes(routes)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		require.NoError(t, srv.Shutdown(ctx))
	})
	return srv
}

// StartServer is NewServer, started.
func StartServer(t testing.TB, cfg asyncsip.Config, routes tm.Routes) *asyncsip.Server {
	t.Helper()
	srv := NewServer(t, cfg, routes)
	require.NoError(t, srv.Start())
	return srv
}

// NoLeaks fails the test when goroutines started after the call are still
// running once the cleanups registered after it (a server's shutdown) have
// run. Call it first.
func NoLeaks(t testing.TB) {
	leaks := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, leaks) })
}
