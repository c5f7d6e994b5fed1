package testenv

import (
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

// Wait returns the next value from ch (or its zero value when ch is
// closed), failing the test when nothing arrives within the bound.
func Wait[T any](t testing.TB, within time.Duration, ch <-chan T, what string) T {
	t.Helper()
	timer := time.NewTimer(within)
	defer timer.Stop()
	select {
	case v := <-ch:
		return v
	case <-timer.C:
		t.Fatalf("timed out after %v waiting for %s", within, what)
		panic("unreachable")
	}
}

// CheckFDs records the open descriptor count now and, when the test ends,
// checks (bounded) that it came back to it. Call it first: cleanups run
// last-in first-out, so this check runs after the test's own cleanups.
func CheckFDs(t testing.TB) {
	t.Helper()
	base := CountFDs()
	t.Cleanup(func() { FDsBackTo(t, base, 5*time.Second) })
}
