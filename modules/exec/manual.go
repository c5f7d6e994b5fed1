package exec

import (
	"encoding/binary"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// A manual loop (reactor.NewManual: siptest's Harness runs routes on one)
// has no poller, so a command started there cannot be watched by the loop.
// One goroutine watches it instead: poll(2) on its pipes, its pidfd (or a
// short tick and waitid without one) and a wake-up eventfd. It reads the
// output, writes stdin, applies Timeout, Grace and Drain on the wall clock —
// the process runs in real time, whatever the loop's clock says — reaps the
// process, releases its slot and posts the result to the loop. The rules are
// those of the loop-watched path: the same process group, kill sequence,
// drain, output caps, errors and counters.

// tick bounds a poll when the exit cannot be watched on a pidfd: the
// goroutine then looks for it with waitid this often.
const tick = 10 * time.Millisecond

// goProc is the loop's side of a command a goroutine watches. done and the
// loopState entry are touched on the loop only; stop and wake are how the
// loop reaches the goroutine.
type goProc struct {
	ls    *loopState
	done  func(Result, error) // nil once cancelled or delivered
	path  string
	pid   int
	start time.Time

	stop atomic.Uint32 // the KillReason the loop asked for (cancelled, loop closed)
	mu   sync.Mutex
	wake int // eventfd the goroutine polls; -1 once it is over
}

// spawnWatched starts c for a manual loop and the goroutine that watches
// it, and returns the op's cancel. On error nothing is left running or
// open.
func (r *Runner) spawnWatched(ls *loopState, c *Cmd, done func(Result, error)) (func(), error) {
	wake, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("%w %s: eventfd: %w", ErrStart, c.Path, err)
	}
	ch, err := r.fork(c, r.pidfd)
	if err != nil {
		_ = unix.Close(wake)
		return nil, err
	}
	p := &goProc{ls: ls, done: done, path: ch.path, pid: ch.pid, start: ch.start, wake: wake}
	if ls.goLive == nil {
		ls.goLive = map[*goProc]struct{}{}
	}
	ls.goLive[p] = struct{}{}
	r.started()
	w := &goWatch{p: p, r: r, child: ch, wake: wake, res: Result{Pid: ch.pid}}
	if ch.timeout > 0 {
		w.deadline = ch.start.Add(ch.timeout)
	}
	go w.run()
	return p.cancel, nil
}

// cancel is the op's cancel: the output is discarded, the process killed
// (SIGTERM, SIGKILL after Grace) and reaped by the goroutine.
func (p *goProc) cancel() {
	if p.done == nil {
		return
	}
	p.done = nil
	p.ask(KillCancelled)
}

// shutdown runs when the loop closes: the waiter is told at once, the
// goroutine kills the group and reaps the process.
func (p *goProc) shutdown() {
	delete(p.ls.goLive, p)
	p.ask(KillLoopClosed) // a command cancelled before stays cancelled
	if p.done == nil {
		return
	}
	done := p.done
	p.done = nil
	done(Result{Pid: p.pid, Duration: time.Since(p.start)}, fmt.Errorf("%s: %w", p.path, ErrLoopClosed))
}

// ask passes reason to the goroutine, unless an earlier one was passed.
func (p *goProc) ask(reason KillReason) {
	p.stop.CompareAndSwap(0, uint32(reason))
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.wake >= 0 {
		_, _ = unix.Write(p.wake, binary.NativeEndian.AppendUint64(nil, 1))
	}
}

// deliver runs on the loop with the outcome the goroutine posted.
func (p *goProc) deliver(res Result, err error) {
	delete(p.ls.goLive, p)
	if p.done == nil {
		return
	}
	done := p.done
	p.done = nil
	done(res, err)
}

// goWatch is the goroutine's side: everything here belongs to it.
type goWatch struct {
	p *goProc
	r *Runner
	child
	wake int
	res  Result
	buf  []byte

	reason                    KillReason // why exec signalled the group; 0 if it did not
	exited                    bool       // the leader exited (a zombie until reaped)
	stopped                   bool       // the loop's request was handled
	deadline, killAt, drainAt time.Time  // Timeout, SIGKILL after Grace, end of the drain
}

func (w *goWatch) run() {
	w.buf = make([]byte, 32<<10)
	fds := make([]unix.PollFd, 0, 5)
	for !w.step(fds) {
	}
	w.finish()
}

