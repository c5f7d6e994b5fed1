// Package sipp runs SIPp (Debian package sip-tester) from Go tests, on
// 127.0.0.1 only, bounded in time, and reads its statistics.
//
//	uas := sipp.Start(t, sipp.Config{Scenario: sipp.UAS})
//	// … the proxy relays to 127.0.0.1:uas.Port() …
//	res := sipp.Run(t, sipp.Config{Scenario: sipp.UAC, Remote: proxy, Service: "bob",
//		Calls: 100, Rate: 50, Timeout: 30 * time.Second})
//	require.Zero(t, res.Failed)
//
// UAC and UAS are Record-Route-aware scenarios shipped with this package
// (scenarios/): SIPp's built-in "uac" and "uas" ignore Record-Route, so
// their ACK and BYE do not follow an asyncsip proxy's signed route and are
// refused.
//
// README tests (readme.go) run the `sipp …` lines a README shows, verbatim
// except for ports: ReadmeCommands, MapPorts, RunCommand, StartCommand, and
// StartGoRun for the README's `go run <pkg> …` line.
package sipp

import (
	"bufio"
	"bytes"
	"context"
	"embed"
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

// Scenarios shipped with this package, for Config.Scenario.
const (
	// UAC places calls through a record-routing proxy (the remote):
	// INVITE, 200 with the proxy's signed Record-Route (checked), then ACK
	// and BYE to the callee's Contact with the route set in Route headers,
	// sent to the proxy. Service is the callee's user part.
	UAC = embeddedPrefix + "uac_call.xml"
	// UAS answers calls relayed by a record-routing proxy: 180 and 200 with
	// the INVITE's Record-Route copied verbatim (signature included), then
	// takes the ACK and answers the BYE; it checks that the INVITE carries
	// a signed Record-Route and that ACK and BYE came through the proxy.
	UAS = embeddedPrefix + "uas_call.xml"
)

// embeddedPrefix marks a Config.Scenario naming a file of scenarios/.
const embeddedPrefix = "internal/sipp:"

//go:embed scenarios/*.xml
var embedded embed.FS

// Config describes one SIPp instance.
type Config struct {
	// Scenario is a built-in scenario name ("uac", "uas", "regexp", …),
	// one of this package's (UAC, UAS), or the path of an XML scenario
	// file.
	Scenario string
	// Remote is the target "host:port" (UAC side); empty for a UAS.
	Remote string
	// LocalPort is SIPp's own port (-p); 0 picks a free port (SIPp's own
	// default, 5060 and up, would cross-talk with other tests' peers),
	// and another one if SIPp cannot bind it (taken meanwhile by another
	// process): Process.Port tells which.
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
	port   int
	done   chan struct{}
	result Result
	cancel context.CancelFunc
}

// Port returns the UDP port SIPp holds on 127.0.0.1.
func (p *Process) Port() int { return p.port }

// pickPort picks the port of a Config without one (a variable for
// TestStartPortTaken).
var pickPort = testenv.FreeUDPPort

func command(t testing.TB, ctx context.Context, cfg Config) (*exec.Cmd, string, int) {
	bin := Path(t)
	dir := t.TempDir()
	args := []string{}
	if name, ok := strings.CutPrefix(cfg.Scenario, embeddedPrefix); ok {
		b, err := embedded.ReadFile("scenarios/" + name)
		if err != nil {
			t.Fatalf("sipp: scenario %s: %v", cfg.Scenario, err)
		}
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatalf("sipp: writing scenario %s: %v", name, err)
		}
		args = append(args, "-sf", path)
	} else if strings.HasSuffix(cfg.Scenario, ".xml") {
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
		cfg.LocalPort = pickPort(t)
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

// bindAttempts bounds the ports tried for a Config without LocalPort.
const bindAttempts = 3

// Run runs SIPp in the foreground until it exits or cfg.Timeout passes.
// Without cfg.LocalPort, a run that could not bind the free port picked
// for it (taken meanwhile) is retried on another one.
func Run(t testing.TB, cfg Config) Result {
	t.Helper()
	for attempt := 1; ; attempt++ {
		ctx, cancel := context.WithTimeout(context.Background(), timeoutOf(cfg))
		cmd, dir, port := command(t, ctx, cfg)
		res := run(t, ctx, cmd, dir, timeoutOf(cfg))
		cancel()
		if !bindFailed(res) || cfg.LocalPort > 0 || attempt == bindAttempts {
			return res
		}
		t.Logf("sipp: port %d was taken by another process, trying another one", port)
	}
}

// bindFailed reports whether SIPp exited because it could not bind its
// port.
func bindFailed(res Result) bool {
	return res.ExitCode != 0 && strings.Contains(res.Output, "Unable to bind main socket")
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

// Start runs SIPp in the background and returns once it holds its UDP
// port (Process.Port) — checked to be SIPp's own socket, not another
// process's. Without cfg.LocalPort, a SIPp that could not bind the free
// port picked for it (taken meanwhile) is started again on another one;
// with cfg.LocalPort taken by another process the test fails. A SIPp that
// exits at once for another reason is returned, its Result tells why. It
// is stopped (SIGUSR1, then killed) at the end of the test, or by Stop.
func Start(t testing.TB, cfg Config) *Process {
	t.Helper()
	for attempt := 1; ; attempt++ {
		ctx, cancel := context.WithTimeout(context.Background(), timeoutOf(cfg))
		cmd, dir, port := command(t, ctx, cfg)
		p := start(t, cmd, dir, cancel, port)
		select {
		case <-p.done:
		default:
			if !p.holdsPort() {
				t.Fatalf("sipp: running but not holding port %d after %v\n%s", port, readyWait, p.Stop())
			}
			return p
		}
		res := p.Stop()
		switch {
		case !bindFailed(res):
			return p
		case cfg.LocalPort > 0:
			t.Fatalf("sipp: port %d is held by another process, SIPp could not bind it\n%s", port, res)
		case attempt == bindAttempts:
			t.Fatalf("sipp: %d free ports picked were taken before SIPp bound them\n%s", attempt, res)
		}
		t.Logf("sipp: port %d was taken by another process, trying another one", port)
	}
}

// start starts cmd in the background and waits (bounded) until it holds
// UDP port on 127.0.0.1 or has exited.
func start(t testing.TB, cmd *exec.Cmd, dir string, cancel context.CancelFunc, port int) *Process {
	t.Helper()
	p := &Process{t: t, cmd: cmd, out: &bytes.Buffer{}, dir: dir, port: port, done: make(chan struct{}), cancel: cancel}
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
	testenv.Poll(readyWait, func() bool {
		select {
		case <-p.done:
			return true
		default:
			return p.holdsPort()
		}
	})
	return p
}

// holdsPort reports whether the SIPp process holds its port (UDP, or a
// TCP listener for -t t1, tn, l1, ln): its own socket where /proc tells,
// else (UDP) anybody's.
func (p *Process) holdsPort() bool {
	if p.port <= 0 {
		return false
	}
	network := "udp"
	if t := transportArg(p.cmd.Args); strings.HasPrefix(t, "t") || strings.HasPrefix(t, "l") {
		network = "tcp"
	}
	if held, ok := testenv.ProcessHoldsPort(p.cmd.Process.Pid, network, p.port); ok {
		// Right after the fork, until execve closes them, the child has
		// copies of this process's descriptors: a socket this process
		// holds is not SIPp's.
		mine, _ := testenv.ProcessHoldsPort(os.Getpid(), network, p.port)
		return held && !mine
	}
	return network == "udp" && testenv.UDPPortBound(p.port)
}

// transportArg returns the value of SIPp's -t option in args ("u1", "t1"…),
// or "" when there is none (UDP).
func transportArg(args []string) string {
	for i := len(args) - 2; i >= 0; i-- {
		if args[i] == "-t" {
			return args[i+1]
		}
	}
	return ""
}

// readyWait bounds the wait for a started SIPp to hold its port.
const readyWait = 10 * time.Second

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
