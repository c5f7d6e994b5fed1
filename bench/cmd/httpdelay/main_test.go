package main

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestHandlerAnswersAfterDelay(t *testing.T) {
	srv := httptest.NewServer(Handler(30*time.Millisecond, "127.0.0.1:5080"))
	defer srv.Close()
	start := time.Now()
	resp, err := http.Get(srv.URL + "/route?user=bob")
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.GreaterOrEqual(t, time.Since(start), 30*time.Millisecond)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, "127.0.0.1:5080", string(body))
	require.Equal(t, "text/plain", resp.Header.Get("Content-Type"))
	srv.Client().CloseIdleConnections()
}

func TestHandlerStopsWhenClientLeaves(t *testing.T) {
	srv := httptest.NewServer(Handler(time.Hour, "x"))
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL, nil)
	require.NoError(t, err)
	_, err = http.DefaultClient.Do(req)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	// srv.Close waits for the handler: it returns only because the handler
	// saw the client go away instead of sleeping an hour.
}

func TestRunFlags(t *testing.T) {
	require.Error(t, run([]string{"-delay", "-1s"}))
	require.Error(t, run([]string{"extra"}))
	require.Error(t, run([]string{"-listen", "256.0.0.1:1"}))
}
