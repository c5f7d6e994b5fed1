package exec

import (
	"fmt"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/asyncsip/asyncsip/async"
	"github.com/asyncsip/asyncsip/reactor"
)

// probePidfd reports whether the kernel has pollable pidfds (Linux 5.3+).
func probePidfd() error {
	fd, err := unix.PidfdOpen(os.Getpid(), 0)
	if err != nil {
		return fmt.Errorf("pidfd_open: %w", err)
	}
	_ = unix.Close(fd)
	return nil
}

// pipe returns a pipe as (ours, theirs): ours is non-blocking, theirs stays
// blocking (children expect that of their stdio). Both ends are
// close-on-exec, so no other child ever inherits them; the child gets its
// end through dup2, which clears the flag.
func pipe(oursReads bool) (ours, theirs int, err error) {
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
		return -1, -1, fmt.Errorf("pipe2: %w", err)
	}
	ours, theirs = p[1], p[0]
	if oursReads {
		ours, theirs = p[0], p[1]
	}
	if _, err := unix.FcntlInt(uintptr(ours), unix.F_SETFL, unix.O_NONBLOCK); err != nil {
		_ = unix.Close(p[0])
		_ = unix.Close(p[1])
		return -1, -1, fmt.Errorf("fcntl: %w", err)
	}
	return ours, theirs, nil
}

// stdio is the descriptors of one spawn: the parent's ends and the child's.
type stdio struct {
	in, out, errOut    int // ours: stdin writer, stdout and stderr readers
	cin, cout, cerrOut int // theirs
}

func (s *stdio) open(withStdin bool) error {
	*s = stdio{-1, -1, -1, -1, -1, -1}
	var err error
	if withStdin {
		s.in, s.cin, err = pipe(false)
	} else {
		s.cin, err = unix.Open("/dev/null", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			err = fmt.Errorf("open /dev/null: %w", err)
		}
	}
	if err == nil {
		s.out, s.cout, err = pipe(true)
	}
	if err == nil {
		s.errOut, s.cerrOut, err = pipe(true)
	}
	if err != nil {
		s.closeChild()
		s.closeOurs()
	}
	return err
}

func (s *stdio) closeChild() { closeFDs(&s.cin, &s.cout, &s.cerrOut) }
func (s *stdio) closeOurs()  { closeFDs(&s.in, &s.out, &s.errOut) }

func closeFDs(fds ...*int) {
	for _, fd := range fds {
		if *fd >= 0 {
			_ = unix.Close(*fd)
			*fd = -1
		}
	}
}

// child is a command just forked: its pid, its pidfd (-1 without one),
// our ends of its stdio and the settings it runs with. Nothing watches it
// yet.
type child struct {
	path                  string
	pid, pidfd            int
	in, out, errOut       int    // ours: stdin writer (-1 when closed), stdout and stderr readers
	stdin                 []byte // what is left to write to stdin
	maxOut                int
	timeout, grace, drain time.Duration
	start                 time.Time
}

// fork forks and execs c with its stdio on pipes (our ends non-blocking),
// in a new process group, with a pidfd when wantPidfd. On error nothing is
// left running or open.
func (r *Runner) fork(c *Cmd, wantPidfd bool) (child, error) {
	var s stdio
	if err := s.open(len(c.Stdin) > 0); err != nil {
		return child{}, fmt.Errorf("%w %s: %w", ErrStart, c.Path, err)
	}
	ch := child{
		path: c.Path, pidfd: -1, in: s.in, out: s.out, errOut: s.errOut, stdin: c.Stdin,
		maxOut: pick(c.MaxOutput, r.cfg.MaxOutput), timeout: c.Timeout,
		grace: pick(c.Grace, r.cfg.Grace), drain: pick(c.Drain, r.cfg.Drain),
	}
	if ch.in >= 0 {
		if ch.stdin = writeNow(ch.in, ch.stdin); len(ch.stdin) == 0 {
			closeFDs(&ch.in) // it fit in the pipe: the child sees EOF after it
		}
	}
	argv := c.Args
	if len(argv) == 0 {
		argv = []string{c.Path}
	}
	env := c.Env
	if env == nil {
		env = os.Environ()
	}
	sys := &syscall.SysProcAttr{Setpgid: true}
	if wantPidfd {
		sys.PidFD = &ch.pidfd
	}
	ch.start = time.Now()
	pid, err := syscall.ForkExec(c.Path, argv, &syscall.ProcAttr{
		Dir: c.Dir, Env: env, Sys: sys,
		Files: []uintptr{uintptr(s.cin), uintptr(s.cout), uintptr(s.cerrOut)},
	})
	s.closeChild()
	if err != nil {
		closeFDs(&ch.in, &ch.out, &ch.errOut)
		if c.Dir != "" {
			return child{}, fmt.Errorf("%w %s (dir %s): %w", ErrStart, c.Path, c.Dir, err)
		}
		return child{}, fmt.Errorf("%w %s: %w", ErrStart, c.Path, err)
	}
	ch.pid = pid
	if wantPidfd && ch.pidfd < 0 {
		// CLONE_PIDFD gave nothing although the probe passed: open one.
		// The child cannot have been reaped, so the pid is still its own.
		if fd, err := unix.PidfdOpen(pid, 0); err == nil {
			ch.pidfd = fd
		}
	}
	return ch, nil
}

