package reactor

import (
	"context"
	"net"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	// Open Go's own netpoller once (test clients use net.UDPConn) so that
	// its epoll and wake-up fds are not counted as leaks by the first test.
	if c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}); err == nil {
		_ = c.Close()
	}
	goleak.VerifyTestMain(m)
}

// waitTimeout bounds every wait in the tests.
const waitTimeout = 10 * time.Second

func fdCount(t testing.TB) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	require.NoError(t, err)
	return len(ents)
}

// checkFDs fails the test if it ends with more fds open than it started
// with. Register it first so that it runs after the test's own cleanups.
func checkFDs(t *testing.T) {
	t.Helper()
	before := fdCount(t)
	t.Cleanup(func() {
		deadline := time.Now().Add(waitTimeout)
		for {
			n := fdCount(t)
			if n <= before {
				return
			}
			if time.Now().After(deadline) {
				t.Errorf("fd leak: %d open before, %d after", before, n)
				return
			}
			time.Sleep(time.Millisecond)
		}
	})
}

// eventually polls cond until it holds or waitTimeout passes.
func eventually(t testing.TB, cond func() bool, msg string) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out: %s", msg)
		}
		time.Sleep(200 * time.Microsecond)
	}
}

// recv waits (bounded) for a value.
func recv[T any](t testing.TB, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(waitTimeout):
		t.Fatalf("timed out waiting on channel")
		panic("unreachable")
	}
}

// startGroup starts n real loops and stops them at cleanup.
func startGroup(t *testing.T, n int, cfg Config) *Group {
	t.Helper()
	g, err := NewGroup(n, cfg)
	require.NoError(t, err)
	g.Start()
	t.Cleanup(func() { stopGroup(t, g) })
	return g
}

func stopGroup(t testing.TB, g *Group) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	require.NoError(t, g.Stop(ctx))
}

// onLoop runs fn on l and waits for it.
func onLoop(t testing.TB, l *Loop, fn func()) {
	t.Helper()
	done := make(chan struct{})
	require.NoError(t, l.Post(func() { fn(); close(done) }))
	recv(t, done)
}
