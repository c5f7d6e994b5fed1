package testenv

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"testing"
)

func TestIsCI(t *testing.T) {
	for _, tc := range []struct {
		val  string
		want bool
	}{
		{"true", true},
		{"1", true},
		{"", false},
		{"false", false},
		{"0", false},
		{"yes", false},
	} {
		t.Setenv("CI", tc.val)
		if got := IsCI(); got != tc.want {
			t.Errorf("CI=%q: IsCI() = %v, want %v", tc.val, got, tc.want)
		}
	}
}

// recorder is a testing.TB that records Skipf/Fatalf instead of acting on
// them, so Need's two outcomes can be observed from the outside. Like the
// real methods, Skipf and Fatalf end the calling goroutine.
type recorder struct {
	testing.TB
	mu      sync.Mutex
	skipped string
	failed  string
}

func (r *recorder) Helper() {}

func (r *recorder) Skipf(format string, args ...any) {
	r.mu.Lock()
	r.skipped = fmt.Sprintf(format, args...)
	r.mu.Unlock()
	runtime.Goexit()
}

func (r *recorder) Fatalf(format string, args ...any) {
	r.mu.Lock()
	r.failed = fmt.Sprintf(format, args...)
	r.mu.Unlock()
	runtime.Goexit()
}

// call runs f on its own goroutine (Skipf/Fatalf call runtime.Goexit) and
// reports whether f returned normally.
func call(f func()) (returned bool) {
	done := make(chan bool)
	go func() {
		ok := false
		defer func() { done <- ok }()
		f()
		ok = true
	}()
	return <-done
}

func TestNeedSkipsOutsideCI(t *testing.T) {
	t.Setenv("CI", "")
	// With the real testing.T: a sub-test that calls Need must end skipped.
	var sub *testing.T
	t.Run("need", func(t *testing.T) {
		sub = t
		Need(t, "frobnicator", "install it")
		t.Error("Need returned instead of skipping")
	})
	if !sub.Skipped() {
		t.Error("sub-test calling Need was not skipped")
	}
}

func TestNeedOutcome(t *testing.T) {
	for _, tc := range []struct {
		ci       string
		wantSkip bool
	}{
		{"", true},
		{"true", false},
	} {
		t.Setenv("CI", tc.ci)
		r := &recorder{TB: t}
		if call(func() { Need(r, "frobnicator", "install it") }) {
			t.Errorf("CI=%q: Need returned", tc.ci)
		}
		if gotSkip := r.skipped != ""; gotSkip != tc.wantSkip {
			t.Errorf("CI=%q: skipped=%v (failed=%q), want skipped=%v", tc.ci, gotSkip, r.failed, tc.wantSkip)
		}
		if gotFail := r.failed != ""; gotFail == tc.wantSkip {
			t.Errorf("CI=%q: failed=%v, want %v", tc.ci, gotFail, !tc.wantSkip)
		}
	}
}

func TestPostgresDSN(t *testing.T) {
	t.Setenv("CI", "")
	t.Setenv(PostgresDSNEnv, "postgres://u@127.0.0.1:1/db")
	if got := PostgresDSN(t); got != "postgres://u@127.0.0.1:1/db" {
		t.Errorf("PostgresDSN = %q", got)
	}

	t.Setenv(PostgresDSNEnv, "")
	r := &recorder{TB: t}
	if call(func() { PostgresDSN(r) }) || r.skipped == "" {
		t.Errorf("PostgresDSN with no DSN: want a skip, got skipped=%q failed=%q", r.skipped, r.failed)
	}
}

func TestSIPpMissing(t *testing.T) {
	t.Setenv("CI", "")
	t.Setenv("PATH", t.TempDir()) // an empty directory: no sipp
	r := &recorder{TB: t}
	if call(func() { SIPp(r) }) || r.skipped == "" {
		t.Errorf("SIPp with empty PATH: want a skip, got skipped=%q failed=%q", r.skipped, r.failed)
	}
}

func TestFreeUDPPort(t *testing.T) {
	port := FreeUDPPort(t)
	if port <= 0 || port > 65535 {
		t.Fatalf("FreeUDPPort = %d", port)
	}
	c, err := net.ListenPacket("udp4", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		t.Fatalf("port %d from FreeUDPPort is not bindable: %v", port, err)
	}
	c.Close()
}

func TestFreeTCPPort(t *testing.T) {
	port := FreeTCPPort(t)
	if port <= 0 || port > 65535 {
		t.Fatalf("FreeTCPPort = %d", port)
	}
	l, err := net.Listen("tcp4", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		t.Fatalf("port %d from FreeTCPPort is not bindable: %v", port, err)
	}
	l.Close()
}

func TestCountFDs(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x")
	// Open and close a file once first: the first open may make the runtime
	// create its poller descriptors, which stay open and would skew the count.
	warm, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	warm.Close()

	before := CountFDs()
	if before < 0 {
		t.Skip("/proc/self/fd not readable")
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if during := CountFDs(); during <= before {
		t.Errorf("CountFDs with one more open file = %d, before = %d", during, before)
	}
	f.Close()
	if after := CountFDs(); after != before {
		t.Errorf("CountFDs after close = %d, before = %d", after, before)
	}
}

// StartLoop's loop runs tasks; OnLoop returns once its task ran, on the
// loop's goroutine.
func TestStartLoopOnLoop(t *testing.T) {
	l := StartLoop(t)
	ran := false
	OnLoop(t, l, func() { ran = l.Pending() >= 0 })
	if !ran {
		t.Fatal("OnLoop returned before its task ran")
	}
}
