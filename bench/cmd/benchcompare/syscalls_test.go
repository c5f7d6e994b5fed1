package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/asyncsip/asyncsip/internal/testenv"
	"github.com/stretchr/testify/require"
)

func readTestdata(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	require.NoError(t, err)
	return string(b)
}

// TestParseStraceSummary reads `strace -c -f -p` output captured from
// benchproxy relaying 1000 calls/s (5 s): rows with and without an errors
// column, sorted by count here (strace sorts by time).
func TestParseStraceSummary(t *testing.T) {
	top, total, err := parseStraceSummary(readTestdata(t, "strace-asyncsip.txt"))
	require.NoError(t, err)
	require.Equal(t, 40250, total)
	require.Len(t, top, 21)
	require.Equal(t, []SysCount{{"nanosleep", 14162}, {"futex", 7107}, {"epoll_pwait", 6539}, {"sendmmsg", 5873}, {"recvmmsg", 5842}}, top[:5])
	require.Equal(t, SysCount{"set_robust_list", 1}, top[len(top)-1], "ties by name")

	top, total, err = parseStraceSummary(readTestdata(t, "strace-kamailio.txt"))
	require.NoError(t, err)
	sum := 0
	for _, c := range top {
		sum += c.Count
	}
	require.Equal(t, total, sum)
	require.Positive(t, total)

	for name, bad := range map[string]string{
		"empty":       "",
		"no total":    "% time     seconds  usecs/call     calls    errors syscall\n------ ----------- ----------- --------- --------- ----------------\n 58.93    1.444138         203      7107       127 futex\n",
		"bad count":   "% time     seconds  usecs/call     calls    errors syscall\n 58.93    1.444138         203      many       127 futex\n100.00    1.444138         203      7107       127 total\n",
		"sum differs": "% time     seconds  usecs/call     calls    errors syscall\n 58.93    1.444138         203      7107       127 futex\n100.00    1.444138         203      7108       127 total\n",
		"perf output": readTestdata(t, "perf-kamailio.txt"),
	} {
		_, _, err := parseStraceSummary(bad)
		require.ErrorIs(t, err, ErrNoCounts, name)
	}
}

// TestParsePerfStat reads `perf stat -e raw_syscalls:sys_enter -e
// syscalls:sys_enter_NAME...` output captured from benchproxy (one
// process) and Kamailio (8 processes) at 1000 calls/s for 5 s, on a
// machine loaded by other work: only the format matters here.
func TestParsePerfStat(t *testing.T) {
	top, total, err := parsePerfStat(readTestdata(t, "perf-asyncsip.txt"))
	require.NoError(t, err)
	require.Equal(t, 7881, total)
	require.Equal(t, []SysCount{{"nanosleep", 2907}, {"futex", 1214}, {"epoll_pwait", 1175}, {"sendmmsg", 1163}, {"recvmmsg", 983}, {"sendto", 200}}, top[:6])
	require.Contains(t, top, SysCount{otherSyscalls, 7881 - (983 + 1163 + 200 + 1175 + 1214 + 2907 + 38 + 56 + 56 + 56 + 23 + 2)})

	top, total, err = parsePerfStat(readTestdata(t, "perf-kamailio.txt"))
	require.NoError(t, err)
	require.Equal(t, 7228, total)
	// The named ones add up to the total here: no "(others)".
	require.Equal(t, []SysCount{{"sendto", 4267}, {"recvfrom", 2911}, {"pause", 19}, {"rt_sigreturn", 19}, {"futex", 9}, {"pselect6", 3}}, top)

	// Without the raw total the named ones are the total; thousands
	// separators and "<not counted>" are read.
	top, total, err = parsePerfStat("  1,234      syscalls:sys_enter_write\n   <not counted>      syscalls:sys_enter_read\n 0 syscalls:sys_enter_close\n")
	require.NoError(t, err)
	require.Equal(t, 1234, total)
	require.Equal(t, []SysCount{{"write", 1234}}, top)
	top, total, err = parsePerfStat("  <not counted>      raw_syscalls:sys_enter\n   <not counted>      syscalls:sys_enter_read\n")
	require.NoError(t, err)
	require.Zero(t, total)
	require.Empty(t, top)

	for name, bad := range map[string]string{
		"empty":           "",
		"strace output":   readTestdata(t, "strace-asyncsip.txt"),
		"named above raw": "  10      raw_syscalls:sys_enter\n  100      syscalls:sys_enter_write\n",
	} {
		_, _, err := parsePerfStat(bad)
		require.ErrorIs(t, err, ErrNoCounts, name)
	}
}

