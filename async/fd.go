package async

import (
	"errors"
	"syscall"

	"github.com/asyncsip/asyncsip/reactor"
)

// FDAction is what an FD handler asks for after handling a readiness event,
// as OpenSIPS's async resume callbacks do. To switch to another fd
// (failover, a second phase), Watch the new fd from the handler and return
// FDRemove or FDClose for the old one.
type FDAction uint8

const (
	// FDKeep keeps waiting on the fd (more data is expected).
	FDKeep FDAction = iota
	// FDRemove stops watching the fd and leaves it open: the op keeps
	// using it, or someone else owns it.
	FDRemove
	// FDClose stops watching the fd and closes it.
	FDClose
)

// FDHandler handles readiness of one fd of an FDSet, on the loop. ev holds
// the ready conditions (reactor.Error and reactor.Hangup are always
// reported).
type FDHandler func(fd int, ev reactor.Events) FDAction

// FDSet is the set of file descriptors one op waits on, on one loop: for
// example a child's stdout, stderr and pidfd, or a connection socket. The op
// logic decides when it is complete; the set makes sure that nothing stays
// registered on the loop, and nothing it owns stays open, after that. Use it
// on its loop only.
type FDSet struct {
	loop    *reactor.Loop
	fds     []fdEntry
	handle  func(fd int, ev reactor.Events) // s.dispatch, shared by all fds
	onEmpty func()
	closed  bool
}

type fdEntry struct {
	fd int
	h  FDHandler
}

// ErrFDSetClosed is returned by Watch on a closed FDSet.
var ErrFDSetClosed = errors.New("async: fd set closed")

// NewFDSet returns an empty set of fds on loop l.
func NewFDSet(l *reactor.Loop) *FDSet {
	s := &FDSet{loop: l}
	s.handle = s.dispatch
	return s
}

// Watch registers fd on the loop for ev; h runs on each readiness and its
// FDAction says what happens to the fd next. The set owns fd from now on in
// the sense that Close, or an FDClose action, closes it. Watch fails when
// the set is closed, when fd is already watched on the loop, or on a manual
// loop (reactor.ErrManual); fd then stays the caller's to close.
func (s *FDSet) Watch(fd int, ev reactor.Events, h FDHandler) error {
	if s.closed {
		return ErrFDSetClosed
	}
	if h == nil {
		return ErrNilOp
	}
	if err := s.loop.Watch(fd, ev, s.handle); err != nil {
		return err
	}
	s.fds = append(s.fds, fdEntry{fd: fd, h: h})
	return nil
}

// Modify changes the conditions watched on fd, for example from
// reactor.Writable (connecting) to reactor.Readable (awaiting a reply).
func (s *FDSet) Modify(fd int, ev reactor.Events) error {
	if s.find(fd) < 0 {
		return reactor.ErrNotWatched
	}
	return s.loop.Modify(fd, ev)
}

// Remove stops watching fd, and closes it when closeFD is true. It does
// what the FDRemove and FDClose actions do, for use outside a handler.
// It reports whether fd was in the set.
func (s *FDSet) Remove(fd int, closeFD bool) bool {
	i := s.find(fd)
	if i < 0 {
		return false
	}
	s.fds = append(s.fds[:i], s.fds[i+1:]...)
	_ = s.loop.Unwatch(fd)
	if closeFD {
		_ = syscall.Close(fd)
	}
	if len(s.fds) == 0 && s.onEmpty != nil && !s.closed {
		s.onEmpty()
	}
	return true
}

// Len returns the number of fds in the set.
func (s *FDSet) Len() int { return len(s.fds) }

// OnEmpty registers fn to run when the last fd leaves the set through a
// handler's action or Remove (not through Close): the natural completion
// point of an op that waits for all its fds, such as exec waiting for EOF
// on stdout and stderr and for the child's exit.
func (s *FDSet) OnEmpty(fn func()) { s.onEmpty = fn }

// Close unwatches and closes every fd still in the set; later Watch calls
// fail. It is the cancel of an fd-based op, and idempotent.
func (s *FDSet) Close() {
	s.closed = true
	for len(s.fds) > 0 {
		e := s.fds[len(s.fds)-1]
		s.fds = s.fds[:len(s.fds)-1]
		_ = s.loop.Unwatch(e.fd)
		_ = syscall.Close(e.fd)
	}
}

func (s *FDSet) find(fd int) int {
	for i := range s.fds {
		if s.fds[i].fd == fd {
			return i
		}
	}
	return -1
}

// dispatch is the reactor handler of every fd in the set.
func (s *FDSet) dispatch(fd int, ev reactor.Events) {
	i := s.find(fd)
	if i < 0 {
		_ = s.loop.Unwatch(fd) // not ours any more
		return
	}
	h := s.fds[i].h
	switch h(fd, ev) {
	case FDRemove:
		s.Remove(fd, false)
	case FDClose:
		s.Remove(fd, true)
	}
	// The handler may have changed the set (even closed fd and watched a
	// new fd with the same number): Remove looks the fd up again, and an
	// fd already gone is left alone.
}

// FDOp returns an op that waits on file descriptors. On Start, start runs on
// the loop with a fresh FDSet and the op's done: it opens and registers its
// fds, and calls done when its own logic says the op is complete (often
// from OnEmpty). Calling done, an error from start, or cancelling the op
// closes the set, so no fd outlives the op. start may call done itself
// (synchronous completion).
func FDOp[T any](start func(s *FDSet, done func(T, error)) error) Op[T] {
	if start == nil {
		return Done(*new(T), ErrNilOp)
	}
	return OpFunc[T](func(l *reactor.Loop, done func(T, error)) func() {
		s := NewFDSet(l)
		finished := false
		finish := func(v T, err error) {
			if finished {
				return
			}
			finished = true
			s.Close()
			done(v, err)
		}
		if err := start(s, finish); err != nil {
			finish(*new(T), err)
			return nil
		}
		if finished {
			return nil
		}
		return s.Close
	})
}
