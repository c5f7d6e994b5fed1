package exec_test

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	osexec "os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/asyncsip/asyncsip/async"
	"github.com/asyncsip/asyncsip/modules/exec"
)

func TestOutputLines(t *testing.T) {
	e := newEnv(t, 1, exec.NewRunner(exec.Config{Logger: quiet}))
	require.True(t, e.r.PidFD(), "this kernel has pidfds; the fast path must be chosen")
	res, err := e.run(t, e.sh(`printf 'first\nsecond\r\nthird'; echo oops >&2`))
	require.NoError(t, err)
	require.Equal(t, []string{"first", "second", "third"}, res.Lines())
	require.Equal(t, "oops\n", string(res.Stderr), "stderr is kept")
	require.Zero(t, res.ExitCode)
	require.Zero(t, res.Signal)
	require.False(t, res.Truncated)
	require.Positive(t, res.Pid)
	require.Positive(t, res.Duration)
	st := e.r.Stats()
	require.Equal(t, uint64(1), st.Started)
	require.Equal(t, uint64(1), st.Outcomes(exec.KindOK))
	require.Zero(t, st.InFlight)
}

func TestLines(t *testing.T) {
	for _, tc := range []struct {
		name, out string
		want      []string
	}{
		{"empty", "", nil},
		{"one line", "a\n", []string{"a"}},
		{"no final newline", "a\nb", []string{"a", "b"}},
		{"crlf", "a\r\nb\r\n", []string{"a", "b"}},
		{"empty lines kept", "a\n\nb\n", []string{"a", "", "b"}},
		{"only newline", "\n", []string{""}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, exec.Result{Stdout: []byte(tc.out)}.Lines())
		})
	}
}

func TestEnvAndDir(t *testing.T) {
	e := newEnv(t, 1, exec.NewRunner(exec.Config{Logger: quiet}))
	dir := t.TempDir()
	cmd := e.sh(`echo "$GREETING $1"; pwd`, "world")
	cmd.Env = []string{"GREETING=hello"}
	cmd.Dir = dir
	res, err := e.run(t, cmd)
	require.NoError(t, err)
	real, err := filepath.EvalSymlinks(dir)
	require.NoError(t, err)
	require.Equal(t, []string{"hello world", real}, res.Lines())
}

// Output beyond MaxOutput is read and dropped: the command is not blocked
// on a full pipe, memory stays bounded, Truncated says so.
func TestOutputCap(t *testing.T) {
	e := newEnv(t, 1, exec.NewRunner(exec.Config{Logger: quiet}))
	cmd := e.sh(`head -c 3000000 /dev/zero; head -c 5000 /dev/zero >&2; echo done >&2`)
	cmd.MaxOutput = 1000
	res, err := e.run(t, cmd)
	require.NoError(t, err)
	require.Len(t, res.Stdout, 1000)
	require.Len(t, res.Stderr, 1000)
	require.True(t, res.Truncated)
	require.LessOrEqual(t, cap(res.Stdout), 2048, "captured buffer stays near the cap")

	// The runner's default cap applies when the Cmd has none.
	small := exec.NewRunner(exec.Config{Logger: quiet, MaxOutput: 10})
	res, err = e.run(t, small.Command("/bin/sh", "-c", "echo 0123456789abcdef"))
	require.NoError(t, err)
	require.Equal(t, "0123456789", string(res.Stdout))
	require.True(t, res.Truncated)
}

func TestStdin(t *testing.T) {
	e := newEnv(t, 1, exec.NewRunner(exec.Config{Logger: quiet}))
	big := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB: many pipe buffers
	for _, tc := range []struct {
		name string
		in   []byte
	}{
		{"small", []byte("hello\nworld\n")},
		{"larger than the pipe", big},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := e.r.Command("cat")
			cmd.Stdin = tc.in
			cmd.MaxOutput = len(tc.in)
			res, err := e.run(t, cmd)
			require.NoError(t, err)
			require.True(t, bytes.Equal(tc.in, res.Stdout), "echoed %d bytes of %d", len(res.Stdout), len(tc.in))
			require.False(t, res.Truncated)
		})
	}
	t.Run("none reads /dev/null", func(t *testing.T) {
		res, err := e.run(t, e.r.Command("cat"))
		require.NoError(t, err)
		require.Empty(t, res.Stdout)
	})
	t.Run("command that does not read", func(t *testing.T) {
		cmd := e.sh(`exec 0<&-; echo ignored`)
		cmd.Stdin = big
		res, err := e.run(t, cmd)
		require.NoError(t, err, "EPIPE on stdin is not the command's failure")
		require.Equal(t, "ignored\n", string(res.Stdout))
	})
}

func TestExitStatus(t *testing.T) {
	e := newEnv(t, 1, exec.NewRunner(exec.Config{Logger: quiet}))
	res, err := e.run(t, e.sh(`echo partial; exit 3`))
	require.ErrorIs(t, err, exec.ErrExitStatus)
	require.Equal(t, exec.KindExit, exec.KindOf(err))
	require.Equal(t, 3, res.ExitCode)
	require.Equal(t, "partial\n", string(res.Stdout), "the output comes with the error")
	require.Contains(t, err.Error(), "3")
}

