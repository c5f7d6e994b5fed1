package exec_test

import (
	"bytes"
	"fmt"
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
// with cmd.Run() in goroutines (output discarded, or captured like exec
// does), the same command (/bin/true) and the same
// number in flight (1: latency, 32: throughput). CPU is measured with
// getrusage: "self" is this process (loops, runtime, fork), "child" the
// commands themselves; "start" is how long starting a command holds its
// loop (pipes, fork, exec).
//
//	go test -run '^$' -bench . -benchtime 3000x -count 5 ./modules/exec/
func BenchmarkCommands(b *testing.B) {
	for _, inFlight := range []int{1, 32} {
		cfg := exec.Config{MaxCommands: inFlight, Logger: quiet}
		b.Run(fmt.Sprintf("exec-pidfd/inflight=%d", inFlight), func(b *testing.B) {
			benchExec(b, exec.NewRunner(cfg), inFlight)
		})
		b.Run(fmt.Sprintf("exec-fallback/inflight=%d", inFlight), func(b *testing.B) {
			benchExec(b, exec.NewFallbackRunner(cfg), inFlight)
		})
		b.Run(fmt.Sprintf("os-exec-run/inflight=%d", inFlight), func(b *testing.B) {
			benchOSExec(b, inFlight, false)
		})
		b.Run(fmt.Sprintf("os-exec-capture/inflight=%d", inFlight), func(b *testing.B) {
			benchOSExec(b, inFlight, true)
		})
	}
}

func benchExec(b *testing.B, r *exec.Runner, inFlight int) {
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
	measure(b, inFlight, func(i int, release func()) {
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

// benchOSExec runs the commands with os/exec, one goroutine each. With
// capture, stdout and stderr are collected into buffers as exec does (os/exec
// then adds pipes and a copying goroutine per stream); without, they go to
// /dev/null.
func benchOSExec(b *testing.B, inFlight int, capture bool) {
	var failed atomic.Int64
	measure(b, inFlight, func(_ int, release func()) {
		go func() {
			cmd := osexec.Command("/bin/true")
			var stdout, stderr bytes.Buffer
			if capture {
				cmd.Stdout, cmd.Stderr = &stdout, &stderr
			}
			if err := cmd.Run(); err != nil {
				failed.Add(1)
			}
			release()
		}()
	})
	if n := failed.Load(); n > 0 {
		b.Fatalf("%d commands failed", n)
	}
}

// measure runs b.N commands with start, at most inFlight at once, and
// reports commands/s and CPU per command.
func measure(b *testing.B, inFlight int, start func(i int, release func())) {
	b.ReportAllocs()
	sem := make(chan struct{}, inFlight)
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
