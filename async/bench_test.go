package async

import (
	"context"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/asyncsip/asyncsip/internal/testenv"
	"github.com/asyncsip/asyncsip/reactor"
)

// benchCtx is the cheapest possible host: Suspend allocates nothing and
// Resume runs fn inline, so the figures are async's own overhead. (A real
// host adds its own bookkeeping: tm.Context arms a suspension bound.)
type benchCtx struct {
	l    *reactor.Loop
	live bool
}

func (c *benchCtx) Loop() *reactor.Loop { return c.l }

func (c *benchCtx) Suspend() (Resumer, error) { c.live = true; return c, nil }

func (c *benchCtx) Resume(fn func()) bool {
	if !c.live {
		return false
	}
	c.live = false
	fn()
	return true
}

func (c *benchCtx) OnAbort(func()) {}

// benchOp keeps its done func; fire completes it (from a task: no closure).
type benchOp struct {
	done func(int, error)
	fire func()
}

func newBenchOp() *benchOp {
	o := &benchOp{}
	o.fire = func() { o.done(1, nil) }
	return o
}

func (o *benchOp) Start(_ *reactor.Loop, done func(int, error)) func() {
	o.done = done
	return nil
}

// BenchmarkAwaitSync: an op that completes in Start; resume runs inline.
func BenchmarkAwaitSync(b *testing.B) {
	l, _ := newManual()
	c := &benchCtx{l: l}
	op := Done(1, nil)
	n := 0
	resume := func(v int, err error) { n += v }
	b.ReportAllocs()
	for b.Loop() {
		Await(c, op, resume, Name("bench"), Timeout(time.Second))
	}
	if n != b.N {
		b.Fatalf("resumed %d times, want %d", n, b.N)
	}
}

// BenchmarkAwaitAsync: suspend, arm the timeout, complete, stop the timer,
// resume — per await.
func BenchmarkAwaitAsync(b *testing.B) {
	b.Run("direct", func(b *testing.B) {
		// The completion is called on the loop by the benchmark itself:
		// async's overhead alone.
		l, _ := newManual()
		c := &benchCtx{l: l}
		op := newBenchOp()
		n := 0
		resume := func(v int, err error) { n += v }
		b.ReportAllocs()
		for b.Loop() {
			Await(c, op, resume)
			op.done(1, nil)
		}
		if n != b.N {
			b.Fatalf("resumed %d times, want %d", n, b.N)
		}
	})
	b.Run("posted", func(b *testing.B) {
		// The completion arrives as an urgent task on a manual loop, as
		// from an op that finished on another goroutine.
		l, _ := newManual()
		c := &benchCtx{l: l}
		op := newBenchOp()
		n := 0
		resume := func(v int, err error) { n += v }
		b.ReportAllocs()
		for b.Loop() {
			Await(c, op, resume)
			_ = l.PostUrgent(op.fire)
			l.RunPending()
		}
		if n != b.N {
			b.Fatalf("resumed %d times, want %d", n, b.N)
		}
	})
	b.Run("realloop", func(b *testing.B) {
		// A chain of awaits on a running loop, each completed by an urgent
		// task the op posts: includes the loop's task and wake-up costs.
		l := testenv.StartLoop(b)
		c := &benchCtx{l: l}
		op := newBenchOp()
		posting := OpFunc[int](func(l *reactor.Loop, done func(int, error)) func() {
			op.done = done
			_ = l.PostUrgent(op.fire)
			return nil
		})
		finished := make(chan struct{})
		left := 0
		var resume func(int, error)
		resume = func(int, error) {
			if left--; left <= 0 {
				close(finished)
				return
			}
			Await(c, posting, resume)
		}
		b.ReportAllocs()
		b.ResetTimer()
		left = b.N
		_ = l.Post(func() { Await(c, posting, resume) })
		<-finished
	})
}

// BenchmarkBlocking: a round trip through a pool — submit, run on a worker,
// post the result back, resume on the loop.
func BenchmarkBlocking(b *testing.B) {
	for _, inFlight := range []int{1, 64} {
		b.Run(map[int]string{1: "serial", 64: "inflight64"}[inFlight], func(b *testing.B) {
			p := NewPool(PoolConfig{Workers: 64})
			defer p.Close(context.Background())
			l := testenv.StartLoop(b)
			op := Blocking(func(context.Context) (int, error) { return 1, nil }, OnPool(p))
			finished := make(chan struct{})
			started, left := 0, 0
			var next func(c *benchCtx)
			next = func(c *benchCtx) {
				if started == b.N {
					return
				}
				started++
				Await(c, op, func(_ int, err error) {
					if err != nil {
						b.Error(err)
					}
					if left--; left == 0 {
						close(finished)
						return
					}
					next(c)
				})
			}
			b.ReportAllocs()
			b.ResetTimer()
			left = b.N
			_ = l.Post(func() {
				for range inFlight {
					next(&benchCtx{l: l})
				}
			})
			<-finished
		})
	}
}

// BenchmarkSleep: Await(Sleep) on a manual loop, the clock advanced past it.
func BenchmarkSleep(b *testing.B) {
	l, _ := newManual()
	c := &benchCtx{l: l}
	n := 0
	resume := func(struct{}, error) { n++ }
	b.ReportAllocs()
	for b.Loop() {
		Await(c, Sleep(time.Millisecond), resume)
		l.Advance(time.Millisecond)
	}
	if n != b.N {
		b.Fatalf("resumed %d times, want %d", n, b.N)
	}
}

// BenchmarkBlockingThread: the serial Blocking round trip of BenchmarkBlocking
// with GOMAXPROCS=1 (the proxy pinned to one CPU), on a loop locked to its
// OS thread (the default) and on an unlocked one. Besides ns/op it reports
// the process's context switches per op (getrusage): with one P, every hop
// between the locked loop goroutine and a pool worker moves the P between
// two OS threads.
func BenchmarkBlockingThread(b *testing.B) {
	for _, locked := range []bool{true, false} {
		b.Run(map[bool]string{true: "locked", false: "unlocked"}[locked], func(b *testing.B) {
			defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
			p := NewPool(PoolConfig{Workers: 64})
			defer p.Close(context.Background())
			l, err := reactor.New(reactor.Config{NoLockThread: !locked})
			if err != nil {
				b.Fatal(err)
			}
			l.Start()
			defer func() {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				_ = l.Stop(ctx)
			}()
			op := Blocking(func(context.Context) (int, error) { return 1, nil }, OnPool(p))
			finished := make(chan struct{})
			c := &benchCtx{l: l}
			left := 0
			var next func()
			next = func() {
				Await(c, op, func(_ int, err error) {
					if err != nil {
						b.Error(err)
					}
					if left--; left == 0 {
						close(finished)
						return
					}
					next()
				})
			}
			b.ReportAllocs()
			cs0 := ctxSwitches()
			b.ResetTimer()
			left = b.N
			_ = l.Post(next)
			<-finished
			b.StopTimer()
			b.ReportMetric(float64(ctxSwitches()-cs0)/float64(b.N), "ctxsw/op")
		})
	}
}

// ctxSwitches returns the voluntary and involuntary context switches of the
// process so far.
func ctxSwitches() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Nvcsw + ru.Nivcsw
}
