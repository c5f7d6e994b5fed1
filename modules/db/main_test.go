package db_test

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/asyncsip/asyncsip/async"
	"github.com/asyncsip/asyncsip/internal/testenv"
	"github.com/asyncsip/asyncsip/modules/db"
	_ "github.com/asyncsip/asyncsip/modules/db/mysql"
	_ "github.com/asyncsip/asyncsip/modules/db/postgres"
	_ "github.com/asyncsip/asyncsip/modules/db/sqlite"
	"github.com/asyncsip/asyncsip/reactor"
)

// TestMain checks, after all tests, that no goroutine is left behind and
// that the process holds no more descriptors than before: tests run in
// parallel, so per-test descriptor counts are only taken by the tests that
// do not (see TestNoLeaks).
func TestMain(m *testing.M) {
	base := testenv.CountFDs()
	code := m.Run()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: %v\n", err)
			code = 1
		}
	}
	if code == 0 && base >= 0 {
		testenv.Poll(5*time.Second, func() bool { return testenv.CountFDs() <= base })
		if n := testenv.CountFDs(); n > base {
			fmt.Fprintf(os.Stderr, "file descriptors: %d open after the tests, %d before\n", n, base)
			code = 1
		}
	}
	os.Exit(code)
}

type outcome[T any] struct {
	v      T
	err    error
	inline bool // the report ran before Launch returned
}

// run launches op on l and waits for its report: what a route's resume
// would get.
func run[T any](t testing.TB, l *reactor.Loop, op async.Op[T], opts ...async.Option) outcome[T] {
	t.Helper()
	ch := make(chan outcome[T], 1)
	testenv.OnLoop(t, l, func() {
		launched := false
		async.Launch(l, op, func(v T, err error) { ch <- outcome[T]{v, err, !launched} }, opts...)
		launched = true
	})
	return testenv.Wait(t, 10*time.Second, ch, "op report")
}

// must runs op and fails the test on an error.
func must[T any](t testing.TB, l *reactor.Loop, op async.Op[T]) T {
	t.Helper()
	o := run(t, l, op)
	if o.err != nil {
		t.Fatalf("op failed: %v", o.err)
	}
	return o.v
}

// open opens a handle that is closed when the test ends.
func open(t testing.TB, driver, dsn string, opts ...db.Option) *db.Handle {
	t.Helper()
	h, err := db.Open(driver, dsn, opts...)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() {
		if err := h.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return h
}

// recorder is an Observer that keeps its events.
type recorder struct {
	mu       sync.Mutex
	done     []event
	rejected []string
}

type event struct {
	op  string
	err error
}

func (r *recorder) QueryDone(op string, _ time.Duration, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.done = append(r.done, event{op, err})
}

func (r *recorder) Rejected(op string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.rejected = append(r.rejected, op)
}

// last returns the last QueryDone event whose error matches target (nil:
// any), and whether there is one.
func (r *recorder) last(target error) (event, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := len(r.done) - 1; i >= 0; i-- {
		if target == nil || errors.Is(r.done[i].err, target) {
			return r.done[i], true
		}
	}
	return event{}, false
}

// fakeCtx is a Suspender standing in for tm.Context in unit tests: end()
// ends the context while suspended, as a transaction that terminates does.
type fakeCtx struct {
	loop   *reactor.Loop
	live   bool
	aborts []func()
}

func (c *fakeCtx) Loop() *reactor.Loop { return c.loop }

func (c *fakeCtx) Suspend() (async.Resumer, error) {
	c.live = true
	c.aborts = nil
	return c, nil
}

func (c *fakeCtx) Resume(fn func()) bool {
	if !c.live {
		return false
	}
	c.live = false
	fn()
	return true
}

func (c *fakeCtx) OnAbort(fn func()) { c.aborts = append(c.aborts, fn) }

func (c *fakeCtx) end() {
	if !c.live {
		return
	}
	c.live = false
	for _, fn := range c.aborts {
		fn()
	}
}
