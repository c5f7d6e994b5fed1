package exec_test

import (
	"context"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/asyncsip/asyncsip/async"
	"github.com/asyncsip/asyncsip/modules/exec"
	"github.com/asyncsip/asyncsip/reactor"
)

// manualEnv is a runner and a manual loop (no poller, a fake clock), as
// siptest runs routes. Commands started on it are watched by a goroutine.
type manualEnv struct {
	r *exec.Runner
	l *reactor.Loop
}

func newManualEnv(t *testing.T, r *exec.Runner) *manualEnv {
	t.Helper()
	checkClean(t)
	l := reactor.NewManual(nil)
	t.Cleanup(func() { _ = l.Stop(context.Background()) })
	return &manualEnv{r: r, l: l}
}

func (e *manualEnv) sh(script string, args ...string) *exec.Cmd {
	return e.r.Command("/bin/sh", append([]string{"-c", script, "sh"}, args...)...)
}

// launch starts op on the manual loop (the test goroutine is its loop).
func (e *manualEnv) launch(op async.Op[exec.Result], opts ...async.Option) <-chan outcome {
	ch := make(chan outcome, 1)
	async.Launch(e.l, op, func(r exec.Result, err error) { ch <- outcome{r, err} }, opts...)
	return ch
}

// wait runs the loop's posted tasks until the outcome arrives, failing the
// test after d.
func (e *manualEnv) wait(t *testing.T, ch <-chan outcome, d time.Duration) outcome {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		e.l.RunPending()
		select {
		case o := <-ch:
			return o
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("command did not complete within %v", d)
		}
		time.Sleep(time.Millisecond)
	}
}

func (e *manualEnv) run(t *testing.T, op async.Op[exec.Result], opts ...async.Option) (exec.Result, error) {
	t.Helper()
	o := e.wait(t, e.launch(op, opts...), 20*time.Second)
	return o.res, o.err
}

// The ordinary cases on a manual loop, with and without pidfds: output,
// stderr, stdin larger than a pipe, exit status, the output cap.
func TestManualLoopRuns(t *testing.T) {
	for name, mk := range runners(exec.Config{}) {
		t.Run(name, func(t *testing.T) {
			e := newManualEnv(t, mk())
			cmd := e.sh(`wc -c; echo "err $1" >&2; exit 3`, "x")
			cmd.Stdin = make([]byte, 1<<20) // more than a pipe holds: written as it drains
			res, err := e.run(t, cmd)
			require.ErrorIs(t, err, exec.ErrExitStatus)
			require.Equal(t, []string{"1048576"}, res.Lines())
			require.Equal(t, "err x\n", string(res.Stderr))
			require.Equal(t, 3, res.ExitCode)
			require.Positive(t, res.Pid)

			capped := e.sh(`head -c 100000 /dev/zero; echo done >&2`)
			capped.MaxOutput = 10
			res, err = e.run(t, capped)
			require.NoError(t, err)
			require.Len(t, res.Stdout, 10)
			require.True(t, res.Truncated)
			require.Equal(t, "done\n", string(res.Stderr))

			st := e.r.Stats()
			require.Equal(t, uint64(2), st.Started)
			require.Equal(t, uint64(2), st.Finished)
			require.Zero(t, st.InFlight)
			require.Equal(t, uint64(1), st.Outcomes(exec.KindExit))
		})
	}
}

// Timeout, Grace and Drain run on the wall clock: the fake clock of a
// manual loop does not move, the process is killed all the same.
func TestManualLoopTimeout(t *testing.T) {
	for name, mk := range runners(exec.Config{Logger: quiet}) {
		t.Run(name, func(t *testing.T) {
			e := newManualEnv(t, mk())
			cmd := e.sh(`trap '' TERM; echo started; sleep 100 & sleep 100`)
			cmd.Timeout = 100 * time.Millisecond
			cmd.Grace = 200 * time.Millisecond
			res, err := e.run(t, cmd)
			require.ErrorIs(t, err, exec.ErrTimeout)
			require.Equal(t, exec.KindTimeout, exec.KindOf(err))
			require.Equal(t, "started\n", string(res.Stdout), "output so far is delivered")
			require.Equal(t, syscall.SIGKILL, res.Signal, "SIGTERM ignored: SIGKILL after Grace")
			require.GreaterOrEqual(t, res.Duration, 300*time.Millisecond)
			requireGroupGone(t, res.Pid)
			require.Equal(t, uint64(1), e.r.Stats().Kills(exec.KillTimeout))

			// A drain long enough that the orphan's line, written 50 ms
			// after the command exited, lands in it on a loaded machine
			// too (100 ms, the default, did not always).
			drain := e.sh(`echo answer; (sleep 0.05; echo late; exec sleep 100) &`)
			drain.Drain = 2 * time.Second
			res, err = e.run(t, drain)
			require.NoError(t, err)
			require.Equal(t, []string{"answer", "late"}, res.Lines(), "output during the drain is kept")
			requireGroupGone(t, res.Pid)
			require.Equal(t, uint64(1), e.r.Stats().Kills(exec.KillOrphans))
		})
	}
}

// The await's own timeout runs on the loop's fake clock: advancing it
// cancels the op, and the goroutine kills and reaps the command.
func TestManualLoopCancel(t *testing.T) {
	for name, mk := range runners(exec.Config{Logger: quiet}) {
		t.Run(name, func(t *testing.T) {
			e := newManualEnv(t, mk())
			path, readPid := pidFile(t)
			ch := e.launch(e.sh(`echo $$ > "$1.tmp"; mv "$1.tmp" "$1"; sleep 100 & sleep 100`, path), async.Timeout(time.Second))
			waitFor(t, 5*time.Second, func() string {
				if _, err := os.Stat(path); err != nil {
					return "command did not write its pid"
				}
				return ""
			})
			e.l.Advance(time.Second)
			o := e.wait(t, ch, time.Second)
			require.ErrorIs(t, o.err, async.ErrTimeout)
			require.NotErrorIs(t, o.err, exec.ErrTimeout, "the await's timeout, not the command's")
			requireGroupGone(t, readPid())
			waitFor(t, 5*time.Second, func() string {
				e.l.RunPending() // the goroutine's late completion, discarded
				if st := e.r.Stats(); st.InFlight != 0 || st.Outcomes(exec.KindCancelled) != 1 {
					return "runner still counts the command"
				}
				return ""
			})
			require.Equal(t, uint64(1), e.r.Stats().Kills(exec.KillCancelled))
		})
	}
}

// A manual loop that stops kills its commands and tells their waiters.
func TestManualLoopClose(t *testing.T) {
	e := newManualEnv(t, exec.NewRunner(exec.Config{Logger: quiet}))
	path, readPid := pidFile(t)
	ch := e.launch(e.sh(`echo $$ > "$1.tmp"; mv "$1.tmp" "$1"; sleep 100 & sleep 100`, path))
	waitFor(t, 5*time.Second, func() string {
		if _, err := os.Stat(path); err != nil {
			return "command did not write its pid"
		}
		return ""
	})
	require.NoError(t, e.l.Stop(context.Background()))
	o := e.wait(t, ch, time.Second)
	require.ErrorIs(t, o.err, exec.ErrLoopClosed)
	require.Equal(t, readPid(), o.res.Pid)
	requireGroupGone(t, readPid())
	waitFor(t, 5*time.Second, func() string {
		if st := e.r.Stats(); st.InFlight != 0 || st.Outcomes(exec.KindClosed) != 1 {
			return "runner still counts the command"
		}
		return ""
	})
	require.Equal(t, uint64(1), e.r.Stats().Kills(exec.KillLoopClosed))
}
