package exec

import (
	"errors"
	"fmt"
	"time"

	"golang.org/x/sys/unix"

	"github.com/asyncsip/asyncsip/async"
	"github.com/asyncsip/asyncsip/reactor"
)

// proc is one running command. All of it lives on its loop.
//
// Its life: spawned → (output and exit events) → exited → (pipes at EOF, or
// the drain expired) → complete: leftovers killed, the leader reaped, the
// slot released, done called. The leader stays a zombie until complete, so
// its pid — which is also its process group id — cannot be reused while
// exec may still signal the group.
type proc struct {
	ls   *loopState
	set  *async.FDSet
	done func(Result, error) // nil once cancelled or delivered
	path string

	pid                int
	pidfd              bool // the exit is watched on a pidfd (else a goroutine)
	stdinFD            int  // -1 when closed
	stdoutFD, stderrFD int  // -1 at EOF
	stdin              []byte

	maxOut                int
	timeout, grace, drain time.Duration
	start                 time.Time
	res                   Result

	killTimer  *reactor.Timer // Timeout, then Grace
	drainTimer *reactor.Timer
	reason     KillReason // why exec signalled the group; 0 if it did not
	exited     bool       // the leader exited (a zombie until complete)
	over       bool       // reaped and released
	idx        int        // position in ls.live
}

// cancel is the op's cancel: nobody wants the result any more. The pipes
// are closed at once; the process is killed and reaped in the background,
// on the loop, and keeps its runner slot until then.
func (p *proc) cancel() {
	if p.over || p.done == nil {
		return
	}
	p.done = nil
	p.closeStream(&p.stdinFD)
	p.closeStream(&p.stdoutFD)
	p.closeStream(&p.stderrFD)
	if p.exited {
		// It was draining: what holds its output dies with it.
		p.reason = KillCancelled
		p.ls.r.killed(KillCancelled)
		p.complete()
		return
	}
	p.kill(KillCancelled)
}

func (p *proc) closeStream(fd *int) {
	if *fd >= 0 {
		p.set.Remove(*fd, true)
		*fd = -1
	}
}

// kill starts the kill sequence: SIGTERM to the group now, SIGKILL after
// Grace. The leader's exit then completes the command as usual.
func (p *proc) kill(reason KillReason) {
	if p.reason != 0 {
		return
	}
	p.reason = reason
	p.ls.r.killed(reason)
	p.signalGroup(unix.SIGTERM)
	if p.killTimer != nil {
		p.killTimer.Stop()
	}
	p.killTimer = p.ls.loop.AfterFunc(p.grace, p.hardKill)
}

func (p *proc) hardKill() {
	p.killTimer = nil
	p.signalGroup(unix.SIGKILL)
}

func (p *proc) expire() {
	p.killTimer = nil
	p.kill(KillTimeout)
}

// signalGroup signals the command's process group. It is only called
// before the leader is reaped, so the group id is still its own.
func (p *proc) signalGroup(sig unix.Signal) { signalGroup(p.ls.r, p.pid, sig) }

func signalGroup(r *Runner, pid int, sig unix.Signal) {
	if err := unix.Kill(-pid, sig); err != nil && !errors.Is(err, unix.ESRCH) {
		r.log.Warn("exec: cannot signal process group", "pid", pid, "signal", sig, "err", err)
	}
}

// onExit handles the pidfd becoming readable.
func (p *proc) onExit(fd int, _ reactor.Events) async.FDAction {
	p.exited = true
	p.check()
	return async.FDClose // a no-op if complete already closed the set
}

// exitPosted is the exit notification of the goroutine fallback.
func (p *proc) exitPosted() {
	if p.over {
		return
	}
	p.exited = true
	p.check()
}

// onOutput reads stdout or stderr: a few reads per readiness, so that one
// chatty command cannot hold the loop.
func (p *proc) onOutput(fd int, _ reactor.Events) async.FDAction {
	buf := p.ls.buf
	for range 4 {
		n, err := unix.Read(fd, buf)
		switch {
		case n > 0:
			p.keep(fd == p.stdoutFD, buf[:n])
			continue
		case err == unix.EAGAIN:
			return async.FDKeep
		case err == unix.EINTR:
			continue
		}
		// EOF (n == 0) or a read error: this stream is over.
		if fd == p.stdoutFD {
			p.stdoutFD = -1
		} else {
			p.stderrFD = -1
		}
		p.check()
		return async.FDClose
	}
	return async.FDKeep
}

// keep appends data to the stream's capture, up to the cap.
func (p *proc) keep(stdout bool, data []byte) {
	dst := &p.res.Stderr
	if stdout {
		dst = &p.res.Stdout
	}
	if keepCapped(dst, data, p.maxOut) {
		p.res.Truncated = true
	}
}

// keepCapped appends data to *dst up to limit bytes in all, and reports
// whether some of it had to be dropped.
func keepCapped(dst *[]byte, data []byte, limit int) (truncated bool) {
	if room := limit - len(*dst); len(data) > room {
		data = data[:max(room, 0)]
		truncated = true
	}
	*dst = append(*dst, data...)
	return truncated
}

// onStdin writes what is left of stdin. A command that exits or closes its
// stdin early makes the write fail (EPIPE): the rest is dropped.
func (p *proc) onStdin(fd int, _ reactor.Events) async.FDAction {
	var more bool
	if p.stdin, more = pump(fd, p.stdin); more {
		return async.FDKeep
	}
	p.stdinFD = -1
	return async.FDClose
}

