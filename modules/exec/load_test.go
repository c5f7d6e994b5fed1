package exec_test

import (
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/asyncsip/asyncsip/async"
	"github.com/asyncsip/asyncsip/internal/testenv"
	"github.com/asyncsip/asyncsip/modules/exec"
)

// raiseNoFile makes sure RLIMIT_NOFILE allows need descriptors, raising the
// soft limit up to the hard one; it skips the test when even that is too
// low.
func raiseNoFile(t testing.TB, need uint64) {
	t.Helper()
	var lim unix.Rlimit
	require.NoError(t, unix.Getrlimit(unix.RLIMIT_NOFILE, &lim))
	if lim.Cur >= need {
		return
	}
	if lim.Max < need {
		t.Skipf("RLIMIT_NOFILE hard limit %d < %d", lim.Max, need)
	}
	old := lim
	lim.Cur = need
	require.NoError(t, unix.Setrlimit(unix.RLIMIT_NOFILE, &lim))
	t.Cleanup(func() { _ = unix.Setrlimit(unix.RLIMIT_NOFILE, &old) })
}

// Many commands at once, on several loops, each with its own output.
func TestManyConcurrent(t *testing.T) {
	const n = 200
	raiseNoFile(t, 4*n+256)
	for name, mk := range runners(exec.Config{MaxCommands: n}) {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, 4, mk())
			chs := make([]<-chan outcome, n)
			for i := range n {
				cmd := e.sh(`read x; echo "$x $1"`, strconv.Itoa(i))
				cmd.Stdin = []byte("cmd\n")
				chs[i] = launch(t, e.g.Loop(i%4), cmd, async.Timeout(time.Minute))
			}
			for i, ch := range chs {
				o := wait(t, ch, time.Minute)
				require.NoError(t, o.err, "command %d", i)
				require.Equal(t, []string{"cmd " + strconv.Itoa(i)}, o.res.Lines())
			}
			st := e.r.Stats()
			require.Equal(t, uint64(n), st.Started)
			require.Equal(t, uint64(n), st.Outcomes(exec.KindOK))
			require.Zero(t, st.InFlight)
			require.Zero(t, st.Overloaded)
		})
	}
}

// Beyond MaxCommands a command fails at once, without a process; a slot is
// free again once a command has been reaped.
func TestOverload(t *testing.T) {
	obs := &countingObserver{}
	e := newEnv(t, 1, exec.NewRunner(exec.Config{Logger: quiet, MaxCommands: 2, Observer: obs}))
	l := e.g.Loop(0)
	a := launch(t, l, e.sh(`sleep 0.3`))
	b := launch(t, l, e.sh(`sleep 0.3`))
	sync := make(chan bool, 1)
	var refused error
	require.NoError(t, l.Post(func() {
		inline := true
		async.Launch(l, e.sh(`echo never`), func(_ exec.Result, err error) {
			refused = err
			sync <- inline
		})
		inline = false
	}))
	require.True(t, <-sync, "the overload is reported synchronously")
	require.ErrorIs(t, refused, async.ErrOverloaded)
	require.Equal(t, exec.KindOverloaded, exec.KindOf(refused))
	require.NoError(t, wait(t, a, 10*time.Second).err)
	require.NoError(t, wait(t, b, 10*time.Second).err)
	res, err := e.run(t, e.sh(`echo again`))
	require.NoError(t, err)
	require.Equal(t, "again\n", string(res.Stdout))

	st := e.r.Stats()
	require.Equal(t, uint64(1), st.Overloaded)
	require.Equal(t, uint64(3), st.Started)
	require.Equal(t, int64(1), obs.overloaded.Load())
	require.Equal(t, int64(3), obs.started.Load())
	require.Equal(t, int64(3), obs.finished.Load())
}

// countingObserver counts Observer calls.
type countingObserver struct {
	started, finished, killed, overloaded atomic.Int64
	mu                                    sync.Mutex
	kinds                                 []exec.Kind
}

