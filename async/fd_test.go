package async

import (
	"errors"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/asyncsip/asyncsip/internal/testenv"
	"github.com/asyncsip/asyncsip/reactor"
)

// Checks that run on the loop use assert, not require: FailNow must not
// end the loop goroutine.
//
// The fd tests do not run in parallel: they compare the process's fd count
// with a baseline, which other tests opening loops would disturb.

func pipe(t *testing.T) (r, w int) {
	t.Helper()
	var p [2]int
	require.NoError(t, syscall.Pipe2(p[:], syscall.O_NONBLOCK|syscall.O_CLOEXEC))
	return p[0], p[1]
}

// readAll is an fd-based op: it reads fd until EOF and completes with what
// it read. It is the shape of exec's stdout reader.
func readAll(fd int) Op[string] {
	return FDOp(func(s *FDSet, done func(string, error)) error {
		var out []byte
		s.OnEmpty(func() { done(string(out), nil) })
		return s.Watch(fd, reactor.Readable, func(fd int, ev reactor.Events) FDAction {
			var buf [64]byte
			n, err := syscall.Read(fd, buf[:])
			switch {
			case n > 0:
				out = append(out, buf[:n]...)
				return FDKeep // more may come: level-triggered, we are called again
			case err == syscall.EAGAIN:
				return FDKeep
			case err != nil:
				done("", err)
				return FDClose
			default: // EOF
				return FDClose
			}
		})
	})
}

// checkFDBaseline records the fd count and loop watchers, and checks at the
// end of the test (after the loop stopped) that the count is back.
func checkFDBaseline(t *testing.T) {
	base := testenv.CountFDs()
	t.Cleanup(func() {
		testenv.Eventually(t, 5*time.Second, "fd count back to baseline", func() bool { return testenv.CountFDs() == base })
	})
}

func TestFDOpReadsPipeOnRealLoop(t *testing.T) {
	checkFDBaseline(t)
	l := testenv.StartLoop(t)
	r, w := pipe(t)
	got := make(chan recorder[string], 1)
	testenv.OnLoop(t, l, func() {
		c := newFakeCtx(t, l)
		var rec recorder[string]
		Await(c, readAll(r), func(v string, err error) {
			rec.fn(v, err)
			assert.False(t, l.Watching(r), "the fd is unwatched before the resume")
			got <- rec
		})
		assert.True(t, l.Watching(r))
		assert.Equal(t, 1, c.suspended)
	})
	_, err := syscall.Write(w, []byte("hello "))
	require.NoError(t, err)
	_, err = syscall.Write(w, []byte("world"))
	require.NoError(t, err)
	require.NoError(t, syscall.Close(w))
	rec := testenv.Wait(t, 5*time.Second, got, "resume")
	require.Equal(t, 1, rec.calls)
	require.NoError(t, rec.err)
	require.Equal(t, "hello world", rec.v)
	testenv.OnLoop(t, l, func() { assert.Zero(t, l.Stats().Watchers) })
}

func TestFDOpCancelUnwatchesAndCloses(t *testing.T) {
	checkFDBaseline(t)
	l := testenv.StartLoop(t)
	r, w := pipe(t)
	defer syscall.Close(w)
	got := make(chan error, 1)
	testenv.OnLoop(t, l, func() {
		Await(newFakeCtx(t, l), readAll(r), func(_ string, err error) {
			assert.False(t, l.Watching(r))
			assert.Zero(t, l.Stats().Watchers)
			got <- err
		}, Timeout(10*time.Millisecond))
	})
	require.ErrorIs(t, testenv.Wait(t, 5*time.Second, got, "timeout"), ErrTimeout)
	// The read end was closed by the op: the writer now sees EPIPE.
	_, err := syscall.Write(w, []byte("x"))
	require.ErrorIs(t, err, syscall.EPIPE)
}

func TestFDOpAbortUnwatches(t *testing.T) {
	checkFDBaseline(t)
	l := testenv.StartLoop(t)
	r, w := pipe(t)
	defer syscall.Close(w)
	testenv.OnLoop(t, l, func() {
		c := newFakeCtx(t, l)
		Await(c, readAll(r), func(string, error) { t.Error("resumed after abort") })
		c.end()
		assert.False(t, l.Watching(r))
		assert.Zero(t, l.Timers())
	})
}

