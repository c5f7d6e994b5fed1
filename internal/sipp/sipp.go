// Package sipp runs SIPp (Debian package sip-tester) from Go tests, on
// 127.0.0.1 only, bounded in time, and reads its statistics.
//
//	uas := sipp.Start(t, sipp.Config{Scenario: "uas", LocalPort: 5090})
//	res := sipp.Run(t, sipp.Config{Scenario: "uac", Remote: proxy, Service: "bob",
//		Calls: 100, Rate: 50, Timeout: 30 * time.Second})
//	require.Zero(t, res.Failed)
//
// README tests (readme.go) run the `sipp …` lines a README shows, verbatim
// except for ports: ReadmeCommands, MapPorts, RunCommand, StartCommand, and
// StartGoRun for the README's `go run <pkg> …` line.
package sipp

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/asyncsip/asyncsip/internal/testenv"
)

// Config describes one SIPp instance.
type Config struct {
	// Scenario is a built-in scenario name ("uac", "uas", "regexp", …) or
	// the path of an XML scenario file.
	Scenario string
	// Remote is the target "host:port" (UAC side); empty for a UAS.
	Remote string
	// LocalPort is SIPp's own port (-p); 0 picks a free port (SIPp's own
	// default, 5060 and up, would cross-talk with other tests' peers).
	LocalPort int
	// Service is the user part of the Request-URI (-s).
	Service string
	// Rate is the call rate per second (-r); 0 means SIPp's default (10).
	Rate float64
	// Calls stops SIPp after that many calls (-m); 0 runs until Timeout.
	Calls int
	// Limit caps simultaneous calls (-l).
	Limit int
	// Timeout bounds the whole run (default 60 s); SIPp is killed after it.
	Timeout time.Duration
	// Keys are -key name value pairs for [name] in scenarios.
	Keys map[string]string
	// Args are extra raw arguments.
	Args []string
}

// Result is what one SIPp run reported.
type Result struct {
	Successful, Failed int
	ExitCode           int
	Output             string // stdout+stderr, for failure messages
	Errors             string // the error log (unexpected messages)
	Elapsed            time.Duration
}

// Path returns the sipp binary, or skips the test (fails under CI=true).
func Path(t testing.TB) string { return testenv.SIPp(t) }

// Process is a SIPp running in the background (typically a UAS).
type Process struct {
	t      testing.TB
	cmd    *exec.Cmd
	out    *bytes.Buffer
	dir    string
	done   chan struct{}
	result Result
	cancel context.CancelFunc
}

func command(t testing.TB, ctx context.Context, cfg Config) (*exec.Cmd, string, int) {
	bin := Path(t)
	dir := t.TempDir()
	args := []string{}
	if strings.HasSuffix(cfg.Scenario, ".xml") {
		abs, err := filepath.Abs(cfg.Scenario)
		if err != nil {
			t.Fatalf("sipp: scenario path: %v", err)
		}
		args = append(args, "-sf", abs)
	} else {
		args = append(args, "-sn", cfg.Scenario)
	}
	args = append(args, "-i", "127.0.0.1", "-nostdin", "-trace_stat", "-stf", filepath.Join(dir, "stat.csv"),
		"-fd", "1", "-trace_err", "-error_file", filepath.Join(dir, "errors.log"), "-max_socket", "1024")
	if cfg.LocalPort <= 0 {
		cfg.LocalPort = testenv.FreeUDPPort(t)
	}
	args = append(args, "-p", strconv.Itoa(cfg.LocalPort))
	if cfg.Service != "" {
		args = append(args, "-s", cfg.Service)
	}
	if cfg.Rate > 0 {
		args = append(args, "-r", strconv.FormatFloat(cfg.Rate, 'f', -1, 64))
	}
	if cfg.Calls > 0 {
		args = append(args, "-m", strconv.Itoa(cfg.Calls))
	}
	if cfg.Limit > 0 {
		args = append(args, "-l", strconv.Itoa(cfg.Limit))
	}
	for k, v := range cfg.Keys {
		args = append(args, "-key", k, v)
	}
	args = append(args, cfg.Args...)
	if cfg.Remote != "" {
		args = append(args, cfg.Remote)
	}
	return newCmd(ctx, bin, args, dir), dir, cfg.LocalPort
}

// newCmd prepares SIPp with args, run from dir, in its own process group.
func newCmd(ctx context.Context, bin string, args []string, dir string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = dir
	// Its own process group (killed whole on timeout), and killed with the
	// test binary if that dies first.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 2 * time.Second
	return cmd
}

func timeoutOf(cfg Config) time.Duration {
	if cfg.Timeout <= 0 {
		return 60 * time.Second
	}
	return cfg.Timeout
}

