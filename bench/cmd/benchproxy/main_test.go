package main

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/asyncsip/asyncsip/bench/internal/routedb"
	"github.com/asyncsip/asyncsip/internal/sipp"
	"github.com/asyncsip/asyncsip/internal/testenv"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// database/sql's connection opener and net/http's idle connections
		// belong to the process-wide driver and transport.
		goleak.IgnoreTopFunction("database/sql.(*DB).connectionOpener"),
		goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"),
	)
}

// startProxy runs the benchmark proxy in-process until the test ends.
func startProxy(t *testing.T, args ...string) netip.AddrPort {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	addrs := make(chan []netip.AddrPort, 1)
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, append([]string{"-listen", "udp:127.0.0.1:0"}, args...), func(a []netip.AddrPort) { addrs <- a })
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			require.NoError(t, err)
		case <-time.After(10 * time.Second):
			t.Error("benchproxy did not stop")
		}
	})
	select {
	case a := <-addrs:
		require.NotEmpty(t, a)
		return a[0]
	case err := <-done:
		t.Fatalf("benchproxy: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("benchproxy did not start")
	}
	return netip.AddrPort{}
}

// TestScenariosRelayCalls drives every scenario with real SIPp calls (the
// bench scenarios uac.xml/uas.xml), a real HTTP server and a real SQLite file.
func TestScenariosRelayCalls(t *testing.T) {
	testenv.SIPp(t)
	var hop atomic.Value // the next hop the web service answers
	web := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(Delay)
		_, _ = w.Write([]byte(hop.Load().(string)))
	}))
	defer web.Close()
	for _, sc := range Scenarios {
		t.Run(sc, func(t *testing.T) {
			uasPort := testenv.FreeUDPPort(t)
			uas := sipp.Start(t, sipp.Config{Scenario: filepath.Join("..", "..", "sipp", "uas.xml"), LocalPort: uasPort, Timeout: 60 * time.Second})
			target := "127.0.0.1:" + strconv.Itoa(uasPort)
			hop.Store(target)
			args := []string{"-scenario", sc, "-target", target, "-workers", "2",
				"-rest-url", web.URL + "/route", "-db", "sqlite:" + filepath.Join(t.TempDir(), "routes.db")}
			proxy := startProxy(t, args...)
			res := sipp.Run(t, sipp.Config{
				Scenario: filepath.Join("..", "..", "sipp", "uac.xml"), Remote: proxy.String(), Service: "bob",
				Calls: 20, Rate: 20, Timeout: 30 * time.Second,
				Args: []string{"-recv_timeout", "5000", "-default_behaviors", "all,-abortunexp"},
			})
			require.Equal(t, 20, res.Successful, res.String())
			require.Zero(t, res.Failed, res.String())
			uas.Stop()
		})
	}
}

func TestBadFlags(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want error
	}{
		{"unknown scenario", []string{"-scenario", "nap"}, ErrUnknownScenario},
		{"db without dsn", []string{"-scenario", "db"}, nil},
		{"bad dsn", []string{"-scenario", "db", "-db", "mysql://x"}, routedb.ErrBadDSN},
		{"bad listen", []string{"-listen", "nowhere"}, nil},
		{"extra argument", []string{"relay"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Bounded even if a case were accepted: run then serves until ctx ends.
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			err := run(ctx, tc.args, nil)
			require.Error(t, err)
			if tc.want != nil {
				require.True(t, errors.Is(err, tc.want), err)
			}
		})
	}
}
