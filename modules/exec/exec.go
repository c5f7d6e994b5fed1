package exec

import (
	"errors"
	"fmt"
	"log/slog"
	osexec "os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/asyncsip/asyncsip/async"
	"github.com/asyncsip/asyncsip/reactor"
)

// Defaults of Config and Cmd.
const (
	// DefaultMaxCommands bounds the commands in flight per Runner.
	DefaultMaxCommands = 128
	// DefaultMaxOutput caps the bytes kept per stream (stdout, stderr).
	DefaultMaxOutput = 64 << 10
	// DefaultGrace is the time between SIGTERM and SIGKILL.
	DefaultGrace = time.Second
	// DefaultDrain is how long output is still read after the command
	// exited while something it started holds its pipes open.
	DefaultDrain = 100 * time.Millisecond
)

// Errors of this package. The errors delivered to a resume wrap them (and
// the underlying errno or os/exec error where there is one): branch with
// errors.Is.
var (
	// ErrStart means the command could not be started: not found, not
	// executable, a bad working directory, no descriptors left, no loop.
	// Nothing is running.
	ErrStart = errors.New("exec: cannot start command")
	// ErrExitStatus means the command exited with a non-zero status;
	// Result.ExitCode holds it and the output is in the Result.
	ErrExitStatus = errors.New("exec: non-zero exit status")
	// ErrSignaled means the command was killed by a signal that exec did
	// not send; Result.Signal holds it.
	ErrSignaled = errors.New("exec: killed by signal")
	// ErrTimeout means the command ran longer than Cmd.Timeout and was
	// killed; the Result holds what it printed until then. It wraps
	// async.ErrTimeout, so a route can test for either.
	ErrTimeout = fmt.Errorf("exec: kill timeout: %w", async.ErrTimeout)
	// ErrLoopClosed means the owner loop closed while the command ran; it
	// was killed.
	ErrLoopClosed = fmt.Errorf("exec: command killed: %w", reactor.ErrClosed)

	errOverloaded = fmt.Errorf("exec: too many commands running: %w", async.ErrOverloaded)
)

// Config configures a Runner. The zero value is usable.
type Config struct {
	// MaxCommands bounds the commands in flight, over all loops (default
	// DefaultMaxCommands). Beyond it a command completes at once with an
	// error wrapping async.ErrOverloaded. Each command holds up to four
	// descriptors while it runs: size RLIMIT_NOFILE accordingly.
	MaxCommands int
	// MaxOutput is the default of Cmd.MaxOutput (default DefaultMaxOutput).
	MaxOutput int
	// Grace is the default of Cmd.Grace (default DefaultGrace).
	Grace time.Duration
	// Drain is the default of Cmd.Drain (default DefaultDrain).
	Drain time.Duration
	// Logger receives the start-up choice of exit notification and
	// unexpected failures (default slog.Default()).
	Logger *slog.Logger
	// Observer, if not nil, receives the life of every command.
	Observer Observer

	// noPidfd forces the goroutine fallback (tests).
	noPidfd bool
}

// Runner starts commands and bounds how many run at once. One Runner is
// typically shared by every loop of a server; it is safe for concurrent
// use. It starts no goroutine and holds no descriptor of its own.
type Runner struct {
	cfg   Config
	log   *slog.Logger
	pidfd bool // exits are watched on pidfds; else one goroutine per command
	slots atomic.Int64
	stats counters
	loops sync.Map // *reactor.Loop → *loopState
}

