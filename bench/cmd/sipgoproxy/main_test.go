package main

import (
	"context"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/asyncsip/asyncsip/internal/sipp"
	"github.com/asyncsip/asyncsip/internal/testenv"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestProxyRelaysCalls runs real SIPp calls through the sipgo proxy.
func TestProxyRelaysCalls(t *testing.T) {
	testenv.SIPp(t)
	for _, sc := range []string{"relay", "sleep"} {
		t.Run(sc, func(t *testing.T) {
			uasPort := testenv.FreeUDPPort(t)
			uas := sipp.Start(t, sipp.Config{Scenario: filepath.Join("..", "..", "sipp", "uas.xml"), LocalPort: uasPort, Timeout: 60 * time.Second})
			addr := "127.0.0.1:" + strconv.Itoa(testenv.FreeUDPPort(t))
			ctx, cancel := context.WithCancel(context.Background())
			ready, done := make(chan struct{}, 1), make(chan error, 1)
			go func() {
				done <- run(ctx, []string{"-scenario", sc, "-listen", addr, "-target", "127.0.0.1:" + strconv.Itoa(uasPort)}, ready)
			}()
			select {
			case <-ready:
			case err := <-done:
				t.Fatalf("sipgoproxy: %v", err)
			case <-time.After(10 * time.Second):
				t.Fatal("sipgoproxy did not start")
			}
			res := sipp.Run(t, sipp.Config{
				Scenario: filepath.Join("..", "..", "sipp", "uac.xml"), Remote: addr, Service: "bob",
				Calls: 20, Rate: 20, Timeout: 30 * time.Second,
				Args: []string{"-recv_timeout", "5000", "-default_behaviors", "all,-abortunexp"},
			})
			require.Equal(t, 20, res.Successful, res.String())
			require.Zero(t, res.Failed, res.String())
			uas.Stop()
			cancel()
			select {
			case err := <-done:
				require.NoError(t, err)
			case <-time.After(10 * time.Second):
				t.Fatal("sipgoproxy did not stop")
			}
		})
	}
}

func TestBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"-scenario", "rest"}, {"-listen", "nonsense"}, {"-listen", "127.0.0.1:x"}, {"extra"}, {"-log-level", "loud"},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second) // bounded even if accepted
		require.Error(t, run(ctx, args, nil), args)
		cancel()
	}
}