func TestFDSetSeveralFDsAndSwitching(t *testing.T) {
	checkFDBaseline(t)
	l := testenv.StartLoop(t)
	outR, outW := pipe(t)
	errR, errW := pipe(t)
	nextR, nextW := pipe(t)
	// The op waits for EOF on two fds (stdout and stderr of a child, say);
	// on the first byte of stderr it also switches to a third fd.
	op := FDOp(func(s *FDSet, done func([]string, error)) error {
		var seen []string
		s.OnEmpty(func() { done(seen, nil) })
		eof := func(name string) FDHandler {
			return func(fd int, _ reactor.Events) FDAction {
				var b [16]byte
				n, _ := syscall.Read(fd, b[:])
				if n > 0 {
					seen = append(seen, name+":"+string(b[:n]))
					return FDKeep
				}
				seen = append(seen, name+":eof")
				return FDClose
			}
		}
		if err := s.Watch(outR, reactor.Readable, eof("out")); err != nil {
			return err
		}
		return s.Watch(errR, reactor.Readable, func(fd int, ev reactor.Events) FDAction {
			seen = append(seen, "err:switch")
			if err := s.Watch(nextR, reactor.Readable, eof("next")); err != nil {
				done(nil, err)
			}
			return FDClose
		})
	})
	got := make(chan []string, 1)
	testenv.OnLoop(t, l, func() {
		Launch(l, op, func(v []string, err error) {
			assert.NoError(t, err)
			got <- v
		})
	})
	write := func(fd int, s string) { _, err := syscall.Write(fd, []byte(s)); require.NoError(t, err) }
	write(errW, "!")
	require.NoError(t, syscall.Close(errW))
	require.NoError(t, syscall.Close(outW))
	write(nextW, "n")
	require.NoError(t, syscall.Close(nextW))
	v := testenv.Wait(t, 5*time.Second, got, "report")
	require.Contains(t, v, "err:switch")
	require.Contains(t, v, "out:eof")
	require.Contains(t, v, "next:eof")
	testenv.OnLoop(t, l, func() { assert.Zero(t, l.Stats().Watchers) })
}

func TestFDSetRemoveKeepsFDOpen(t *testing.T) {
	checkFDBaseline(t)
	l := testenv.StartLoop(t)
	r, w := pipe(t)
	defer syscall.Close(w)
	testenv.OnLoop(t, l, func() {
		s := NewFDSet(l)
		assert.NoError(t, s.Watch(r, reactor.Readable, func(int, reactor.Events) FDAction { return FDKeep }))
		assert.Error(t, s.Watch(r, reactor.Readable, func(int, reactor.Events) FDAction { return FDKeep }),
			"an fd is watched once")
		assert.NoError(t, s.Modify(r, reactor.Readable|reactor.Hangup))
		assert.ErrorIs(t, s.Modify(w, reactor.Writable), reactor.ErrNotWatched)
		emptied := 0
		s.OnEmpty(func() { emptied++ })
		assert.True(t, s.Remove(r, false))
		assert.False(t, s.Remove(r, false))
		assert.Equal(t, 1, emptied)
		assert.False(t, l.Watching(r))
		_, err := syscall.Write(w, []byte("still open"))
		assert.NoError(t, err, "FDRemove leaves the fd open")
		assert.NoError(t, syscall.Close(r))
		s.Close()
		assert.ErrorIs(t, s.Watch(w, reactor.Writable, func(int, reactor.Events) FDAction { return FDKeep }), ErrFDSetClosed)
		assert.ErrorIs(t, NewFDSet(l).Watch(w, reactor.Writable, nil), ErrNilOp)
	})
}

func TestFDOpStartErrors(t *testing.T) {
	checkFDBaseline(t)
	l := testenv.StartLoop(t)
	r1, w1 := pipe(t)
	defer syscall.Close(w1)
	errSetup := errors.New("setup failed")
	testenv.OnLoop(t, l, func() {
		// start registered one fd, then failed: the op completes at once
		// with the error and the registered fd is unwatched and closed.
		op := FDOp(func(s *FDSet, done func(int, error)) error {
			if err := s.Watch(r1, reactor.Readable, func(int, reactor.Events) FDAction { return FDKeep }); err != nil {
				return err
			}
			return errSetup
		})
		c := newFakeCtx(t, l)
		var rec recorder[int]
		Await(c, op, rec.fn)
		assert.Equal(t, 1, rec.calls)
		assert.ErrorIs(t, rec.err, errSetup)
		assert.Zero(t, c.suspended)
		assert.False(t, l.Watching(r1))
	})
	_, err := syscall.Write(w1, []byte("x"))
	require.ErrorIs(t, err, syscall.EPIPE, "the registered fd was closed")

	testenv.OnLoop(t, l, func() {
		var rec recorder[int]
		Launch(l, FDOp[int](nil), rec.fn)
		assert.ErrorIs(t, rec.err, ErrNilOp)
	})
}

func TestFDOpOnManualLoop(t *testing.T) {
	checkFDBaseline(t)
	l, _ := newManual()
	r, w := pipe(t)
	defer syscall.Close(r)
	defer syscall.Close(w)
	var rec recorder[string]
	Launch(l, readAll(r), rec.fn)
	require.Equal(t, 1, rec.calls, "a manual loop cannot watch fds: synchronous error")
	require.ErrorIs(t, rec.err, reactor.ErrManual)
}