// NewRunner returns a Runner. It probes once whether the kernel supports
// pidfds and logs the choice.
func NewRunner(cfg Config) *Runner {
	if cfg.MaxCommands <= 0 {
		cfg.MaxCommands = DefaultMaxCommands
	}
	if cfg.MaxOutput <= 0 {
		cfg.MaxOutput = DefaultMaxOutput
	}
	if cfg.Grace <= 0 {
		cfg.Grace = DefaultGrace
	}
	if cfg.Drain <= 0 {
		cfg.Drain = DefaultDrain
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	r := &Runner{cfg: cfg, log: cfg.Logger}
	err := errors.New("disabled by configuration")
	if !cfg.noPidfd {
		err = probePidfd()
	}
	r.pidfd = err == nil
	if r.pidfd {
		r.log.Debug("exec: command exits are watched on pidfds by the loops")
	} else {
		r.log.Info("exec: pidfd unavailable, one goroutine per command waits for its exit", "reason", err)
	}
	return r
}

// PidFD reports whether the runner watches exits on pidfds (no goroutine
// per command) rather than with the goroutine fallback.
func (r *Runner) PidFD() bool { return r.pidfd }

// Stats returns a snapshot of the runner's counters.
func (r *Runner) Stats() Stats { return r.stats.snapshot() }

var defaultRunner = sync.OnceValue(func() *Runner { return NewRunner(Config{}) })

// Default returns the Runner used by Command: created on first use with the
// default Config.
func Default() *Runner { return defaultRunner() }

// Command returns a Cmd that runs name with args on the Default runner. See
// Runner.Command.
func Command(name string, args ...string) *Cmd { return Default().Command(name, args...) }

// Command returns a Cmd that runs name with args. A name without a slash is
// looked up in PATH now, as os/exec does; a failed lookup is kept in Cmd.Err
// and reported when the command is started. Set the Cmd's fields before
// starting it.
func (r *Runner) Command(name string, args ...string) *Cmd {
	c := &Cmd{Path: name, Args: append([]string{name}, args...), runner: r}
	switch {
	case name == "":
		c.Err = fmt.Errorf("%w: empty command name", ErrStart)
	case !strings.Contains(name, "/"):
		p, err := osexec.LookPath(name)
		if err != nil {
			c.Err = fmt.Errorf("%w: %w", ErrStart, err)
		} else {
			c.Path = p
		}
	}
	return c
}

// Cmd describes a command to run. It is an async.Op[Result]: pass it to
// async.Await or async.Launch. Start copies what it needs, so one Cmd may be
// started many times, from any loop, as long as its fields are not changed
// meanwhile.
type Cmd struct {
	// Path is the program to run.
	Path string
	// Args holds the command line, including the program name as Args[0]
	// (Path when empty).
	Args []string
	// Env is the environment ("KEY=value"); nil inherits the process's.
	Env []string
	// Dir is the working directory; empty means the process's.
	Dir string
	// Stdin is written to the command's standard input, which is then
	// closed. Nil or empty: the command reads /dev/null.
	Stdin []byte
	// MaxOutput caps the bytes kept per stream; the rest is read and
	// discarded, and Result.Truncated is set. 0 means the runner's.
	MaxOutput int
	// Timeout, when > 0, bounds the command: after it the process group
	// gets SIGTERM, then SIGKILL after Grace, and the op completes with what
	// was printed and an error wrapping ErrTimeout. With no Timeout the
	// command is bounded by the await's timeout, which cancels it (and
	// discards its output).
	Timeout time.Duration
	// Grace is the time between SIGTERM and SIGKILL; 0 means the runner's.
	Grace time.Duration
	// Drain bounds how long output is still read after the command exited
	// while processes it started hold its stdout or stderr open; they are
	// then killed (SIGKILL to the process group). 0 means the runner's.
	Drain time.Duration
	// Err is the error Command met (a failed PATH lookup); Start reports it.
	Err error

	runner *Runner
}

// String returns the command line as written — Args[0] is the name given
// to Command, not the result of its PATH lookup, so it does not depend on
// the machine — with each word shell-quoted where it needs to be:
// `/bin/sh -c 'echo "$1"' sh x`.
func (c *Cmd) String() string {
	argv := c.Args
	if len(argv) == 0 {
		argv = []string{c.Path}
	}
	var b strings.Builder
	for i, a := range argv {
		if i == 0 && a == "" {
			a = c.Path
		}
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(shellQuote(a))
	}
	return b.String()
}

// Describe returns "exec: " and the command line (see String): the
// description async.Describer asks for, which labels the command's await in
// logs and in siptest's exchanges.
func (c *Cmd) Describe() string { return "exec: " + c.String() }

// shellQuote returns s as a POSIX shell word: as it is when it has only
// characters the shell takes literally, else in single quotes.
func shellQuote(s string) string {
	if s == "" {
		return "''"
	}
	if strings.IndexFunc(s, needsQuote) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func needsQuote(r rune) bool {
	switch {
	case 'a' <= r && r <= 'z', 'A' <= r && r <= 'Z', '0' <= r && r <= '9':
		return false
	}
	return !strings.ContainsRune("@%+=:,./_-", r)
}

// Start starts the command on loop l and calls done on l when it has
// exited and its output reached EOF, or when its Timeout killed it. It
// implements async.Op[Result]: errors (ErrStart, overload) complete it
// synchronously, and the returned cancel kills the command (SIGTERM to its
// group, SIGKILL after Grace), closes its pipes and reaps it, without
// calling done.
//
// On a manual loop (reactor.NewManual, as siptest's Harness runs routes)
// there is no poller: one goroutine watches the command, reads its output
// and posts the result to the loop, and Timeout, Grace and Drain run on the
// wall clock, since the process runs in real time whatever the loop's
// clock says.
func (c *Cmd) Start(l *reactor.Loop, done func(Result, error)) (cancel func()) {
	r := c.runner
	if r == nil {
		r = Default()
	}
	if c.Err != nil {
		r.stats.startFailed.Add(1)
		done(Result{}, c.Err)
		return nil
	}
	if l == nil {
		r.stats.startFailed.Add(1)
		done(Result{}, fmt.Errorf("%w %s: no loop", ErrStart, c.Path))
		return nil
	}
	if r.slots.Add(1) > int64(r.cfg.MaxCommands) {
		r.slots.Add(-1)
		r.stats.overloaded.Add(1)
		if o := r.cfg.Observer; o != nil {
			o.CommandOverloaded()
		}
		done(Result{}, errOverloaded)
		return nil
	}
	var err error
	if l.Manual() {
		cancel, err = r.spawnWatched(r.loopState(l), c, done)
	} else {
		var p *proc
		if p, err = r.spawn(r.loopState(l), c, done); err == nil {
			cancel = p.cancel
		}
	}
	if err != nil {
		r.slots.Add(-1)
		r.stats.startFailed.Add(1)
		r.log.Debug("exec: start failed", "cmd", c.Path, "err", err)
		done(Result{}, err)
		return nil
	}
	return cancel
}

// Result is what a command did.
type Result struct {
	// Stdout and Stderr are the captured output, each at most MaxOutput
	// bytes.
	Stdout, Stderr []byte
	// ExitCode is the exit status, or -1 when the process was killed by a
	// signal.
	ExitCode int
	// Signal is the signal that killed the process, or 0.
	Signal syscall.Signal
	// Truncated reports that stdout or stderr exceeded MaxOutput.
	Truncated bool
	// Duration runs from the spawn to the completion of the op.
	Duration time.Duration
	// UserTime and SystemTime are the CPU time of the command (its own,
	// plus that of the children it waited for).
	UserTime, SystemTime time.Duration
	// Pid is the process id the command had.
	Pid int
}

// Lines returns stdout split into lines, without line terminators ("\n" or
// "\r\n"); a last line without terminator is included. Like OpenSIPS's
// exec, which turns each output line into a value.
func (r Result) Lines() []string {
	s := string(r.Stdout)
	if s == "" {
		return nil
	}
	s = strings.TrimSuffix(s, "\n")
	lines := strings.Split(s, "\n")
	for i, ln := range lines {
		lines[i] = strings.TrimSuffix(ln, "\r")
	}
	return lines
}

// loopState is what a runner keeps per loop: the commands running there
// (killed when the loop closes) and a read buffer shared by them.
type loopState struct {
	r    *Runner
	loop *reactor.Loop
	buf  []byte
	live []*proc
	// goLive holds the commands a goroutine watches (manual loops).
	goLive map[*goProc]struct{}
}

// loopState returns the state of loop l, creating it on first use. Called
// on l: only l's goroutine ever stores l's entry.
func (r *Runner) loopState(l *reactor.Loop) *loopState {
	if v, ok := r.loops.Load(l); ok {
		return v.(*loopState)
	}
	ls := &loopState{r: r, loop: l, buf: make([]byte, 64<<10)}
	r.loops.Store(l, ls)
	l.OnClose(ls.close)
	return ls
}

func (ls *loopState) add(p *proc) {
	p.idx = len(ls.live)
	ls.live = append(ls.live, p)
}

func (ls *loopState) remove(p *proc) {
	i := p.idx
	if i < 0 || i >= len(ls.live) || ls.live[i] != p {
		return
	}
	last := len(ls.live) - 1
	ls.live[i] = ls.live[last]
	ls.live[i].idx = i
	ls.live[last] = nil
	ls.live = ls.live[:last]
	p.idx = -1
}

// close runs when the loop exits: every command still running there is
// killed and reaped, and its waiter told.
func (ls *loopState) close() {
	ls.r.loops.Delete(ls.loop)
	for len(ls.live) > 0 {
		ls.live[len(ls.live)-1].shutdown()
	}
	for p := range ls.goLive {
		p.shutdown()
	}
}
