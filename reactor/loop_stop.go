package reactor

import (
	"bytes"
	"context"
	"runtime"

	"golang.org/x/sys/unix"
)

// OnStop registers fn to run on the loop when a graceful stop begins (for
// example, a socket that stops reading). Call it on the loop or before Run.
func (l *Loop) OnStop(fn func()) { l.addStopHook(fn) }

// OnClose registers fn to run on the loop when it exits, to release a
// resource the loop owns. Closers run in reverse order of registration.
// Call it on the loop or before Run.
func (l *Loop) OnClose(fn func()) { l.addCloseHook(fn) }

func (l *Loop) addStopHook(fn func()) *hook {
	h := &hook{fn: fn}
	l.onStop = append(l.onStop, h)
	return h
}

func (l *Loop) addCloseHook(fn func()) *hook {
	h := &hook{fn: fn}
	l.onClose = append(l.onClose, h)
	return h
}

// removeHook unregisters a hook returned by addStopHook or addCloseHook, so
// that a resource released early does not leave its closer behind.
func (l *Loop) removeHook(h *hook) {
	if h == nil {
		return
	}
	h.fn = nil
	l.onStop = dropHook(l.onStop, h)
	l.onClose = dropHook(l.onClose, h)
}

func dropHook(hs []*hook, h *hook) []*hook {
	for i, x := range hs {
		if x == h {
			copy(hs[i:], hs[i+1:])
			hs[len(hs)-1] = nil
			return hs[:len(hs)-1]
		}
	}
	return hs
}

// runHooks runs a snapshot of hs (hooks may remove themselves), last first
// when reverse is set.
func (l *Loop) runHooks(hs []*hook, reverse bool) {
	snap := append([]*hook(nil), hs...)
	for i := range snap {
		h := snap[i]
		if reverse {
			h = snap[len(snap)-1-i]
		}
		if fn := h.fn; fn != nil {
			l.call(fn)
		}
	}
}

// onLoopThread reports whether the caller runs on this loop's goroutine: by
// its OS thread for a locked loop, by its goroutine id for an unlocked one
// (NoLockThread). The id is read from runtime.Stack, which is slow, but this
// runs only when sockets are set up or closed.
func (l *Loop) onLoopThread() bool {
	if t := l.tid.Load(); t != 0 {
		return int32(unix.Gettid()) == t
	}
	g := l.goid.Load()
	return g != 0 && goid() == g
}

// goid returns the id of the calling goroutine ("goroutine N [...").
func goid() int64 {
	var buf [64]byte
	b := buf[:runtime.Stack(buf[:], false)]
	b = bytes.TrimPrefix(b, []byte("goroutine "))
	var id int64
	for _, c := range b {
		if c < '0' || c > '9' {
			break
		}
		id = id*10 + int64(c-'0')
	}
	return id
}

// Stop stops the loop gracefully: stop hooks run (inputs stop reading), then
// the loop keeps running queued tasks and timers until none is left or ctx
// ends, whichever is first; then it closes what it owns and exits. Stop
// returns ctx.Err() when the deadline cut the drain short; the loop has
// exited either way. Tasks posted before the loop closed its queue still
// run; later posts get ErrClosed. Stop waits for the loop, so it must not be
// called from the loop itself.
func (l *Loop) Stop(ctx context.Context) error {
	if l.manual {
		l.stopOnce.Do(func() {
			l.beginStop()
			l.RunPending()
			l.finish()
		})
		return nil
	}
	l.stopReq.Store(true)
	l.wakeForce()
	if !l.started.Load() {
		// Never started: run the shutdown inline.
		if l.started.CompareAndSwap(false, true) {
			l.stopOnce.Do(func() {
				l.beginStop()
				l.finish()
			})
			return nil
		}
	}
	select {
	case <-l.done:
		return nil
	case <-ctx.Done():
		l.forceStop.Store(true)
		l.wakeForce()
		<-l.done
		return ctx.Err()
	}
}

func (l *Loop) wakeForce() {
	if l.manual {
		return
	}
	l.writeEventfd()
}

func (l *Loop) beginStop() {
	if l.stopping {
		return
	}
	l.stopping = true
	l.runHooks(l.onStop, false)
}

// finish closes everything the loop owns. It runs exactly once.
func (l *Loop) finish() {
	l.q.close()
	// Tasks posted before the close still run: nothing a caller posted is lost.
	for {
		batch, _, more := l.q.take(l.batch[:0], l.maxTasks)
		l.pending.Add(-int64(len(batch)))
		l.runBatch(batch)
		clear(batch)
		l.batch = batch[:0]
		if !more {
			break
		}
	}
	l.runHooks(l.onClose, true)
	l.onStop, l.onClose = nil, nil
	for fd := range l.watchers {
		delete(l.watchers, fd)
	}
	l.stats.watchers.Store(0)
	for _, t := range l.timers {
		t.idx = -1
	}
	l.timers = nil
	if l.park != nil {
		l.park.close()
		l.park = nil
	}
	if l.epfd >= 0 {
		unix.Close(l.epfd)
		l.epfd = -1
		l.efdMu.Lock()
		unix.Close(l.efd)
		l.efdClosed = true
		l.efdMu.Unlock()
	}
	l.tid.Store(0)
	close(l.done)
}
