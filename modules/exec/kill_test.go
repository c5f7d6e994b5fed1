package exec_test

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/asyncsip/asyncsip/async"
	"github.com/asyncsip/asyncsip/modules/exec"
	"github.com/asyncsip/asyncsip/reactor"
)

// runners returns the two ways of waiting for exits: pidfds on the loop and
// the goroutine fallback. Kill and cleanup tests run on both.
func runners(cfg exec.Config) map[string]func() *exec.Runner {
	cfg.Logger = quiet
	return map[string]func() *exec.Runner{
		"pidfd":    func() *exec.Runner { return exec.NewRunner(cfg) },
		"fallback": func() *exec.Runner { return exec.NewFallbackRunner(cfg) },
	}
}

// pidFile returns a path the command writes its pid ($$) to (atomically:
// through a rename), and a func
// that reads it back.
func pidFile(t *testing.T) (string, func() int) {
	path := filepath.Join(t.TempDir(), "pid")
	return path, func() int {
		t.Helper()
		b, err := os.ReadFile(path)
		require.NoError(t, err)
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		require.NoError(t, err)
		return pid
	}
}

// A command that hangs, with a child of its own: the timeout kills the
// whole process group, the leader is reaped, nothing survives.
func TestTimeoutKillsGroup(t *testing.T) {
	for name, mk := range runners(exec.Config{Grace: 2 * time.Second}) {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, 1, mk())
			cmd := e.sh(`echo started; sleep 100 & sleep 100`)
			cmd.Timeout = 200 * time.Millisecond
			res, err := e.run(t, cmd)
			require.ErrorIs(t, err, exec.ErrTimeout)
			require.ErrorIs(t, err, async.ErrTimeout)
			require.Equal(t, exec.KindTimeout, exec.KindOf(err))
			require.Equal(t, "started\n", string(res.Stdout), "output so far is delivered")
			require.Equal(t, syscall.SIGTERM, res.Signal)
			requireGroupGone(t, res.Pid)
			require.Equal(t, uint64(1), e.r.Stats().Kills(exec.KillTimeout))
		})
	}
}

// A command that ignores SIGTERM (and whose children inherit that) gets
// SIGKILL after the grace period.
func TestGraceThenSIGKILL(t *testing.T) {
	for name, mk := range runners(exec.Config{}) {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, 1, mk())
			cmd := e.sh(`trap '' TERM; sleep 100 & echo ready; sleep 100`)
			// Long enough for the shell to set its trap first: SIGTERM at
			// 100 ms came before it under a loaded -race run (signal 15).
			cmd.Timeout = time.Second
			cmd.Grace = 200 * time.Millisecond
			res, err := e.run(t, cmd)
			require.ErrorIs(t, err, exec.ErrTimeout)
			require.Equal(t, syscall.SIGKILL, res.Signal)
			require.GreaterOrEqual(t, res.Duration, 250*time.Millisecond, "SIGKILL came after the grace period")
			requireGroupGone(t, res.Pid)
		})
	}
}

// A grandchild that keeps the pipe open does not hold the op: after the
// command exits, output is drained briefly, then the holder is killed.
func TestGrandchildHoldsPipe(t *testing.T) {
	for name, mk := range runners(exec.Config{Drain: 150 * time.Millisecond}) {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, 1, mk())
			res, err := e.run(t, e.sh(`echo answer; (sleep 0.05; echo late; exec sleep 100) &`))
			require.NoError(t, err)
			require.Equal(t, []string{"answer", "late"}, res.Lines(), "output during the drain is kept")
			require.Zero(t, res.ExitCode)
			requireGroupGone(t, res.Pid)
			require.Equal(t, uint64(1), e.r.Stats().Kills(exec.KillOrphans))
		})
	}
}

// A background process that let go of the output is the command's own
// business: it is not killed.
func TestDetachedChildLeftAlone(t *testing.T) {
	e := newEnv(t, 1, exec.NewRunner(exec.Config{Logger: quiet}))
	res, err := e.run(t, e.sh(`sleep 0.5 >/dev/null 2>&1 & echo $!`))
	require.NoError(t, err)
	bg, err := strconv.Atoi(res.Lines()[0])
	require.NoError(t, err)
	alive := groupAlive(res.Pid)
	require.Len(t, alive, 1, "the detached sleep still runs")
	require.Equal(t, bg, alive[0].pid)
	requireGroupGone(t, res.Pid) // it ends by itself
	require.Zero(t, e.r.Stats().Kills(exec.KillOrphans))
}

