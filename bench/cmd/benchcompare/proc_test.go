package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestParseStat(t *testing.T) {
	ppid, ticks, err := parseStat("4242 (my (odd) name) S 17 4242 4242 0 -1 4194560 100 0 0 0 250 37 0 0 20 0 4 0 1 2 3")
	require.NoError(t, err)
	require.Equal(t, 17, ppid)
	require.EqualValues(t, 287, ticks)
	for _, bad := range []string{"", "12 (x S 1 2", "12 (x) S 1 2 3", "12 (x) S one 1 1 0 -1 0 0 0 0 0 x y"} {
		_, _, err := parseStat(bad)
		require.ErrorIs(t, err, ErrBadStat, bad)
	}
}

// TestProcTreeCPU starts a shell that burns CPU in a child process and checks
// that CPUTicks counts the child and that Stop ends the whole tree.
func TestProcTreeCPU(t *testing.T) {
	if _, err := exec.LookPath("taskset"); err != nil {
		t.Skip("taskset (util-linux) not installed")
	}
	dir := t.TempDir()
	p, err := StartProc("burn", 0, filepath.Join(dir, "burn.log"), nil,
		"sh", "-c", `sh -c 'while :; do :; done' & echo started; wait`)
	require.NoError(t, err)
	defer p.Stop(time.Second)
	// The parent shell only waits: any CPU counted for the tree is the
	// child's. 0.1 s of it, allowed 30 s of wall time, because the burner
	// is pinned to CPU 0 and a loaded machine (CI) gives it little of it.
	require.True(t, waitFor(30*time.Second, func() bool {
		n, err := CPUTicks(p.PID())
		return err == nil && n >= 10
	}), "CPU of the child process not counted")
	p.Stop(2 * time.Second)
	require.True(t, p.Exited())
	_, err = CPUTicks(p.PID())
	require.ErrorIs(t, err, os.ErrNotExist)
}

func TestStartProcError(t *testing.T) {
	_, err := StartProc("x", 0, filepath.Join(t.TempDir(), "no", "such", "dir.log"), nil, "true")
	require.Error(t, err)
}

// TestProxyArgv checks the command lines of the asyncsip rows: the default
// row leaves the event loops to the library (-workers 0: one per
// GOMAXPROCS, which follows taskset), asyncsip-4loops asks for 4.
func TestProxyArgv(t *testing.T) {
	e := &env{o: Options{Port: 5070, UASPort: 5080, HTTPPort: 8088}, bin: "/b", dbPath: "/r.db"}
	workers := func(argv []string) string {
		for i := range argv {
			if argv[i] == "-workers" && i+1 < len(argv) {
				return argv[i+1]
			}
		}
		return ""
	}
	argv, _, err := proxyKinds["asyncsip"].argv(e, "relay")
	require.NoError(t, err)
	require.Equal(t, "/b/benchproxy", argv[0])
	require.Equal(t, "0", workers(argv))
	argv, _, err = proxyKinds["asyncsip-4loops"].argv(e, "relay")
	require.NoError(t, err)
	require.Equal(t, "4", workers(argv))
	require.False(t, proxyKinds["asyncsip-4loops"].supports("sleep"))
	require.NotContains(t, proxyKinds, "asyncsip-w1")
}