// pump writes data to the non-blocking fd until it is all written or the
// pipe is full. It returns what is left and whether to write again when
// the fd is writable; false means done: all written, or the write failed
// (EPIPE: the reader is gone), and the rest is dropped.
func pump(fd int, data []byte) (rest []byte, more bool) {
	for len(data) > 0 {
		n, err := unix.Write(fd, data)
		if n > 0 {
			data = data[n:]
			continue
		}
		if err == unix.EAGAIN {
			return data, true
		}
		if err != unix.EINTR {
			break
		}
	}
	return nil, false
}

// check completes the command once it has exited and its output is at EOF,
// or arms the drain when something else still holds the pipes.
func (p *proc) check() {
	if !p.exited || p.over {
		return
	}
	if p.stdoutFD < 0 && p.stderrFD < 0 {
		p.complete()
		return
	}
	if p.drainTimer == nil {
		p.drainTimer = p.ls.loop.AfterFunc(p.drain, p.complete)
	}
}

// complete ends an exited command: leftovers are killed while the leader's
// zombie still reserves the group id, descriptors closed, the leader
// reaped, the slot released and the result delivered.
func (p *proc) complete() {
	if p.over {
		return
	}
	p.over = true
	p.stopTimers()
	if p.stdoutFD >= 0 || p.stderrFD >= 0 {
		// The drain expired: processes the command started hold its
		// output. They are part of it; kill them.
		if p.reason == 0 && p.done != nil {
			p.ls.r.killed(KillOrphans)
		}
		p.signalGroup(unix.SIGKILL)
	} else if p.reason != 0 {
		p.signalGroup(unix.SIGKILL) // stragglers that ignored SIGTERM
	}
	p.set.Close()
	p.reap()
	p.release()
	err := p.resultError()
	if p.done == nil {
		p.ls.r.finished(KindCancelled, p.res.Duration)
		return
	}
	done := p.done
	p.done = nil
	p.ls.r.finished(KindOf(err), p.res.Duration)
	done(p.res, err)
}

// shutdown kills a command whose loop is closing: SIGKILL to the group,
// descriptors closed, the leader reaped (by the fallback goroutine when it
// is still waiting), the waiter told with ErrLoopClosed.
func (p *proc) shutdown() {
	if p.over {
		return
	}
	p.over = true
	p.stopTimers()
	if p.reason == 0 {
		p.reason = KillLoopClosed
		p.ls.r.killed(KillLoopClosed)
	}
	p.signalGroup(unix.SIGKILL)
	p.set.Close()
	if p.pidfd || p.exited {
		// Killed, so the wait is short. A fallback goroutine still
		// waiting reaps the process itself when it cannot post.
		p.reap()
	} else {
		p.res.Duration = time.Since(p.start)
	}
	p.release()
	if p.done == nil {
		p.ls.r.finished(KindCancelled, p.res.Duration)
		return
	}
	done := p.done
	p.done = nil
	err := fmt.Errorf("%s: %w", p.path, ErrLoopClosed)
	p.ls.r.finished(KindClosed, p.res.Duration)
	done(p.res, err)
}

func (p *proc) stopTimers() {
	if p.killTimer != nil {
		p.killTimer.Stop()
		p.killTimer = nil
	}
	if p.drainTimer != nil {
		p.drainTimer.Stop()
		p.drainTimer = nil
	}
}

// reap collects the leader's status without blocking: its exit was
// reported (pidfd readable, or waitid WNOWAIT in the fallback), so it is a
// zombie. Only a process just killed (the loop is closing) may need a
// moment: then the wait blocks until SIGKILL has taken effect.
func (p *proc) reap() { reap(p.ls.r, p.pid, p.start, &p.res) }

// reap waits for pid, which has exited or was just killed, and records
// its status, CPU time and the duration since start in res.
func reap(r *Runner, pid int, start time.Time, res *Result) {
	var ws unix.WaitStatus
	var ru unix.Rusage
	flags := unix.WNOHANG
	for {
		got, err := unix.Wait4(pid, &ws, flags, &ru)
		if err == unix.EINTR {
			continue
		}
		if err == nil && got == 0 {
			flags = 0 // still dying
			continue
		}
		if err != nil {
			r.log.Warn("exec: wait4 failed", "pid", pid, "err", err)
			ws = 0
		}
		break
	}
	res.Duration = time.Since(start)
	res.UserTime = time.Duration(ru.Utime.Nano())
	res.SystemTime = time.Duration(ru.Stime.Nano())
	switch {
	case ws.Signaled():
		res.ExitCode, res.Signal = -1, ws.Signal()
	default:
		res.ExitCode = ws.ExitStatus()
	}
}

func (p *proc) release() {
	p.ls.remove(p)
	p.ls.r.slots.Add(-1)
}

// resultError turns the outcome into the error the waiter receives.
func (p *proc) resultError() error { return resultError(p.path, p.reason, p.timeout, p.res) }

func resultError(path string, reason KillReason, timeout time.Duration, res Result) error {
	switch {
	case reason == KillTimeout:
		return fmt.Errorf("%s: killed after %v: %w", path, timeout, ErrTimeout)
	case res.Signal != 0:
		return fmt.Errorf("%s: %w: %v", path, ErrSignaled, res.Signal)
	case res.ExitCode != 0:
		return fmt.Errorf("%s: %w %d", path, ErrExitStatus, res.ExitCode)
	}
	return nil
}
