package exec_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/asyncsip/asyncsip/async"
	"github.com/asyncsip/asyncsip/internal/testenv"
	"github.com/asyncsip/asyncsip/modules/exec"
	"github.com/asyncsip/asyncsip/reactor"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// env is one test's runner and loops. When the test ends the loops are
// stopped, then the test checks that descriptors, goroutines and child
// processes are back to what they were before.
type env struct {
	r *exec.Runner
	g *reactor.Group
}

func newEnv(t testing.TB, loops int, r *exec.Runner) *env {
	t.Helper()
	checkClean(t)
	g, err := reactor.NewGroup(loops, reactor.Config{Logger: quiet})
	require.NoError(t, err)
	g.Start()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		require.NoError(t, g.Stop(ctx))
	})
	return &env{r: r, g: g}
}

// checkClean records the descriptors and goroutines now, and at the end of
// the test waits (bounded) for them to come back to that, and for every
// child process to be reaped.
func checkClean(t testing.TB) {
	t.Helper()
	fds, gs := testenv.CountFDs(), runtime.NumGoroutine()
	t.Cleanup(func() {
		t.Helper()
		waitFor(t, 5*time.Second, func() string {
			if n := testenv.CountFDs(); n > fds {
				return strconv.Itoa(n) + " descriptors open, " + strconv.Itoa(fds) + " before"
			}
			if n := runtime.NumGoroutine(); n > gs {
				return strconv.Itoa(n) + " goroutines, " + strconv.Itoa(gs) + " before"
			}
			if c := children(); len(c) > 0 {
				return "child processes left: " + c[0].String()
			}
			return ""
		})
	})
}

// waitFor polls cond until it returns "" or d passes; then it fails the test
// with cond's last complaint.
func waitFor(t testing.TB, d time.Duration, cond func() string) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		msg := cond()
		if msg == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("after %v: %s", d, msg)
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// outcome is what a command delivered.
type outcome struct {
	res exec.Result
	err error
}

// launch starts op on loop l (from the test goroutine) and returns the
// channel its outcome arrives on.
func launch(t testing.TB, l *reactor.Loop, op async.Op[exec.Result], opts ...async.Option) <-chan outcome {
	t.Helper()
	ch := make(chan outcome, 1)
	require.NoError(t, l.Post(func() {
		async.Launch(l, op, func(r exec.Result, err error) { ch <- outcome{r, err} }, opts...)
	}))
	return ch
}

// wait returns the outcome from ch, failing the test after d.
func wait(t testing.TB, ch <-chan outcome, d time.Duration) outcome {
	t.Helper()
	select {
	case o := <-ch:
		return o
	case <-time.After(d):
		t.Fatalf("command did not complete within %v", d)
		return outcome{}
	}
}

// run runs op on the first loop and waits for it.
func (e *env) run(t testing.TB, op async.Op[exec.Result], opts ...async.Option) (exec.Result, error) {
	t.Helper()
	o := wait(t, launch(t, e.g.Loop(0), op, opts...), 20*time.Second)
	return o.res, o.err
}

// sh returns a Cmd running script with /bin/sh -c; args become $1...
func (e *env) sh(script string, args ...string) *exec.Cmd {
	return e.r.Command("/bin/sh", append([]string{"-c", script, "sh"}, args...)...)
}

// procInfo is one line of /proc/<pid>/stat.
type procInfo struct {
	pid, ppid, pgrp int
	state           byte
	comm            string
}

func (p procInfo) String() string {
	return "pid " + strconv.Itoa(p.pid) + " (" + p.comm + ") state " + string(p.state) +
		" ppid " + strconv.Itoa(p.ppid) + " pgrp " + strconv.Itoa(p.pgrp)
}

// processes lists the processes of the system (those that vanish while
// being read are skipped).
func processes() []procInfo {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var out []procInfo
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		open, end := bytes.IndexByte(b, '('), bytes.LastIndexByte(b, ')')
		if open < 0 || end < open {
			continue
		}
		f := strings.Fields(string(b[end+1:]))
		if len(f) < 3 {
			continue
		}
		ppid, _ := strconv.Atoi(f[1])
		pgrp, _ := strconv.Atoi(f[2])
		out = append(out, procInfo{pid: pid, ppid: ppid, pgrp: pgrp, state: f[0][0], comm: string(b[open+1 : end])})
	}
	return out
}

// children returns this process's child processes, zombies included.
func children() []procInfo {
	me := os.Getpid()
	var out []procInfo
	for _, p := range processes() {
		if p.ppid == me {
			out = append(out, p)
		}
	}
	return out
}

// groupAlive returns the live (non-zombie) members of process group pgrp.
// Killed orphans are reparented to init, which reaps them; zombies waiting
// for that are dead already.
func groupAlive(pgrp int) []procInfo {
	var out []procInfo
	for _, p := range processes() {
		if p.pgrp == pgrp && p.state != 'Z' {
			out = append(out, p)
		}
	}
	return out
}

// requireGroupGone waits (bounded) until no live process of group pgrp is
// left.
func requireGroupGone(t testing.TB, pgrp int) {
	t.Helper()
	require.Positive(t, pgrp)
	waitFor(t, 5*time.Second, func() string {
		if a := groupAlive(pgrp); len(a) > 0 {
			return "process group " + strconv.Itoa(pgrp) + " still has " + a[0].String()
		}
		return ""
	})
}