func TestKilledBySignal(t *testing.T) {
	e := newEnv(t, 1, exec.NewRunner(exec.Config{Logger: quiet}))
	res, err := e.run(t, e.sh(`echo before; kill -USR1 $$; echo after`))
	require.ErrorIs(t, err, exec.ErrSignaled)
	require.Equal(t, exec.KindSignal, exec.KindOf(err))
	require.Equal(t, syscall.SIGUSR1, res.Signal)
	require.Equal(t, -1, res.ExitCode)
	require.Equal(t, "before\n", string(res.Stdout))
}

// A command that closes its stdout and stderr but keeps running is waited
// for: the op completes at its exit, not at EOF.
func TestClosesOutputKeepsRunning(t *testing.T) {
	e := newEnv(t, 1, exec.NewRunner(exec.Config{Logger: quiet}))
	marker := filepath.Join(t.TempDir(), "finished")
	res, err := e.run(t, e.sh(`echo bye; exec >&- 2>&-; sleep 0.3; echo x > "$1"; exit 4`, marker))
	require.ErrorIs(t, err, exec.ErrExitStatus)
	require.Equal(t, 4, res.ExitCode, "the exit status is the one after the output closed")
	require.Equal(t, "bye\n", string(res.Stdout))
	_, statErr := os.Stat(marker)
	require.NoError(t, statErr, "the command ran to its end")
	require.GreaterOrEqual(t, res.Duration, 300*time.Millisecond)
}

func TestStartErrors(t *testing.T) {
	e := newEnv(t, 1, exec.NewRunner(exec.Config{Logger: quiet}))
	notExec := filepath.Join(t.TempDir(), "script.sh")
	require.NoError(t, os.WriteFile(notExec, []byte("#!/bin/sh\necho hi\n"), 0o644))

	for _, tc := range []struct {
		name string
		cmd  *exec.Cmd
		is   error
	}{
		{"not in PATH", e.r.Command("asyncsip-no-such-command"), osexec.ErrNotFound},
		{"no such file", e.r.Command("/nonexistent/bin/x"), fs.ErrNotExist},
		{"not executable", e.r.Command(notExec), fs.ErrPermission},
		{"empty name", e.r.Command(""), exec.ErrStart},
		{"bad directory", func() *exec.Cmd { c := e.r.Command("/bin/true"); c.Dir = "/nonexistent"; return c }(), fs.ErrNotExist},
		{"NUL in argument", e.r.Command("/bin/echo", "a\x00b"), syscall.EINVAL},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, err := e.run(t, tc.cmd)
			require.ErrorIs(t, err, exec.ErrStart)
			require.ErrorIs(t, err, tc.is)
			require.Equal(t, exec.KindStart, exec.KindOf(err))
			require.Zero(t, res.Pid)
		})
	}
	st := e.r.Stats()
	require.Equal(t, uint64(6), st.StartFailed)
	require.Zero(t, st.Started)
	require.Zero(t, st.InFlight)

	t.Run("no loop", func(t *testing.T) {
		var got error
		e.r.Command("/bin/true").Start(nil, func(_ exec.Result, err error) { got = err })
		require.ErrorIs(t, got, exec.ErrStart)
	})
}

// A Cmd is a template: started several times at once, each run is its own.
func TestCmdReuse(t *testing.T) {
	e := newEnv(t, 2, exec.NewRunner(exec.Config{Logger: quiet}))
	cmd := e.sh(`read x; echo "$x$x"`)
	cmd.Stdin = []byte("ab\n")
	var chs []<-chan outcome
	for i := range 6 {
		chs = append(chs, launch(t, e.g.Loop(i%2), cmd))
	}
	pids := map[int]bool{}
	for _, ch := range chs {
		o := wait(t, ch, 20*time.Second)
		require.NoError(t, o.err)
		require.Equal(t, []string{"abab"}, o.res.Lines())
		pids[o.res.Pid] = true
	}
	require.Len(t, pids, 6)
	require.Equal(t, `/bin/sh -c 'read x; echo "$x$x"' sh`, cmd.String())
}

func TestKindOf(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want exec.Kind
	}{
		{nil, exec.KindOK},
		{exec.ErrExitStatus, exec.KindExit},
		{exec.ErrSignaled, exec.KindSignal},
		{exec.ErrTimeout, exec.KindTimeout},
		{async.ErrTimeout, exec.KindTimeout},
		{exec.ErrStart, exec.KindStart},
		{async.ErrOverloaded, exec.KindOverloaded},
		{async.ErrCancelled, exec.KindCancelled},
		{exec.ErrLoopClosed, exec.KindClosed},
		{errors.New("other"), exec.KindOther},
	} {
		require.Equal(t, tc.want, exec.KindOf(tc.err), "%v", tc.err)
		require.NotEqual(t, "unknown", tc.want.String())
	}
	require.Equal(t, "unknown", exec.Kind(200).String())
	require.True(t, strings.HasPrefix(exec.ErrTimeout.Error(), "exec: "))
}
