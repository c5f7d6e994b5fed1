package reactor

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// Events is a set of fd readiness conditions (epoll flags).
type Events uint32

// Readiness conditions for Watch. Watchers are level-triggered: a handler
// that reads only part of what is ready is called again next iteration, which
// is how bounded batch reads keep one socket from starving the rest.
const (
	Readable  Events = unix.EPOLLIN
	Writable  Events = unix.EPOLLOUT
	Error     Events = unix.EPOLLERR
	Hangup    Events = unix.EPOLLHUP | unix.EPOLLRDHUP
	Exclusive Events = unix.EPOLLEXCLUSIVE
)

// Watch registers fd on the loop; h runs on the loop each time one of ev is
// ready (Error and Hangup are always reported). Exclusive adds
// EPOLLEXCLUSIVE, for an fd shared by several loops: a readiness change
// wakes one of them rather than all. The loop does not take ownership of fd;
// register a closer with OnClose for that. Call Watch on the loop goroutine
// or before the loop runs.
func (l *Loop) Watch(fd int, ev Events, h func(fd int, ev Events)) error {
	if l.manual {
		return ErrManual
	}
	if _, ok := l.watchers[fd]; ok {
		return fmt.Errorf("reactor: fd %d already watched", fd)
	}
	l.watchSeq++
	if l.watchSeq < 0 {
		l.watchSeq = 0
	}
	w := &watcher{fd: fd, seq: l.watchSeq, ev: ev, h: h}
	e := unix.EpollEvent{Events: uint32(ev), Fd: int32(fd), Pad: w.seq}
	if err := unix.EpollCtl(l.epfd, unix.EPOLL_CTL_ADD, fd, &e); err != nil {
		return fmt.Errorf("reactor: watch fd %d: %w", fd, err)
	}
	l.watchers[fd] = w
	l.stats.watchers.Add(1)
	return nil
}

// Modify changes the conditions watched on fd. It cannot add or remove
// Exclusive (an epoll restriction).
func (l *Loop) Modify(fd int, ev Events) error {
	w := l.watchers[fd]
	if w == nil {
		return ErrNotWatched
	}
	if w.ev == ev {
		return nil
	}
	e := unix.EpollEvent{Events: uint32(ev), Fd: int32(fd), Pad: w.seq}
	if err := unix.EpollCtl(l.epfd, unix.EPOLL_CTL_MOD, fd, &e); err != nil {
		return fmt.Errorf("reactor: modify fd %d: %w", fd, err)
	}
	w.ev = ev
	return nil
}

// Unwatch removes fd from the loop. Events for fd already collected in the
// current iteration are discarded. The fd is not closed.
func (l *Loop) Unwatch(fd int) error {
	w := l.watchers[fd]
	if w == nil {
		return ErrNotWatched
	}
	delete(l.watchers, fd)
	l.stats.watchers.Add(-1)
	w.h = nil
	// EBADF/ENOENT here mean the fd was already closed, which removes it
	// from epoll too.
	_ = unix.EpollCtl(l.epfd, unix.EPOLL_CTL_DEL, fd, nil)
	return nil
}

// Watching reports whether fd is registered on the loop.
func (l *Loop) Watching(fd int) bool { _, ok := l.watchers[fd]; return ok }

// dispatch runs a watcher's handler. A handler that panics loses its watcher
// (the fd is considered broken) but the loop goes on.
func (l *Loop) dispatch(w *watcher, ev Events) {
	defer func() {
		if r := recover(); r != nil {
			l.panicked(r)
			if l.watchers[w.fd] == w {
				_ = l.Unwatch(w.fd)
				l.log.Warn("reactor: watcher removed after panic", "fd", w.fd)
			}
		}
	}()
	l.stats.fdEvents.Add(1)
	w.h(w.fd, ev)
}