// Run runs SIPp in the foreground until it exits or cfg.Timeout passes.
func Run(t testing.TB, cfg Config) Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeoutOf(cfg))
	defer cancel()
	cmd, dir, _ := command(t, ctx, cfg)
	return run(t, ctx, cmd, dir, timeoutOf(cfg))
}

// run runs cmd to its end and collects its result from dir.
func run(t testing.TB, ctx context.Context, cmd *exec.Cmd, dir string, timeout time.Duration) Result {
	t.Helper()
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	err := cmd.Run()
	res := collect(dir, &out, cmd, err)
	res.Elapsed = time.Since(start)
	if ctx.Err() != nil {
		t.Logf("sipp: killed after %v (timeout)", timeout)
	}
	return res
}

// Start runs SIPp in the background; it is stopped (SIGUSR1, then killed)
// at the end of the test, or by Stop.
func Start(t testing.TB, cfg Config) *Process {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeoutOf(cfg))
	cmd, dir, port := command(t, ctx, cfg)
	return start(t, cmd, dir, cancel, port)
}

// start starts cmd in the background and waits (bounded) until it holds
// UDP port on 127.0.0.1 or has exited.
func start(t testing.TB, cmd *exec.Cmd, dir string, cancel context.CancelFunc, port int) *Process {
	t.Helper()
	p := &Process{t: t, cmd: cmd, out: &bytes.Buffer{}, dir: dir, done: make(chan struct{}), cancel: cancel}
	cmd.Stdout, cmd.Stderr = p.out, p.out
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("sipp: start: %v", err)
	}
	go func() {
		err := cmd.Wait()
		p.result = collect(dir, p.out, cmd, err)
		close(p.done)
	}()
	t.Cleanup(func() { p.Stop() })
	// Ready once it holds its port (bounded; a SIPp that exits at once is
	// reported by its result).
	testenv.Poll(5*time.Second, func() bool {
		select {
		case <-p.done:
			return true
		default:
			return port > 0 && testenv.UDPPortBound(port)
		}
	})
	return p
}

// Stop ends a background SIPp and returns its result.
func (p *Process) Stop() Result {
	select {
	case <-p.done:
	default:
		// SIGUSR1 makes SIPp stop gracefully and write its statistics.
		_ = p.cmd.Process.Signal(syscall.SIGUSR1)
		select {
		case <-p.done:
		case <-time.After(3 * time.Second):
			p.cancel()
			<-p.done
		}
	}
	p.cancel()
	return p.result
}

func collect(dir string, out *bytes.Buffer, cmd *exec.Cmd, err error) Result {
	res := Result{Output: out.String(), ExitCode: -1}
	if cmd.ProcessState != nil {
		res.ExitCode = cmd.ProcessState.ExitCode()
	}
	_ = err
	if b, e := os.ReadFile(filepath.Join(dir, "errors.log")); e == nil {
		res.Errors = string(b)
	}
	res.Successful, res.Failed = readStats(filepath.Join(dir, "stat.csv"))
	return res
}

// readStats reads the cumulative successful and failed call counts from
// the last line of SIPp's statistics file.
func readStats(path string) (ok, failed int) {
	f, err := os.Open(path)
	if err != nil {
		return 0, 0
	}
	defer f.Close()
	var header, last []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		cols := strings.Split(sc.Text(), ";")
		if header == nil {
			header = cols
			continue
		}
		last = cols
	}
	for i, h := range header {
		if i >= len(last) {
			break
		}
		n, _ := strconv.Atoi(strings.TrimSpace(last[i]))
		switch h {
		case "SuccessfulCall(C)":
			ok = n
		case "FailedCall(C)":
			failed = n
		}
	}
	return ok, failed
}

// String summarizes a result for test messages.
func (r Result) String() string {
	return fmt.Sprintf("sipp exit=%d successful=%d failed=%d elapsed=%v\n--- output (tail) ---\n%s\n--- errors (head) ---\n%s",
		r.ExitCode, r.Successful, r.Failed, r.Elapsed.Round(time.Millisecond), tail(r.Output, 2000), head(r.Errors, 3000))
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

func head(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// Wait waits up to within for a background SIPp to exit by itself (e.g.
// after -m calls) and returns its result; after that it is stopped as by
// Stop, and the result tells so (ExitCode -1 when killed).
func (p *Process) Wait(within time.Duration) Result {
	select {
	case <-p.done:
		p.cancel()
		return p.result
	case <-time.After(within):
		p.t.Logf("sipp: still running after %v, stopping it", within)
		return p.Stop()
	}
}
