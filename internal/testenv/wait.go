package testenv

import (
	"net"
	"strconv"
	"testing"
	"time"
)

// Poll calls cond until it reports true or within has passed, checking
// often at first and less often later (1 ms doubling to 50 ms). It reports
// whether cond became true. Use it for conditions reached asynchronously
// (a goroutine exiting, a socket bound) instead of a fixed sleep.
func Poll(within time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(within)
	step := time.Millisecond
	for !cond() {
		if !time.Now().Before(deadline) {
			return false
		}
		time.Sleep(min(step, time.Until(deadline)))
		step = min(2*step, 50*time.Millisecond)
	}
	return true
}

// Eventually fails the test when cond does not become true within the
// bound; what says what was awaited.
func Eventually(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	if !Poll(within, cond) {
		t.Fatalf("condition not met within %v: %s", within, what)
	}
}

// FDsBackTo waits (bounded) until no more than base file descriptors are
// open, and reports the count otherwise as a test error.
func FDsBackTo(t testing.TB, base int, within time.Duration) {
	t.Helper()
	if base < 0 {
		return
	}
	if !Poll(within, func() bool { return CountFDs() <= base }) {
		t.Errorf("file descriptors: %d open after the test, %d before", CountFDs(), base)
	}
}

// UDPPortBound reports whether something on this machine holds UDP port on
// 127.0.0.1 (so a test can wait for a peer process to be ready).
func UDPPortBound(port int) bool {
	c, err := net.ListenPacket("udp", "127.0.0.1:"+strconv.Itoa(port))
	if err != nil {
		return true
	}
	c.Close()
	return false
}