// An await that times out cancels the op: the command is killed and reaped
// in the background, its slot released after that.
func TestAwaitTimeoutCancels(t *testing.T) {
	for name, mk := range runners(exec.Config{}) {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, 1, mk())
			path, readPid := pidFile(t)
			_, err := e.run(t, e.sh(`echo $$ > "$1.tmp"; mv "$1.tmp" "$1"; sleep 100 & sleep 100`, path), async.Timeout(300*time.Millisecond))
			require.ErrorIs(t, err, async.ErrTimeout)
			require.NotErrorIs(t, err, exec.ErrTimeout, "the await's timeout, not the command's")
			requireGroupGone(t, readPid())
			waitFor(t, 5*time.Second, func() string {
				if st := e.r.Stats(); st.InFlight != 0 || st.Outcomes(exec.KindCancelled) != 1 {
					return "runner still counts the command"
				}
				return ""
			})
			require.Equal(t, uint64(1), e.r.Stats().Kills(exec.KillCancelled))
		})
	}
}

// suspender is a minimal async.Suspender whose context the test can end,
// as tm does when a suspended transaction ends.
type suspender struct {
	l      *reactor.Loop
	aborts []func()
}

func (s *suspender) Loop() *reactor.Loop             { return s.l }
func (s *suspender) Suspend() (async.Resumer, error) { return s, nil }
func (s *suspender) Resume(fn func()) bool           { fn(); return true }
func (s *suspender) OnAbort(fn func())               { s.aborts = append(s.aborts, fn) }
func (s *suspender) end() {
	for _, fn := range s.aborts {
		fn()
	}
}

// Ending the context while the command runs kills it; the resume never
// runs.
func TestAbortKills(t *testing.T) {
	for name, mk := range runners(exec.Config{}) {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, 1, mk())
			l := e.g.Loop(0)
			path, readPid := pidFile(t)
			s := &suspender{l: l}
			resumed := make(chan struct{}, 1)
			require.NoError(t, l.Post(func() {
				async.Await(s, e.sh(`echo $$ > "$1.tmp"; mv "$1.tmp" "$1"; exec sleep 100`, path),
					func(exec.Result, error) { resumed <- struct{}{} }, async.Timeout(time.Minute))
			}))
			waitFor(t, 5*time.Second, func() string {
				if _, err := os.Stat(path); err != nil {
					return "command did not start"
				}
				return ""
			})
			pid := readPid()
			require.NotEmpty(t, groupAlive(pid))
			require.NoError(t, l.Post(s.end))
			requireGroupGone(t, pid)
			waitFor(t, 5*time.Second, func() string {
				if e.r.Stats().InFlight != 0 {
					return "command still in flight"
				}
				return ""
			})
			select {
			case <-resumed:
				t.Fatal("resume ran after the context ended")
			default:
			}
		})
	}
}

// A loop that closes kills its commands and tells their waiters.
func TestLoopCloseKills(t *testing.T) {
	for name, mk := range runners(exec.Config{}) {
		t.Run(name, func(t *testing.T) {
			checkClean(t)
			r := mk()
			l, err := reactor.New(reactor.Config{Logger: quiet})
			require.NoError(t, err)
			l.Start()
			path, readPid := pidFile(t)
			ch := launch(t, l, r.Command("/bin/sh", "-c", `echo $$ > "$1.tmp"; mv "$1.tmp" "$1"; sleep 100 & sleep 100`, "sh", path))
			waitFor(t, 5*time.Second, func() string {
				if r.Stats().InFlight != 1 {
					return "command did not start"
				}
				if _, err := os.Stat(path); err != nil {
					return "command did not write its pid"
				}
				return ""
			})
			ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
			defer cancel()
			_ = l.Stop(ctx) // the launch's timer holds a graceful stop: cut it short
			o := wait(t, ch, 5*time.Second)
			require.ErrorIs(t, o.err, exec.ErrLoopClosed)
			require.Equal(t, exec.KindClosed, exec.KindOf(o.err))
			requireGroupGone(t, readPid())
			st := r.Stats()
			require.Zero(t, st.InFlight)
			require.Equal(t, uint64(1), st.Kills(exec.KillLoopClosed))
		})
	}
}

// The fallback is chosen at start-up and reported; it behaves like the
// pidfd path for ordinary commands.
func TestFallbackBasics(t *testing.T) {
	e := newEnv(t, 2, exec.NewFallbackRunner(exec.Config{Logger: quiet}))
	require.False(t, e.r.PidFD())
	cmd := e.sh(`cat; echo err >&2; exit 2`)
	cmd.Stdin = []byte("in\n")
	res, err := e.run(t, cmd)
	require.ErrorIs(t, err, exec.ErrExitStatus)
	require.Equal(t, []string{"in"}, res.Lines())
	require.Equal(t, "err\n", string(res.Stderr))
	require.Equal(t, 2, res.ExitCode)
}
