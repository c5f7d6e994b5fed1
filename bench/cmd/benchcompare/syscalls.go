package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// msgsPerCall is the number of SIP messages the proxy receives per relayed
// call of bench/sipp/uac.xml: INVITE, 180, 200, ACK, BYE, 200 (it sends 7:
// those six and its 100 Trying).
const msgsPerCall = 6

// Syscall counting tools (-syscall-tool).
const (
	toolAuto   = "auto"   // perf when its syscall tracepoints can be counted, else strace
	toolPerf   = "perf"   // perf stat -e 'syscalls:sys_enter_*' -p PIDS: counted in the kernel
	toolStrace = "strace" // strace -c -f -p PID...: ptrace, slows every syscall of the proxy
	toolOff    = "off"
)

// SyscallCount is the syscall pass of one proxy: a short SIPp run at the
// fixed rate, after the timed measurements, with every syscall of the
// proxy's processes and threads counted.
type SyscallCount struct {
	Tool     string     `json:"tool"`     // command line of the counter, without the PIDs
	Rate     float64    `json:"rate"`     // calls/s of the traced run
	Seconds  float64    `json:"seconds"`  // wall time of the traced SIPp run (the counter starts before it, stops right after)
	Calls    int        `json:"calls"`    // calls completed in the traced run
	Retrans  int        `json:"retrans"`  // retransmissions the caller sent to the proxy
	Messages int        `json:"messages"` // SIP messages the proxy received: 6 per completed call + Retrans
	Total    int        `json:"total"`    // syscalls counted
	Top      []SysCount `json:"top"`      // per syscall, most frequent first
	OK       bool       `json:"ok"`       // the traced SIPp run passed (no failed call, on time)
	Err      string     `json:"err,omitempty"`
}

// SysCount is the count of one syscall.
type SysCount struct {
	Name  string `json:"name"`
	Count int    `json:"count"`
}

// PerMessage is syscalls per SIP message received, 0 when not measured.
func (s *SyscallCount) PerMessage() float64 {
	if s == nil || s.Err != "" || s.Messages == 0 {
		return 0
	}
	return float64(s.Total) / float64(s.Messages)
}

// ErrNoCounts is returned for counter output without a table of counts.
var ErrNoCounts = errors.New("benchcompare: no syscall counts in the output")

// parseStraceSummary reads the table `strace -c` prints (% time, seconds,
// usecs/call, calls, errors, syscall; errors may be blank), returning the
// counts by syscall, most frequent first, and their total.
func parseStraceSummary(out string) ([]SysCount, int, error) {
	var counts []SysCount
	total, inTable, sawTotal := 0, false, false
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		f := strings.Fields(line)
		switch {
		case strings.HasPrefix(line, "% time"):
			inTable = true
		case !inTable || len(f) == 0 || strings.HasPrefix(line, "---"):
		case f[len(f)-1] == "total":
			if len(f) < 4 {
				return nil, 0, fmt.Errorf("%w: bad total line %q", ErrNoCounts, line)
			}
			n, err := strconv.Atoi(f[3])
			if err != nil {
				return nil, 0, fmt.Errorf("%w: bad total line %q", ErrNoCounts, line)
			}
			total, sawTotal, inTable = n, true, false
		default:
			if len(f) < 5 || len(f) > 6 {
				return nil, 0, fmt.Errorf("%w: bad line %q", ErrNoCounts, line)
			}
			n, err := strconv.Atoi(f[3])
			if err != nil {
				return nil, 0, fmt.Errorf("%w: bad line %q", ErrNoCounts, line)
			}
			counts = append(counts, SysCount{Name: f[len(f)-1], Count: n})
		}
	}
	if !sawTotal {
		return nil, 0, ErrNoCounts
	}
	sum := 0
	for _, c := range counts {
		sum += c.Count
	}
	if sum != total {
		return nil, 0, fmt.Errorf("%w: rows add up to %d, total says %d", ErrNoCounts, sum, total)
	}
	sortCounts(counts)
	return counts, total, nil
}

// otherSyscalls names the syscalls perf counted in raw_syscalls:sys_enter
// but not one by one.
const otherSyscalls = "(others)"

