package rest_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/asyncsip/asyncsip/async"
	"github.com/asyncsip/asyncsip/internal/testenv"
	"github.com/asyncsip/asyncsip/modules/rest"
	"github.com/asyncsip/asyncsip/reactor"
)

func TestMain(m *testing.M) {
	if spec := os.Getenv(delayServerEnv); spec != "" {
		os.Exit(serveDelay(spec)) // the child process of TestMeasureLookupRate
	}
	goleak.VerifyTestMain(m)
}

// newClient returns a client closed (and checked empty) when the test ends.
func newClient(t testing.TB, cfg rest.Config) *rest.Client {
	t.Helper()
	c, err := rest.NewClient(cfg)
	if err != nil {
		t.Fatalf("NewClient: %v", err)
	}
	t.Cleanup(func() { closeClient(t, c) })
	return c
}

func closeClient(t testing.TB, c *rest.Client) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.Close(ctx); err != nil {
		t.Errorf("client close: %v", err)
	}
	if s := c.Stats(); s.Pool.Workers != 0 {
		t.Errorf("client has %d workers after Close", s.Pool.Workers)
	}
	// The last results reach their loop just after the workers are done.
	deadline := time.Now().Add(5 * time.Second)
	for c.Stats().InFlight != 0 {
		if time.Now().After(deadline) {
			t.Errorf("client has %d requests in flight after Close", c.Stats().InFlight)
			return
		}
		time.Sleep(time.Millisecond)
	}
}

// outcome is what an op completed with, and whether it completed inline.
type outcome[T any] struct {
	v      T
	err    error
	inline bool
}

// launch starts op on l and returns a channel with its outcome.
func launch[T any](t testing.TB, l *reactor.Loop, op async.Op[T]) <-chan outcome[T] {
	t.Helper()
	ch := make(chan outcome[T], 1)
	if err := l.Post(func() {
		starting := true
		async.Launch(l, op, func(v T, err error) { ch <- outcome[T]{v, err, starting} }, async.Timeout(20*time.Second))
		starting = false
	}); err != nil {
		t.Fatalf("post: %v", err)
	}
	return ch
}

// run starts op on l and waits (bounded) for its outcome.
func run[T any](t testing.TB, l *reactor.Loop, op async.Op[T]) outcome[T] {
	t.Helper()
	return testenv.Wait(t, 15*time.Second, launch(t, l, op), "op outcome")
}

// blackhole returns the address of a loopback TCP listener whose accept
// queue is full, so that a new connect gets no answer (its SYN is dropped)
// until it times out. It skips the test if the kernel answers anyway.
func blackhole(t testing.TB) string {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("socket: %v", err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatalf("bind: %v", err)
	}
	// A backlog of 0 lets one connection wait in the accept queue; the
	// listener never accepts, so after it the queue is full and Linux
	// drops further SYNs.
	if err := syscall.Listen(fd, 0); err != nil {
		t.Fatalf("listen: %v", err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatalf("getsockname: %v", err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", sa.(*syscall.SockaddrInet4).Port)
	var mu sync.Mutex
	var fill []net.Conn
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range fill {
			c.Close()
		}
	})
	for range 8 {
		c, err := net.DialTimeout("tcp", addr, 400*time.Millisecond)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return addr
			}
			t.Fatalf("filling the accept queue: %v", err)
		}
		mu.Lock()
		fill = append(fill, c)
		mu.Unlock()
	}
	t.Skip("cannot make a loopback connect time out here: the kernel accepted every connection " +
		"despite a full accept queue")
	return ""
}