// spawn starts c and registers it on the loop. On error nothing is left
// running or open.
func (r *Runner) spawn(ls *loopState, c *Cmd, done func(Result, error)) (*proc, error) {
	ch, err := r.fork(c, r.pidfd)
	if err != nil {
		return nil, err
	}
	p := &proc{
		ls: ls, done: done, path: ch.path, idx: -1,
		stdinFD: ch.in, stdoutFD: ch.out, stderrFD: ch.errOut, stdin: ch.stdin,
		maxOut: ch.maxOut, timeout: ch.timeout, grace: ch.grace, drain: ch.drain, start: ch.start,
	}
	p.pid, p.res.Pid = ch.pid, ch.pid
	if err := p.register(ch.pidfd); err != nil {
		return nil, fmt.Errorf("%w %s: %w", ErrStart, c.Path, err)
	}
	if ch.pidfd < 0 {
		p.waitInGoroutine()
	}
	if c.Timeout > 0 {
		p.killTimer = ls.loop.AfterFunc(c.Timeout, p.expire)
	}
	ls.add(p)
	r.started()
	return p, nil
}

func pick[T int | time.Duration](v, def T) T {
	if v > 0 {
		return v
	}
	return def
}

// writeNow writes as much of data to the non-blocking fd as it takes
// without blocking, and returns what is left.
func writeNow(fd int, data []byte) []byte {
	for len(data) > 0 {
		n, err := unix.Write(fd, data)
		if n > 0 {
			data = data[n:]
			continue
		}
		if err != unix.EINTR {
			return data
		}
	}
	return nil
}

// register watches the command's descriptors on the loop. When that fails
// the child is killed and reaped and every descriptor closed.
func (p *proc) register(pidfd int) error {
	p.set = async.NewFDSet(p.ls.loop)
	type watch struct {
		fd *int
		ev reactor.Events
		h  async.FDHandler
	}
	ws := []watch{
		{&p.stdoutFD, reactor.Readable, p.onOutput},
		{&p.stderrFD, reactor.Readable, p.onOutput},
		{&p.stdinFD, reactor.Writable, p.onStdin},
		{&pidfd, reactor.Readable, p.onExit},
	}
	p.pidfd = pidfd >= 0
	for i, w := range ws {
		if *w.fd < 0 {
			continue
		}
		if err := p.set.Watch(*w.fd, w.ev, w.h); err != nil {
			for _, rest := range ws[i:] {
				closeFDs(rest.fd)
			}
			p.signalGroup(unix.SIGKILL)
			p.set.Close()
			p.reap()
			return fmt.Errorf("watch: %w", err)
		}
	}
	return nil
}

// waitInGoroutine is the fallback without pidfds: a goroutine waits for the
// exit without reaping (WNOWAIT, so the pid stays reserved) and posts it to
// the loop, which reaps. If the loop has closed meanwhile, the goroutine
// reaps the process itself.
func (p *proc) waitInGoroutine() {
	pid, l, posted := p.pid, p.ls.loop, p.exitPosted
	go func() {
		var info unix.Siginfo
		for {
			if err := unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WNOWAIT, nil); err != unix.EINTR {
				break
			}
		}
		if l.PostUrgent(posted) != nil {
			var ws unix.WaitStatus
			for {
				if _, err := unix.Wait4(pid, &ws, 0, nil); err != unix.EINTR {
					break
				}
			}
		}
	}()
}
