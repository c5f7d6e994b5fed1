package sipp

// README-driven tests: the command lines a README shows are extracted and
// run as written, so a README cannot drift from what works.
//
//	cmds := sipp.ReadmeCommands(t, "README.md")         // the `sipp …` lines
//	ports := map[int]int{5060: proxyPort, 5080: uasPort}
//	uas := sipp.StartCommand(t, cmds[0].MapPorts(ports), root, time.Minute)
//	res := sipp.RunCommand(t, cmds[1].MapPorts(ports), root, time.Minute)
//	require.Zero(t, res.ExitCode, res.String())
//
// The only change a test may make to a line is MapPorts: the README's fixed
// ports (5060, 5080, …) are replaced by free ones so that tests running at
// the same time on one machine do not cross-talk. RunCommand and
// StartCommand add nothing but output flags (statistics file, error log,
// -nostdin) so that the result can be read.

import (
	"bytes"
	"context"
	"fmt"
	"github.com/asyncsip/asyncsip/internal/testenv"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Command is one command line found in a fenced code block of a README.
type Command struct {
	// Source is "file:line" of the line, for failure messages.
	Source string
	// Program is the first word ("sipp", "go", …).
	Program string
	// Args are the words after the program, unquoted.
	Args []string
}

// String renders the command (quoting is not reproduced).
func (c Command) String() string {
	return c.Source + ": " + c.Program + " " + strings.Join(c.Args, " ")
}

// ReadmeCommands returns every `sipp …` command line of the fenced code
// blocks of the Markdown file at path, in order. It fails the test when
// there is none or when a line cannot be run as written (see ReadmeLines).
func ReadmeCommands(t testing.TB, path string) []Command {
	t.Helper()
	return ReadmeLines(t, path, "sipp")
}

// ReadmeLines returns every command line of the fenced code blocks of the
// Markdown file at path whose first word is program, in order. A leading
// "$ " prompt and a trailing " &" are dropped. Words are split as a POSIX
// shell splits plain words, '…' and "…" quoting and backslash escapes; a
// line using any other shell feature (variables, substitution, pipes,
// redirection, ;, &&) fails the test, since it could not be run verbatim
// without a shell. It fails the test when no line matches.
func ReadmeLines(t testing.TB, path, program string) []Command {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("sipp: reading README: %v", err)
	}
	var cmds []Command
	inBlock := false
	for i, line := range strings.Split(string(b), "\n") {
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "```") {
			inBlock = !inBlock
			continue
		}
		if !inBlock {
			continue
		}
		trimmed = strings.TrimPrefix(trimmed, "$ ")
		if !strings.HasPrefix(trimmed, program+" ") {
			continue
		}
		trimmed = strings.TrimSpace(strings.TrimSuffix(trimmed, "&"))
		src := fmt.Sprintf("%s:%d", filepath.Base(path), i+1)
		words, err := splitWords(trimmed)
		if err != nil {
			t.Fatalf("sipp: %s: %v", src, err)
		}
		cmds = append(cmds, Command{Source: src, Program: words[0], Args: words[1:]})
	}
	if len(cmds) == 0 {
		t.Fatalf("sipp: no `%s …` line in the code blocks of %s", program, path)
	}
	return cmds
}

// splitWords splits a command line into words, honouring '…', "…" and
// backslash escapes; other shell syntax is refused.
func splitWords(line string) ([]string, error) {
	var words []string
	var cur strings.Builder
	inWord := false
	for i := 0; i < len(line); i++ {
		ch := line[i]
		switch {
		case ch == ' ' || ch == '\t':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		case ch == '\'':
			j := strings.IndexByte(line[i+1:], '\'')
			if j < 0 {
				return nil, fmt.Errorf("unterminated ' in %q", line)
			}
			cur.WriteString(line[i+1 : i+1+j])
			i += j + 1
			inWord = true
		case ch == '"':
			j := strings.IndexByte(line[i+1:], '"')
			if j < 0 {
				return nil, fmt.Errorf("unterminated \" in %q", line)
			}
			inner := line[i+1 : i+1+j]
			if strings.ContainsAny(inner, "$`\\") {
				return nil, fmt.Errorf("shell expansion inside \"…\" cannot be run verbatim: %q", line)
			}
			cur.WriteString(inner)
			i += j + 1
			inWord = true
		case ch == '\\' && i+1 < len(line):
			cur.WriteByte(line[i+1])
			i++
			inWord = true
		case strings.IndexByte("$`|;&<>(){}*?", ch) >= 0:
			return nil, fmt.Errorf("shell syntax %q cannot be run verbatim: %q", ch, line)
		default:
			cur.WriteByte(ch)
			inWord = true
		}
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words, nil
}

// portRef matches a port after a colon: "127.0.0.1:5060", "udp:…:5060",
// "http://127.0.0.1:8080/route", "a:5070,b:5071".
var portRef = regexp.MustCompile(`:([0-9]{1,5})\b`)

// MapPorts returns a copy of c with the README's fixed ports replaced by
// the test's: every ":P" in an argument (addresses, listen specs, URLs,
// comma lists) and the value of "-p P" whose P is a key of ports. Other
// ports are left alone.
func (c Command) MapPorts(ports map[int]int) Command {
	out := c
	out.Args = make([]string, len(c.Args))
	for i, a := range c.Args {
		if i > 0 && c.Args[i-1] == "-p" {
			if p, err := strconv.Atoi(a); err == nil {
				if to, ok := ports[p]; ok {
					a = strconv.Itoa(to)
				}
			}
		}
		out.Args[i] = portRef.ReplaceAllStringFunc(a, func(m string) string {
			p, _ := strconv.Atoi(m[1:])
			if to, ok := ports[p]; ok {
				return ":" + strconv.Itoa(to)
			}
			return m
		})
	}
	return out
}

// Flag returns the value following flag in c's arguments ("" if absent).
func (c Command) Flag(flag string) string {
	for i := 0; i+1 < len(c.Args); i++ {
		if c.Args[i] == flag {
			return c.Args[i+1]
		}
	}
	return ""
}

// readmeCmd prepares SIPp for c, run from dir (a README's paths are
// relative to it), with only output flags added. It returns the command,
// the directory of its statistics and the UDP port it will bind (-p, or 0).
func readmeCmd(t testing.TB, ctx context.Context, c Command, dir string) (cmd *exec.Cmd, out string, port int) {
	t.Helper()
	if c.Program != "sipp" {
		t.Fatalf("sipp: %s is not a sipp command", c)
	}
	bin := Path(t)
	out = t.TempDir()
	args := []string{"-nostdin", "-trace_stat", "-stf", filepath.Join(out, "stat.csv"), "-fd", "1",
		"-trace_err", "-error_file", filepath.Join(out, "errors.log")}
	args = append(args, c.Args...)
	port, _ = strconv.Atoi(c.Flag("-p"))
	return newCmd(ctx, bin, args, dir), out, port
}

// RunCommand runs the README command c in the foreground from dir (the
// directory the README's relative paths start from) until it exits or
// timeout passes, and returns what SIPp reported.
func RunCommand(t testing.TB, c Command, dir string, timeout time.Duration) Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd, out, _ := readmeCmd(t, ctx, c, dir)
	res := run(t, ctx, cmd, out, timeout)
	t.Logf("sipp: %s: %s", c, firstLine(res))
	return res
}