func TestSyscallReport(t *testing.T) {
	s := &SyscallCount{Tool: "strace -c -f", Rate: 1000, Seconds: 5.2, Calls: 5000, Retrans: 2, Messages: 30002, Total: 45003,
		Top: []SysCount{{"recvmmsg", 30002}, {"sendmmsg", 15001}}, OK: true}
	require.InDelta(t, 1.5, s.PerMessage(), 1e-9)
	require.Equal(t, "1.50", syscallCell(s))
	d := syscallDetails(s)
	require.Contains(t, d, "45003 for 30002 SIP messages received (5000 calls × 6 + 2 retransmissions) = 1.50 per message received")
	require.Contains(t, d, "recvmmsg                 30002   1.000/msg")
	s.OK = false
	require.Equal(t, "1.50 (run failed)", syscallCell(s))
	s.Err = "strace: exited"
	require.Equal(t, "–", syscallCell(s))
	require.Contains(t, syscallDetails(s), "not measured: strace: exited")
	require.Equal(t, "–", syscallCell(nil))
}

func TestCounterArgv(t *testing.T) {
	require.Equal(t, []string{"strace", "-c", "-f", "-o", "/o", "-p", "1", "-p", "22"}, counterArgv(toolStrace, "/o", []int{1, 22}))
	perf := counterArgv(toolPerf, "/o", []int{1, 22})
	require.Equal(t, []string{"perf", "stat", "-e", "raw_syscalls:sys_enter"}, perf[:4])
	require.Equal(t, []string{"-o", "/o", "-p", "1,22"}, perf[len(perf)-4:])
}

// TestTreePIDs starts a shell with a child and finds both.
func TestTreePIDs(t *testing.T) {
	if _, err := exec.LookPath("taskset"); err != nil {
		t.Skip("taskset (util-linux) not installed")
	}
	p, err := StartProc("tree", 0, filepath.Join(t.TempDir(), "tree.log"), nil, "sh", "-c", "sleep 30 & wait")
	require.NoError(t, err)
	defer p.Stop(time.Second)
	var pids []int
	require.True(t, testenv.Poll(10*time.Second, func() bool {
		pids, err = treePIDs(p.PID())
		return err == nil && len(pids) == 2
	}), "pids %v, err %v", pids, err)
	require.Equal(t, p.PID(), pids[0])
	p.Stop(time.Second)
	_, err = treePIDs(p.PID())
	require.ErrorIs(t, err, os.ErrNotExist)
}

// TestCountSyscalls counts the syscalls of a shell that writes in a loop
// with each tool this machine has: the writes must be among them.
func TestCountSyscalls(t *testing.T) {
	if _, err := exec.LookPath("taskset"); err != nil {
		t.Skip("taskset (util-linux) not installed")
	}
	tools := []string{toolStrace}
	if perfWorks(context.Background()) {
		tools = append(tools, toolPerf)
	}
	for _, tool := range tools {
		t.Run(tool, func(t *testing.T) {
			if _, err := exec.LookPath(tool); err != nil {
				testenv.Need(t, tool, "apt-get install strace, or run make test")
			}
			dir := t.TempDir()
			p, err := StartProc("writer", 0, filepath.Join(dir, "writer.log"), nil,
				"sh", "-c", "while :; do echo x >/dev/null; sleep 0.01; done")
			require.NoError(t, err)
			defer p.Stop(time.Second)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			top, total, err := countSyscalls(ctx, tool, []int{p.PID()}, 0, filepath.Join(dir, "count"), func() {
				time.Sleep(500 * time.Millisecond)
			})
			if err != nil && tool == toolStrace && strings.Contains(err.Error(), "Operation not permitted") {
				t.Skipf("ptrace not permitted here: %v", err)
			}
			require.NoError(t, err)
			names := map[string]int{}
			sum := 0
			for _, c := range top {
				names[c.Name] = c.Count
				sum += c.Count
			}
			require.Equal(t, total, sum)
			require.Positive(t, names["write"], "counts %v", top)
		})
	}
}
