package sharedtest

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/asyncsip/asyncsip/internal/testenv"
	"github.com/asyncsip/asyncsip/modules/shared"
)

// NewCounter returns the Counter of one instance of a store shared by every
// call of one test: instance names one instance, whose part expires ttl
// after its last Sync (ttl <= 0: the store's default, long enough for the
// test).
type NewCounter func(t *testing.T, instance string, ttl time.Duration) shared.Counter

// Counter runs the conformance tests of a shared.Counter.
func Counter(t *testing.T, mk NewCounter) {
	t.Run("LimitAcrossInstances", func(t *testing.T) {
		l := Loop(t)
		a, b := mk(t, "a", 0), mk(t, "b", 0)
		key := "trunk/gw1"
		if got := Must(t, l, a.Acquire(key, 2)); !got.OK || got.Total != 1 {
			t.Fatalf("first acquire: %+v", got)
		}
		if got := Must(t, l, b.Acquire(key, 2)); !got.OK || got.Total != 2 {
			t.Fatalf("second acquire (other instance): %+v", got)
		}
		if got := Must(t, l, a.Acquire(key, 2)); got.OK || got.Total != 2 {
			t.Fatalf("third acquire over the limit: %+v", got)
		}
		if n := Must(t, l, b.Release(key)); n != 1 {
			t.Fatalf("release: total %d, want 1", n)
		}
		if got := Must(t, l, a.Acquire(key, 2)); !got.OK || got.Total != 2 {
			t.Fatalf("acquire after release: %+v", got)
		}
		if n := Must(t, l, b.Total(key)); n != 2 {
			t.Fatalf("total seen by b: %d", n)
		}
		if got := Must(t, l, a.Acquire(key, 0)); !got.OK || got.Total != 3 {
			t.Fatalf("acquire without limit: %+v", got)
		}
	})
	t.Run("ReleaseNeverBelowZero", func(t *testing.T) {
		l := Loop(t)
		a := mk(t, "a", 0)
		if n := Must(t, l, a.Release("k")); n != 0 {
			t.Fatalf("release of nothing: %d", n)
		}
		Must(t, l, a.Acquire("k", 0))
		if n := Must(t, l, a.Total("k")); n != 1 {
			t.Fatalf("total after a release below zero and an acquire: %d", n)
		}
	})
	t.Run("SyncCorrectsLostOps", func(t *testing.T) {
		l := Loop(t)
		a, b := mk(t, "a", 0), mk(t, "b", 0)
		Must(t, l, a.Acquire("x", 0))
		Must(t, l, a.Acquire("x", 0))
		Must(t, l, a.Acquire("y", 0))
		Must(t, l, b.Acquire("x", 0))
		// a's truth: one call on x, none on y (a release was lost).
		Must(t, l, a.Sync(map[string]int{"x": 1, "z": 2}))
		for key, want := range map[string]int{"x": 2, "y": 0, "z": 2} {
			if n := Must(t, l, b.Total(key)); n != want {
				t.Errorf("total %s after a's sync: %d, want %d", key, n, want)
			}
		}
	})
	t.Run("DeadInstanceExpires", func(t *testing.T) {
		l := Loop(t)
		const ttl = 300 * time.Millisecond
		dying, alive := mk(t, "dying", ttl), mk(t, "alive", 0)
		Must(t, l, dying.Sync(nil))
		Must(t, l, dying.Acquire("trunk", 3))
		Must(t, l, dying.Acquire("trunk", 3))
		Must(t, l, alive.Acquire("trunk", 3))
		if got := Must(t, l, alive.Acquire("trunk", 3)); got.OK {
			t.Fatalf("limit of 3 with 3 counted: %+v", got)
		}
		// dying stops its heartbeat: its two calls stop counting.
		testenv.Eventually(t, 10*ttl+5*time.Second, "the dead instance's count expires", func() bool {
			n, err := Run(t, l, alive.Total("trunk"))
			return err == nil && n == 1
		})
		if got := Must(t, l, alive.Acquire("trunk", 3)); !got.OK || got.Total != 2 {
			t.Fatalf("acquire after the expiry: %+v", got)
		}
	})
	t.Run("ConcurrentAcquiresNeverOvershoot", func(t *testing.T) {
		const instances, tries, limit = 3, 40, 25
		var wg sync.WaitGroup
		var mu sync.Mutex
		ok := 0
		for i := range instances {
			c := mk(t, fmt.Sprintf("i%d", i), 0)
			l := Loop(t)
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range tries {
					got, err := Run(t, l, c.Acquire("busy", limit))
					if err == nil && got.OK {
						mu.Lock()
						ok++
						mu.Unlock()
					}
				}
			}()
		}
		wg.Wait()
		if ok != limit {
			t.Fatalf("%d acquires succeeded with a limit of %d", ok, limit)
		}
	})
	t.Run("EmptyKey", func(t *testing.T) {
		l := Loop(t)
		if _, err := Run(t, l, mk(t, "a", 0).Acquire("", 1)); err == nil {
			t.Fatal("an empty key was accepted")
		}
	})
}
