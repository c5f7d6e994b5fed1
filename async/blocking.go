package async

import (
	"context"

	"github.com/asyncsip/asyncsip/reactor"
)

// Blocking returns an op that runs fn, a blocking call (database/sql,
// net/http, a cgo library), on a Pool and posts its result back to the
// loop at urgent priority. The loop never blocks:
//
//   - When the pool has no free worker and its queue is full, the op
//     completes at once (synchronously) with an error wrapping
//     ErrOverloaded. A closed pool gives ErrClosed.
//   - The ctx given to fn is cancelled when the op is cancelled (the await
//     timed out, its context ended); fn should pass it to the I/O it does.
//     A call cancelled while still queued never runs.
//   - The pool slot is freed as soon as fn returns; a panic in fn becomes an
//     error wrapping ErrPanic.
//
// Options: OnPool picks the pool (default DefaultPool), Name names the op
// in errors. A nil fn completes with ErrNilOp.
func Blocking[T any](fn func(ctx context.Context) (T, error), opts ...Option) Op[T] {
	o := parseOptions(opts)
	return &blockingOp[T]{fn: fn, pool: o.pool, name: o.name}
}

type blockingOp[T any] struct {
	fn   func(context.Context) (T, error)
	pool *Pool
	name string
}

func (b *blockingOp[T]) Start(l *reactor.Loop, done func(T, error)) func() {
	var zero T
	if b.fn == nil {
		done(zero, wrap(b.name, ErrNilOp))
		return nil
	}
	p := b.pool
	if p == nil {
		p = DefaultPool()
	}
	j := &blockingJob[T]{fn: b.fn, name: b.name, loop: l, done: done}
	j.ctx, j.cancel = context.WithCancel(context.Background())
	if err := p.submit(j); err != nil {
		j.cancel()
		done(zero, wrap(b.name, err))
		return nil
	}
	return j.cancel
}

// blockingJob is one Blocking call in flight. The loop writes it before
// submit and reads it in deliver; the worker writes v and err in between.
// The pool's mutex and the loop's queue order those accesses.
type blockingJob[T any] struct {
	fn     func(context.Context) (T, error)
	name   string
	loop   *reactor.Loop
	done   func(T, error)
	ctx    context.Context
	cancel context.CancelFunc
	v      T
	err    error
}

func (j *blockingJob[T]) wanted() bool { return j.ctx.Err() == nil }

func (j *blockingJob[T]) interrupt() { j.cancel() }

func (j *blockingJob[T]) run() {
	j.v, j.err = j.call()
	j.cancel() // release the context; the result is posted anyway
	_ = j.loop.PostUrgent(j.deliver)
}

func (j *blockingJob[T]) call() (v T, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = panicError(j.name, r)
		}
	}()
	return j.fn(j.ctx)
}

func (j *blockingJob[T]) abandon(err error) {
	j.cancel()
	var zero T
	j.v, j.err = zero, wrap(j.name, err)
	_ = j.loop.PostUrgent(j.deliver)
}

// deliver runs on the loop. A done after the op was cancelled is dropped by
// the awaiter, so no check is needed here.
func (j *blockingJob[T]) deliver() { j.done(j.v, j.err) }
