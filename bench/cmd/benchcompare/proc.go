package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat times (100 on every
// Linux architecture Go supports).
const clockTicks = 100

// Proc is a process the driver started (pinned with taskset) and will stop.
type Proc struct {
	Name string
	cmd  *exec.Cmd
	log  *os.File
	done chan struct{}
	err  error
	// started is when the process was started.
	started time.Time
}

// StartProc starts argv pinned to cpu (taskset -c), with stdout and stderr
// in logPath, in a process group of its own.
func StartProc(name string, cpu int, logPath string, env []string, argv ...string) (*Proc, error) {
	f, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("%s: log: %w", name, err)
	}
	args := append([]string{"-c", strconv.Itoa(cpu)}, argv...)
	cmd := exec.Command("taskset", args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: start: %w", name, err)
	}
	p := &Proc{Name: name, cmd: cmd, log: f, done: make(chan struct{}), started: time.Now()}
	go func() {
		p.err = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	return p, nil
}

// PID is the process id (taskset execs the command, so it is the command's).
func (p *Proc) PID() int { return p.cmd.Process.Pid }

// Exited reports whether the process has ended already.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Wait waits up to d for the process to end on its own.
func (p *Proc) Wait(d time.Duration) error {
	select {
	case <-p.done:
		return p.err
	case <-time.After(d):
		return fmt.Errorf("%s: still running after %v", p.Name, d)
	}
}

// Stop sends SIGTERM to the process, then SIGKILL to its process group if
// it is still there after grace. It returns once the process is reaped.
func (p *Proc) Stop(grace time.Duration) {
	if p.Exited() {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	}
	// Children that outlived their parent (a Kamailio worker) share its group.
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
}

// CPUTicks returns user+system clock ticks used so far by pid and all its
// live descendants (Kamailio runs as a tree of processes).
func CPUTicks(pid int) (int64, error) {
	all, err := procTable()
	if err != nil {
		return 0, err
	}
	root, ok := all[pid]
	if !ok {
		return 0, fmt.Errorf("pid %d: %w", pid, os.ErrNotExist)
	}
	total := root.ticks
	for id, s := range all {
		if id != pid && descends(all, id, pid) {
			total += s.ticks
		}
	}
	return total, nil
}

// procStat is what the driver reads of one /proc/<pid>/stat.
type procStat struct {
	ppid  int
	ticks int64
}

// procTable reads /proc/<pid>/stat of every live process.
func procTable() (map[int]procStat, error) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	all := map[int]procStat{}
	for _, e := range ents {
		id, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue // gone meanwhile
		}
		ppid, ticks, err := parseStat(string(b))
		if err != nil {
			continue
		}
		all[id] = procStat{ppid, ticks}
	}
	return all, nil
}

// descends reports whether id is a descendant of pid in all.
func descends(all map[int]procStat, id, pid int) bool {
	for up, hops := all[id].ppid, 0; up > 1 && hops < 64; hops++ {
		if up == pid {
			return true
		}
		up = all[up].ppid
	}
	return false
}

// ErrBadStat is returned for a /proc/<pid>/stat line that cannot be read.
var ErrBadStat = errors.New("benchcompare: bad /proc stat line")

// parseStat reads ppid (field 4) and utime+stime (fields 14, 15) of a
// /proc/<pid>/stat line; the command name (field 2) may hold spaces.
func parseStat(line string) (ppid int, ticks int64, err error) {
	i := strings.LastIndexByte(line, ')')
	if i < 0 {
		return 0, 0, ErrBadStat
	}
	f := strings.Fields(line[i+1:]) // f[0] is field 3 (state)
	if len(f) < 13 {
		return 0, 0, ErrBadStat
	}
	ppid, err1 := strconv.Atoi(f[1])
	ut, err2 := strconv.ParseInt(f[11], 10, 64)
	stt, err3 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2, err3); err != nil {
		return 0, 0, fmt.Errorf("%w: %v", ErrBadStat, err)
	}
	return ppid, ut + stt, nil
}

// udpBound reports whether something is bound to 127.0.0.1:port (UDP).
func udpBound(port int) bool {
	b, err := os.ReadFile("/proc/net/udp")
	if err != nil {
		return false
	}
	want := fmt.Sprintf("0100007F:%04X", port)
	for _, line := range strings.Split(string(b), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) > 1 && f[1] == want {
			return true
		}
	}
	return false
}

// tcpListening reports whether something listens on 127.0.0.1:port (TCP).
func tcpListening(port int) bool {
	b, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		return false
	}
	want := fmt.Sprintf("0100007F:%04X", port)
	for _, line := range strings.Split(string(b), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) > 3 && f[1] == want && f[3] == "0A" {
			return true
		}
	}
	return false
}

// waitFor polls cond every 50 ms for up to d.
func waitFor(d time.Duration, cond func() bool) bool {
	end := time.Now().Add(d)
	for time.Now().Before(end) {
		if cond() {
			return true
		}
		time.Sleep(50 * time.Millisecond)
	}
	return cond()
}