// StartCommand runs the README command c in the background from dir, like
// Start: it returns once SIPp holds its -p port (bounded), and is stopped
// by Stop or at the end of the test; timeout bounds its whole life.
func StartCommand(t testing.TB, c Command, dir string, timeout time.Duration) *Process {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	cmd, out, port := readmeCmd(t, ctx, c, dir)
	return start(t, cmd, out, cancel, port)
}

func firstLine(r Result) string {
	return fmt.Sprintf("exit=%d successful=%d failed=%d", r.ExitCode, r.Successful, r.Failed)
}

// GoRun is a program a README starts with `go run <package> args…`, built
// and running in the background.
type GoRun struct {
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan struct{}
}

// StartGoRun builds the package of the README line c (`go run <pkg> args…`,
// the package relative to root) and starts the binary with c's arguments
// from dir, in its own process group. It returns once ready reports true
// (polled for at most 30 s after the build; the test fails otherwise or if
// the program exits first). The program is stopped with SIGTERM (SIGKILL
// after 5 s) at the end of the test, or by Stop.
func StartGoRun(t testing.TB, c Command, root, dir string, ready func() bool) *GoRun {
	t.Helper()
	if c.Program != "go" || len(c.Args) < 2 || c.Args[0] != "run" {
		t.Fatalf("sipp: %s is not a `go run <package> …` line", c)
	}
	bin := filepath.Join(t.TempDir(), filepath.Base(c.Args[1]))
	bctx, bcancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer bcancel()
	build := exec.CommandContext(bctx, goTool(), "build", "-o", bin, c.Args[1])
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("sipp: building %s: %v\n%s", c.Args[1], err, out)
	}
	g := &GoRun{cmd: exec.Command(bin, c.Args[2:]...), out: &syncBuffer{}, done: make(chan struct{})}
	g.cmd.Dir = dir
	g.cmd.Stdout, g.cmd.Stderr = g.out, g.out
	g.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := g.cmd.Start(); err != nil {
		t.Fatalf("sipp: starting %s: %v", bin, err)
	}
	go func() { _ = g.cmd.Wait(); close(g.done) }()
	t.Cleanup(g.Stop)
	exited := false
	ok := testenv.Poll(30*time.Second, func() bool {
		select {
		case <-g.done:
			exited = true
			return true
		default:
			return ready()
		}
	})
	if exited || !ok {
		g.Stop()
		t.Fatalf("sipp: %s did not become ready (exited=%v):\n%s", c, exited, g.Output())
	}
	return g
}

// Stop ends the program (SIGTERM to its process group, SIGKILL after 5 s)
// and waits for it. Calling it again does nothing.
func (g *GoRun) Stop() {
	select {
	case <-g.done:
		return
	default:
	}
	_ = syscall.Kill(-g.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-g.done:
	case <-time.After(5 * time.Second):
		_ = syscall.Kill(-g.cmd.Process.Pid, syscall.SIGKILL)
		<-g.done
	}
}

// Output returns what the program printed so far (stdout and stderr).
func (g *GoRun) Output() string { return g.out.String() }

// goTool returns the go command: $GO when set (the Makefile exports it),
// else "go" from PATH.
func goTool() string {
	if g := os.Getenv("GO"); g != "" {
		return g
	}
	return "go"
}

// syncBuffer is a bytes.Buffer safe for one writer and concurrent readers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