// parsePerfStat reads `perf stat` output on syscall tracepoints: "COUNT
// syscalls:sys_enter_NAME" lines (zeros and "<not counted>", a process
// that never ran, left out) and, when counted, "COUNT
// raw_syscalls:sys_enter", every syscall, whose excess over the named ones
// becomes "(others)". It returns the counts, most frequent first, and
// their total.
func parsePerfStat(out string) ([]SysCount, int, error) {
	var counts []SysCount
	sum, raw, seen, sawRaw := 0, 0, false, false
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 {
			continue
		}
		ev := f[len(f)-1]
		if len(f) > 2 && f[0] == "<not" {
			ev = f[2]
		}
		isRaw := ev == "raw_syscalls:sys_enter"
		if !isRaw && !strings.HasPrefix(ev, "syscalls:sys_enter_") {
			continue
		}
		seen = true
		sawRaw = sawRaw || isRaw
		n, err := strconv.Atoi(strings.ReplaceAll(f[0], ",", ""))
		if err != nil || n == 0 {
			continue // "<not counted>", or a syscall never made
		}
		if isRaw {
			raw = n
			continue
		}
		counts = append(counts, SysCount{Name: strings.TrimPrefix(ev, "syscalls:sys_enter_"), Count: n})
		sum += n
	}
	if !seen {
		return nil, 0, ErrNoCounts
	}
	total := sum
	if sawRaw {
		// The tracepoints are separate counters, enabled one after the
		// other: allow the named ones a few more than the raw total.
		if sum > raw+len(counts) {
			return nil, 0, fmt.Errorf("%w: named syscalls add up to %d, raw_syscalls:sys_enter counted %d", ErrNoCounts, sum, raw)
		}
		if raw > sum {
			counts = append(counts, SysCount{Name: otherSyscalls, Count: raw - sum})
		}
		total = max(raw, sum)
	}
	sortCounts(counts)
	return counts, total, nil
}

// perfSyscalls are the syscalls the perf pass counts one by one (besides
// the total, raw_syscalls:sys_enter): the message path of the three
// proxies and their runtimes' waiting and waking. Opening and closing a
// tracepoint event is slow (tens of ms each), so not all ~350.
var perfSyscalls = []string{
	"recvmmsg", "sendmmsg", "recvfrom", "sendto", "recvmsg", "sendmsg", "read", "write",
	"epoll_wait", "epoll_pwait", "epoll_ctl", "futex", "nanosleep", "clock_nanosleep", "sched_yield",
	"getpid", "gettid", "tgkill", "rt_sigreturn", "mmap", "munmap", "madvise", "brk",
	"select", "pselect6", "poll", "ppoll", "pause", "clock_gettime", "gettimeofday",
}

// perfEvents is the -e list of the perf pass: the total and every syscall
// of perfSyscalls this kernel has a tracepoint for.
func perfEvents() []string {
	ev := []string{"raw_syscalls:sys_enter"}
	for _, s := range perfSyscalls {
		for _, root := range []string{"/sys/kernel/tracing", "/sys/kernel/debug/tracing"} {
			if _, err := os.Stat(filepath.Join(root, "events", "syscalls", "sys_enter_"+s)); err == nil {
				ev = append(ev, "syscalls:sys_enter_"+s)
				break
			}
		}
	}
	return ev
}

func sortCounts(c []SysCount) {
	sort.SliceStable(c, func(i, j int) bool {
		if c[i].Count != c[j].Count {
			return c[i].Count > c[j].Count
		}
		return c[i].Name < c[j].Name
	})
}

// perfWorks reports whether perf can count syscall tracepoints here (in a
// VM without hardware counters, tracepoints usually still work).
func perfWorks(ctx context.Context) bool {
	if _, err := exec.LookPath("perf"); err != nil {
		return false
	}
	out, err := exec.CommandContext(ctx, "perf", "stat", "-x", ",", "-e", "raw_syscalls:sys_enter", "true").CombinedOutput()
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Split(line, ",")
		if len(f) > 2 && strings.Contains(line, "raw_syscalls:sys_enter") {
			n, err := strconv.Atoi(f[0])
			return err == nil && n > 0
		}
	}
	return false
}

// chooseSyscallTool resolves -syscall-tool auto.
func chooseSyscallTool(ctx context.Context, tool string) string {
	if tool != toolAuto {
		return tool
	}
	if perfWorks(ctx) {
		return toolPerf
	}
	return toolStrace
}

// counterArgv is the command line that counts the syscalls of pids into
// outPath until SIGINT.
func counterArgv(tool, outPath string, pids []int) []string {
	ids := make([]string, len(pids))
	for i, p := range pids {
		ids[i] = strconv.Itoa(p)
	}
	if tool == toolPerf {
		argv := []string{"perf", "stat"}
		for _, e := range perfEvents() {
			argv = append(argv, "-e", e)
		}
		return append(argv, "-o", outPath, "-p", strings.Join(ids, ","))
	}
	argv := []string{"strace", "-c", "-f", "-o", outPath}
	for _, id := range ids {
		argv = append(argv, "-p", id)
	}
	return argv
}

