package exec_test

import (
	osexec "os/exec"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/asyncsip/asyncsip/async"
	"github.com/asyncsip/asyncsip/modules/exec"
	"github.com/asyncsip/asyncsip/reactor"
)

// Commands per second and CPU per command: exec on 4 loops against os/exec
// with cmd.Run() in goroutines, the same command (/bin/true) and the same
// number in flight (benchInFlight). CPU is measured with getrusage:
// "self" is this process (loops, runtime, fork), "child" the commands
// themselves.
//
//	go test -run '^$' -bench . -benchtime 3000x -count 3 ./modules/exec/
const benchInFlight = 32

func BenchmarkExecPidfd(b *testing.B) {
	benchExec(b, exec.NewRunner(exec.Config{MaxCommands: benchInFlight, Logger: quiet}))
}

func BenchmarkExecFallback(b *testing.B) {
	benchExec(b, exec.NewFallbackRunner(exec.Config{MaxCommands: benchInFlight, Logger: quiet}))
}

func benchExec(b *testing.B, r *exec.Runner) {
	g, err := reactor.NewGroup(4, reactor.Config{Logger: quiet})
	if err != nil {
		b.Fatal(err)
	}
	g.Start()
	defer g.Stop(b.Context())
	cmd := r.Command("/bin/true")
	if cmd.Err != nil {
		b.Fatal(cmd.Err)
	}
	var failed, onLoop atomic.Int64
	measure(b, func(i int, release func()) {
		l := g.Loop(i % g.Len())
		if err := l.Post(func() {
			t0 := time.Now()
			async.Launch(l, cmd, func(_ exec.Result, err error) {
				if err != nil {
					failed.Add(1)
				}
				release()
			}, async.Timeout(time.Minute))
			onLoop.Add(int64(time.Since(t0)))
		}); err != nil {
			b.Fatal(err)
		}
	})
	if n := failed.Load(); n > 0 {
		b.Fatalf("%d commands failed", n)
	}
	// How long starting a command holds its loop (pipes, fork, exec).
	b.ReportMetric(float64(onLoop.Load())/1e3/float64(b.N), "start-µs/cmd")
}

func BenchmarkOSExecRun(b *testing.B) {
	var failed atomic.Int64
	measure(b, func(_ int, release func()) {
		go func() {
			if err := osexec.Command("/bin/true").Run(); err != nil {
				failed.Add(1)
			}
			release()
		}()
	})
	if n := failed.Load(); n > 0 {
		b.Fatalf("%d commands failed", n)
	}
}

// measure runs b.N commands with start, at most benchInFlight at once, and
// reports commands/s and CPU per command.
func measure(b *testing.B, start func(i int, release func())) {
	b.ReportAllocs()
	sem := make(chan struct{}, benchInFlight)
	var wg sync.WaitGroup
	release := func() { <-sem; wg.Done() }
	self0, child0 := cpu(unix.RUSAGE_SELF), cpu(unix.RUSAGE_CHILDREN)
	t0 := time.Now()
	b.ResetTimer()
	for i := range b.N {
		sem <- struct{}{}
		wg.Add(1)
		start(i, release)
	}
	wg.Wait()
	b.StopTimer()
	elapsed := time.Since(t0)
	self, child := cpu(unix.RUSAGE_SELF)-self0, cpu(unix.RUSAGE_CHILDREN)-child0
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "cmds/s")
	b.ReportMetric(float64(self.Microseconds())/float64(b.N), "self-µs/cmd")
	b.ReportMetric(float64(child.Microseconds())/float64(b.N), "child-µs/cmd")
}

// cpu returns user+system CPU time of who (RUSAGE_SELF or RUSAGE_CHILDREN).
func cpu(who int) time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(who, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
