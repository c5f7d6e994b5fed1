package reactor

import (
	"errors"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// parker lets an unlocked loop (Config.NoLockThread) wait for its epoll
// instance through the Go runtime's netpoller instead of a blocking
// epoll_wait: the loop goroutine parks like any goroutine blocked on a
// socket, and its OS thread stays free to run the others (pool workers,
// net/http, database/sql) until the epoll fd becomes readable or the next
// timer is due. A blocking epoll_wait keeps the thread in a syscall with
// its P: the runtime takes the P away (sysmon) to run the other
// goroutines, and the loop's thread must get it back when epoll_wait
// returns, which costs context switches on every wake-up when the process
// has fewer Ps than loops plus busy goroutines (one CPU: one P).
//
// An epoll fd is itself pollable: it is readable while its ready list is
// not empty. The runtime watches a dup of it (edge-triggered); the loop
// parks only after a non-blocking epoll_wait found nothing, so an event
// arriving after that check is a new edge and wakes it.
type parker struct {
	f  *os.File
	rc syscall.RawConn
}

// newParker returns a parker on a dup of epfd, or nil when the runtime
// cannot poll it (the loop then blocks in epoll_wait as a locked loop does).
func newParker(epfd int) *parker {
	fd, err := unix.FcntlInt(uintptr(epfd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil
	}
	f := os.NewFile(uintptr(fd), "reactor-epoll")
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil
	}
	if err := f.SetReadDeadline(time.Time{}); err != nil {
		// Not registered with the netpoller.
		f.Close()
		return nil
	}
	return &parker{f: f, rc: rc}
}

// poll returns the events of epfd, waiting on the netpoller until there are
// some or timeout (ms, -1: none) has passed. The non-blocking epoll_wait runs
// inside RawConn.Read's callback, after the runtime re-armed its readiness
// state: an event arriving after that check wakes the wait, none is lost.
func (p *parker) poll(epfd int, events []unix.EpollEvent, timeout int) (int, error) {
	if timeout >= 0 {
		_ = p.f.SetReadDeadline(time.Now().Add(time.Duration(timeout) * time.Millisecond))
	} else {
		_ = p.f.SetReadDeadline(time.Time{})
	}
	var (
		n   int
		err error
	)
	rerr := p.rc.Read(func(uintptr) bool {
		n, err = unix.EpollWait(epfd, events, 0)
		if err == unix.EINTR {
			n, err = 0, nil
		}
		return n > 0 || err != nil
	})
	if rerr != nil && !errors.Is(rerr, os.ErrDeadlineExceeded) && err == nil && n == 0 {
		// The parker cannot wait (closed): block in epoll_wait instead.
		return unix.EpollWait(epfd, events, timeout)
	}
	return n, err
}

func (p *parker) close() { _ = p.f.Close() }
