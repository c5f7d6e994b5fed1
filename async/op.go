package async

import (
	"time"

	"github.com/asyncsip/asyncsip/reactor"
)

// Op is an operation that can be started on a loop and completes once with a
// value or an error. Modules (db, exec, rest) turn their I/O into Ops; Await
// and Launch run them.
//
// The contract, for op authors:
//
//   - Start is called on loop l. It starts the work and returns at once; it
//     never blocks.
//   - done must be called exactly once, on l. Work that finishes on another
//     goroutine delivers its result with PostDone (urgent priority, so that
//     completions beat new traffic).
//   - Start may call done before returning: the op completed synchronously
//     and the caller continues inline, without suspending.
//   - The returned cancel (nil if there is nothing to cancel) is called on l
//     when the result is no longer wanted (timeout, the context ended). It
//     must release everything the op holds: timers, fds, pool slots. A done
//     after cancel is allowed and ignored.
type Op[T any] interface {
	// Start starts the op on l; see the contract above.
	Start(l *reactor.Loop, done func(T, error)) (cancel func())
}

// OpFunc adapts a function to the Op interface.
type OpFunc[T any] func(l *reactor.Loop, done func(T, error)) (cancel func())

// Start calls f(l, done).
func (f OpFunc[T]) Start(l *reactor.Loop, done func(T, error)) func() {
	if f == nil {
		var zero T
		done(zero, ErrNilOp)
		return nil
	}
	return f(l, done)
}

// Done returns an op that has already completed with (v, err): awaiting it
// continues inline. It is the result of a cache hit, or of an adapter that
// could answer without I/O.
func Done[T any](v T, err error) Op[T] { return doneOp[T]{v, err} }

type doneOp[T any] struct {
	v   T
	err error
}

func (d doneOp[T]) Start(_ *reactor.Loop, done func(T, error)) func() {
	done(d.v, d.err)
	return nil
}

// PostDone delivers (v, err) to done on loop l at urgent priority. It is safe
// from any goroutine; op authors call it when their work completes off the
// loop. It fails with reactor.ErrClosed only when the loop has exited, in
// which case nobody is waiting any more.
func PostDone[T any](l *reactor.Loop, done func(T, error), v T, err error) error {
	return l.PostUrgent(func() { done(v, err) })
}

// Map returns an op that runs op and converts its value with f, on the loop.
// An error from op is passed on without calling f.
func Map[T, U any](op Op[T], f func(T) (U, error)) Op[U] {
	if op == nil || f == nil {
		var zero U
		return Done(zero, ErrNilOp)
	}
	return OpFunc[U](func(l *reactor.Loop, done func(U, error)) func() {
		return op.Start(l, func(v T, err error) {
			if err != nil {
				var zero U
				done(zero, err)
				return
			}
			done(f(v))
		})
	})
}

// Then returns an op that runs op, then the op next returns for its value:
// the sequence completes with the second op's result, or with the first
// error. Cancelling it cancels whichever op is running.
func Then[T, U any](op Op[T], next func(T) Op[U]) Op[U] {
	if op == nil || next == nil {
		var zero U
		return Done(zero, ErrNilOp)
	}
	return OpFunc[U](func(l *reactor.Loop, done func(U, error)) func() {
		s := &sequence[U]{done: done}
		cancel := op.Start(l, func(v T, err error) {
			if s.over || s.second {
				return
			}
			if err != nil {
				s.finish(*new(U), err)
				return
			}
			op2 := next(v)
			if op2 == nil {
				s.finish(*new(U), ErrNilOp)
				return
			}
			s.second, s.cancel = true, nil
			c2 := op2.Start(l, s.finish)
			if !s.over {
				s.cancel = c2
			}
		})
		if !s.second && !s.over {
			s.cancel = cancel
		}
		return s.stop
	})
}

// sequence is the state of a Then: which stage runs and how to cancel it.
type sequence[U any] struct {
	done   func(U, error)
	cancel func()
	second bool // the second op was started
	over   bool // done was called or the sequence was cancelled
}

func (s *sequence[U]) finish(v U, err error) {
	if s.over {
		return
	}
	s.over, s.cancel = true, nil
	s.done(v, err)
}

func (s *sequence[U]) stop() {
	if s.over {
		return
	}
	s.over = true
	if c := s.cancel; c != nil {
		s.cancel = nil
		c()
	}
}

// Sleep returns an op that completes after d on a loop timer; cancelling it
// stops the timer. A d <= 0 completes at once. It is the equivalent of
// OpenSIPS's async(usleep), and a cheap op for benchmarks.
func Sleep(d time.Duration) Op[struct{}] { return sleepOp(d) }

type sleepOp time.Duration

func (d sleepOp) Start(l *reactor.Loop, done func(struct{}, error)) func() {
	if d <= 0 {
		done(struct{}{}, nil)
		return nil
	}
	t := l.AfterFunc(time.Duration(d), func() { done(struct{}{}, nil) })
	return func() { t.Stop() }
}