func (o *countingObserver) CommandStarted() { o.started.Add(1) }
func (o *countingObserver) CommandFinished(k exec.Kind, d time.Duration) {
	o.finished.Add(1)
	o.mu.Lock()
	o.kinds = append(o.kinds, k)
	o.mu.Unlock()
}
func (o *countingObserver) CommandKilled(exec.KillReason) { o.killed.Add(1) }
func (o *countingObserver) CommandOverloaded()            { o.overloaded.Add(1) }

func TestObserver(t *testing.T) {
	obs := &countingObserver{}
	e := newEnv(t, 1, exec.NewRunner(exec.Config{Logger: quiet, Observer: obs}))
	_, err := e.run(t, e.sh(`exit 0`))
	require.NoError(t, err)
	_, err = e.run(t, e.sh(`exit 1`))
	require.ErrorIs(t, err, exec.ErrExitStatus)
	cmd := e.sh(`sleep 100`)
	cmd.Timeout = 50 * time.Millisecond
	_, err = e.run(t, cmd)
	require.ErrorIs(t, err, exec.ErrTimeout)
	require.Equal(t, int64(3), obs.started.Load())
	require.Equal(t, int64(3), obs.finished.Load())
	require.Equal(t, int64(1), obs.killed.Load())
	obs.mu.Lock()
	require.Equal(t, []exec.Kind{exec.KindOK, exec.KindExit, exec.KindTimeout}, obs.kinds)
	obs.mu.Unlock()
}

// The proof that a command in flight costs no goroutine: 500 commands
// `flock -s GATE sleep 1` run at once on 4 loops, and the goroutine count
// is taken while they all are in flight — the test holds GATE exclusively
// until it has counted, so a slow spawn under load cannot let the first
// ones finish early. The fallback, for contrast, needs one per command.
func TestNoGoroutinePerCommand(t *testing.T) {
	if testing.Short() {
		t.Skip("500 processes")
	}
	const n, slack = 500, 5
	raiseNoFile(t, 4*n+256)
	for _, tc := range []struct {
		name     string
		mk       func(exec.Config) *exec.Runner
		min, max int // extra goroutines while in flight
	}{
		// A few goroutines of earlier tests or of the runtime may come or
		// go meanwhile: the slack is small against n.
		{"pidfd", exec.NewRunner, -slack, slack},
		{"fallback", exec.NewFallbackRunner, n - slack, n + slack},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, 4, tc.mk(exec.Config{Logger: quiet, MaxCommands: n}))
			gate := filepath.Join(t.TempDir(), "gate")
			fd, err := unix.Open(gate, unix.O_CREAT|unix.O_RDWR|unix.O_CLOEXEC, 0o600)
			require.NoError(t, err)
			require.NoError(t, unix.Flock(fd, unix.LOCK_EX))
			defer unix.Close(fd) // also releases the gate if the test fails early
			cmd := e.r.Command("flock", "-s", gate, "sleep", "1")
			require.NoError(t, cmd.Err)
			before := runtime.NumGoroutine()
			chs := make([]<-chan outcome, n)
			for i := range n {
				chs[i] = launch(t, e.g.Loop(i%4), cmd, async.Timeout(time.Minute))
			}
			waitFor(t, 30*time.Second, func() string {
				if got := e.r.Stats().InFlight; got != n {
					return strconv.FormatInt(got, 10) + " commands in flight, want " + strconv.Itoa(n)
				}
				return ""
			})
			during := runtime.NumGoroutine()
			inFlight := e.r.Stats().InFlight
			t.Logf("%s: %d commands in flight, goroutines %d before, %d during (+%d); OS threads %d, fds %d",
				tc.name, inFlight, before, during, during-before, threads(), testenv.CountFDs())
			require.Equal(t, int64(n), inFlight, "all commands were still in flight when counted")
			require.GreaterOrEqual(t, during-before, tc.min)
			require.LessOrEqual(t, during-before, tc.max)
			require.NoError(t, unix.Flock(fd, unix.LOCK_UN))
			for _, ch := range chs {
				require.NoError(t, wait(t, ch, time.Minute).err)
			}
		})
	}
}

// threads returns the number of OS threads of this process.
func threads() int {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return -1
	}
	for _, ln := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(ln, "Threads:"); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(v))
			return n
		}
	}
	return -1
}