// syscallPass counts the proxy's syscalls over a SIPp run of d at rate.
func (b *block) syscallPass(ctx context.Context, rate float64, d time.Duration) *SyscallCount {
	o := b.e.o
	res := &SyscallCount{Tool: toolName(o.SyscallTool), Rate: rate}
	pids, err := treePIDs(b.proxy.PID())
	if err != nil {
		res.Err = err.Error()
		return res
	}
	var st Step
	top, total, err := countSyscalls(ctx, o.SyscallTool, pids, o.SIPpCPU, filepath.Join(b.dir, "syscalls"), func() {
		st = RunUAC(ctx, UAC{
			Scenario: filepath.Join(o.Repo, "bench", "sipp", "uac.xml"), Remote: fmt.Sprintf("127.0.0.1:%d", o.Port),
			LocalPort: o.UACPort, Rate: rate, Calls: max(1, int(rate*d.Seconds())), CPU: o.SIPpCPU,
			Dir: filepath.Join(b.dir, "syscalls", "sipp"), Timeout: d + 60*time.Second, Buffer: o.SIPpBuffer,
		})
		// SIPp ends once the caller has the 200 to its last BYE: the
		// proxy has received every message of every call by then.
	})
	res.Seconds = st.Wall
	st.Late = st.Wall > d.Seconds()*1.1+2
	res.Calls, res.Retrans, res.OK = st.Successful, st.Retrans, st.OK()
	res.Messages = msgsPerCall*st.Successful + st.Retrans
	if err != nil {
		res.Err = err.Error()
		return res
	}
	res.Top, res.Total = top, total
	if len(res.Top) > 12 {
		res.Top = res.Top[:12]
	}
	logf("  %s syscalls (%s): %d for %d messages = %.2f per message received (SIPp: %s)",
		b.name, res.Tool, res.Total, res.Messages, res.PerMessage(), st)
	return res
}

// toolName is how the report names a counting tool.
func toolName(tool string) string {
	switch tool {
	case toolPerf:
		return "perf stat -e raw_syscalls:sys_enter -e syscalls:sys_enter_NAME..."
	case toolStrace:
		return "strace -c -f"
	}
	return tool
}

// countSyscalls counts the syscalls of pids (every thread of each, and
// children they start) with tool (perf or strace) while during runs. The
// counter is pinned to cpu (the SIPp CPU: it takes no CPU from the proxy
// beyond what it adds to each syscall); its output goes to dir.
func countSyscalls(ctx context.Context, tool string, pids []int, cpu int, dir string, during func()) ([]SysCount, int, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, 0, err
	}
	outPath, logPath := filepath.Join(dir, tool+".txt"), filepath.Join(dir, tool+".log")
	counter, err := StartProc(tool, cpu, logPath, []string{"LC_ALL=C"}, counterArgv(tool, outPath, pids)...)
	if err != nil {
		return nil, 0, err
	}
	defer counter.Stop(time.Second)
	// strace says when it has attached to each process; perf counts from
	// the start, give it a moment to open its events.
	waitFor(5*time.Second, func() bool {
		if counter.Exited() {
			return true
		}
		if tool == toolPerf {
			return time.Since(counter.started) > 300*time.Millisecond
		}
		lg, _ := os.ReadFile(logPath)
		return strings.Count(string(lg), "attached") >= len(pids)
	})
	if counter.Exited() {
		return nil, 0, fmt.Errorf("%s exited: %s", tool, tailFile(logPath, 300))
	}
	if ctx.Err() != nil {
		return nil, 0, ctx.Err()
	}
	during()
	_ = counter.cmd.Process.Signal(syscall.SIGINT) // both print their counts on SIGINT
	// perf stops counting at once but takes seconds to close its events.
	if err := counter.Wait(60 * time.Second); err != nil && !counter.Exited() {
		return nil, 0, err
	}
	out, err := os.ReadFile(outPath)
	if err != nil {
		return nil, 0, fmt.Errorf("%s: %w: %s", tool, err, tailFile(logPath, 300))
	}
	parse := parseStraceSummary
	if tool == toolPerf {
		parse = parsePerfStat
	}
	top, total, err := parse(string(out))
	if err != nil {
		return nil, 0, fmt.Errorf("%s: %w: %s", tool, err, tailFile(logPath, 300))
	}
	return top, total, nil
}

// treePIDs returns pid and its live descendants, pid first.
func treePIDs(pid int) ([]int, error) {
	all, err := procTable()
	if err != nil {
		return nil, err
	}
	if _, ok := all[pid]; !ok {
		return nil, fmt.Errorf("pid %d: %w", pid, os.ErrNotExist)
	}
	out := []int{pid}
	for id := range all {
		if id != pid && descends(all, id, pid) {
			out = append(out, id)
		}
	}
	slices.Sort(out[1:])
	return out, nil
}