// step acts on the loop's request and the clock, then waits for the next
// event and handles it. It reports whether the command is over.
func (w *goWatch) step(fds []unix.PollFd) (over bool) {
	if w.handleStop() {
		return true
	}
	now := time.Now()
	if !w.deadline.IsZero() && !now.Before(w.deadline) {
		w.deadline = time.Time{}
		w.kill(KillTimeout, now)
	}
	if !w.killAt.IsZero() && !now.Before(w.killAt) {
		w.killAt = time.Time{}
		signalGroup(w.r, w.pid, unix.SIGKILL)
	}
	if !w.exited && w.pidfd < 0 {
		w.exited = exitedNoReap(w.pid)
	}
	if w.exited {
		if w.out < 0 && w.errOut < 0 {
			return true
		}
		if w.drainAt.IsZero() {
			w.drainAt = now.Add(w.drain)
		} else if !now.Before(w.drainAt) {
			return true
		}
	}
	fds = fds[:0]
	for _, f := range [...]struct {
		fd  int
		ev  int16
		use bool
	}{
		{w.wake, unix.POLLIN, !w.stopped}, {w.out, unix.POLLIN, true}, {w.errOut, unix.POLLIN, true},
		{w.in, unix.POLLOUT, true}, {w.pidfd, unix.POLLIN, !w.exited},
	} {
		if f.use && f.fd >= 0 {
			fds = append(fds, unix.PollFd{Fd: int32(f.fd), Events: f.ev})
		}
	}
	if _, err := unix.Poll(fds, w.pollTimeout(now)); err != nil {
		if err == unix.EINTR {
			return false
		}
		// Cannot happen with valid descriptors; never spin on it.
		w.r.log.Warn("exec: poll failed, killing the command", "pid", w.pid, "err", err)
		return true
	}
	for _, f := range fds {
		if f.Revents == 0 {
			continue
		}
		switch int(f.Fd) {
		case w.out:
			w.read(&w.out, &w.res.Stdout)
		case w.errOut:
			w.read(&w.errOut, &w.res.Stderr)
		case w.in:
			var more bool
			if w.stdin, more = pump(w.in, w.stdin); !more {
				closeFDs(&w.in)
			}
		case w.pidfd:
			w.exited = true
		}
	}
	return false
}

// handleStop acts once on what the loop asked: a cancelled command loses
// its output and is killed; a closing loop kills it at once. It reports
// whether the command is over (only the reaping is left).
func (w *goWatch) handleStop() bool {
	ask := KillReason(w.p.stop.Load())
	if ask == 0 || w.stopped {
		return false
	}
	w.stopped = true
	closeFDs(&w.in, &w.out, &w.errOut) // nobody wants the output any more
	w.stdin = nil
	if ask == KillLoopClosed || w.exited {
		// Exited (it was draining: what holds its output dies with it),
		// or the loop is closing: SIGKILL in finish, then the reap.
		if w.reason == 0 {
			w.reason = ask
			w.r.killed(ask)
		}
		return true
	}
	w.kill(KillCancelled, time.Now())
	return false
}

// kill starts the kill sequence: SIGTERM to the group now, SIGKILL after
// Grace.
func (w *goWatch) kill(reason KillReason, now time.Time) {
	if w.reason != 0 {
		return
	}
	w.reason = reason
	w.r.killed(reason)
	signalGroup(w.r, w.pid, unix.SIGTERM)
	w.killAt = now.Add(w.grace)
}

// pollTimeout returns the poll timeout in milliseconds until the next
// deadline (-1: none), at most tick when the exit has to be looked for.
func (w *goWatch) pollTimeout(now time.Time) int {
	d := time.Duration(-1)
	for _, t := range [...]time.Time{w.deadline, w.killAt, w.drainAt} {
		if !t.IsZero() && (d < 0 || t.Sub(now) < d) {
			d = max(t.Sub(now), 0)
		}
	}
	if !w.exited && w.pidfd < 0 && (d < 0 || d > tick) {
		d = tick
	}
	if d < 0 {
		return -1
	}
	return int((d + time.Millisecond - 1) / time.Millisecond)
}

// read reads a few times from a readable stream (so that deadlines are
// looked at between bursts of a chatty command) and closes it at EOF.
func (w *goWatch) read(fd *int, dst *[]byte) {
	for range 4 {
		n, err := unix.Read(*fd, w.buf)
		switch {
		case n > 0:
			if keepCapped(dst, w.buf[:n], w.maxOut) {
				w.res.Truncated = true
			}
			continue
		case err == unix.EAGAIN:
			return
		case err == unix.EINTR:
			continue
		}
		closeFDs(fd) // EOF or a read error: this stream is over
		return
	}
}

// finish ends the command: leftovers killed while the leader's zombie
// still reserves the group id, descriptors closed, the leader reaped, the
// slot released, the counters updated and the result posted to the loop.
func (w *goWatch) finish() {
	switch {
	case w.out >= 0 || w.errOut >= 0:
		// The drain expired: processes the command started hold its
		// output. They are part of it; kill them.
		if w.reason == 0 {
			w.r.killed(KillOrphans)
		}
		signalGroup(w.r, w.pid, unix.SIGKILL)
	case w.reason != 0:
		signalGroup(w.r, w.pid, unix.SIGKILL) // stragglers that ignored SIGTERM
	}
	closeFDs(&w.in, &w.out, &w.errOut, &w.pidfd)
	reap(w.r, w.pid, w.start, &w.res)
	w.r.slots.Add(-1)
	err := resultError(w.path, w.reason, w.timeout, w.res)
	kind := KindOf(err)
	switch KillReason(w.p.stop.Load()) {
	case KillCancelled:
		kind = KindCancelled
	case KillLoopClosed:
		kind = KindClosed
	}
	w.r.finished(kind, w.res.Duration)
	p := w.p
	p.mu.Lock()
	closeFDs(&p.wake)
	p.mu.Unlock()
	res := w.res
	// A closed loop told its waiter already (shutdown).
	_ = p.ls.loop.PostUrgent(func() { p.deliver(res, err) })
}

// exitedNoReap reports whether pid has exited, leaving it a zombie (its pid
// and group id stay reserved until reap).
func exitedNoReap(pid int) bool {
	for {
		var info unix.Siginfo
		err := unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WNOHANG|unix.WNOWAIT, nil)
		if err == unix.EINTR {
			continue
		}
		// With WNOHANG and nothing to report, the kernel leaves si_signo 0.
		return err != nil || info.Signo == int32(unix.SIGCHLD)
	}
}
