// Command benchcompare runs the bench/ comparisons: asyncsip's benchmark
// proxy, Kamailio (Debian package) and a sipgo proxy, side by side on the
// same scenarios, driven by SIPp, in one run on one machine. `make
// bench-compare` runs it from the repository root.
//
// For every scenario it takes each proxy in turn (the order alternates from
// one scenario to the next, so that drift of the machine hits all of them):
// the proxy is pinned to one CPU and SIPp (caller and callee) to the other;
// it searches the highest call rate with no failed call (steps of -step,
// doubling then bisecting, the result confirmed once), and measures at
// -fixed-rate the proxy's CPU seconds per 1,000 calls (/proc/<pid>/stat)
// and the INVITE->200 latency p50/p99. In the relay scenario a separate
// short run at -fixed-rate then counts the proxy's syscalls per SIP message
// it receives (perf stat on the syscall tracepoints, or strace -c -f).
// Results go to -out as results.json, RESULTS.md and PNG plots.
//
//	go run ./bench/cmd/benchcompare                 # full run (15 s steps)
//	go run ./bench/cmd/benchcompare -quick          # smoke run (3 s steps)
//	go run ./bench/cmd/benchcompare -report-only    # redo RESULTS.md from results.json
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"
)

// Options are the command-line settings of a run.
type Options struct {
	Step          time.Duration
	FixedRate     float64
	FixedDuration time.Duration
	Proxies       []string
	Scenarios     []string
	Search        Search
	Out           string
	Work          string
	Repo          string
	ProxyCPU      int
	SIPpCPU       int
	Port          int // proxy under test
	UASPort       int
	UACPort       int
	HTTPPort      int
	Install       bool
	Profile       bool
	Note          string
	WaitLoad      float64
	WaitMax       time.Duration
	Kamailio      KamailioOptions
	Version       string // asyncsip version to report; default git describe
	SIPpBuffer    int    // SIPp -buff_size (socket buffers); 0 keeps SIPp's default
	// SyscallTool counts the proxies' syscalls in the relay scenario (auto,
	// perf, strace, off); SyscallDuration is the length of that pass.
	SyscallTool     string
	SyscallDuration time.Duration
}

// KamailioOptions are the Kamailio command-line settings.
type KamailioOptions struct {
	ShmMB, PkgMB int
}

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "benchcompare:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	o, reportOnly, err := parseFlags(args)
	if err != nil {
		return err
	}
	if reportOnly {
		res, err := loadResults(filepath.Join(o.Out, "results.json"))
		if err != nil {
			return err
		}
		return writeReport(o.Out, res)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	raiseNoFile()
	res, err := runAll(ctx, o)
	if res != nil {
		if werr := saveResults(filepath.Join(o.Out, "results.json"), res); werr != nil {
			err = errors.Join(err, werr)
		}
		if werr := writeReport(o.Out, res); werr != nil {
			err = errors.Join(err, werr)
		}
	}
	return err
}

func parseFlags(args []string) (Options, bool, error) {
	fs := flag.NewFlagSet("benchcompare", flag.ContinueOnError)
	var o Options
	quick := fs.Bool("quick", false, "smoke run: 3 s steps, 5 s fixed-rate runs, coarse search")
	reportOnly := fs.Bool("report-only", false, "only rewrite RESULTS.md and the plots from -out/results.json")
	proxies := fs.String("proxies", "asyncsip,kamailio,sipgo", "proxies to run (also: asyncsip-4loops, sipp-direct)")
	scenarios := fs.String("scenarios", "relay,sleep,sleep-blocking,rest,db", "scenarios to run")
	fs.DurationVar(&o.Step, "step", 15*time.Second, "length of each max-rate search step")
	fs.Float64Var(&o.FixedRate, "fixed-rate", 1000, "calls/s of the CPU and latency measurement")
	fs.DurationVar(&o.FixedDuration, "fixed-duration", 20*time.Second, "length of the fixed-rate measurement")
	fs.Float64Var(&o.Search.Ceiling, "max-rate", 20000, "highest rate the search tries")
	fs.Float64Var(&o.Search.Floor, "min-rate", 20, "lowest rate the search tries")
	fs.Float64Var(&o.Search.Precision, "precision", 0.1, "search stops when (fail-pass)/pass is below this")
	fs.IntVar(&o.Search.MaxSteps, "max-steps", 10, "search steps per proxy and scenario")
	fs.StringVar(&o.Out, "out", "bench", "where results.json, RESULTS.md and the plots go")
	fs.StringVar(&o.Work, "work", "", "where logs and SIPp files go (default a new directory in /tmp)")
	fs.IntVar(&o.ProxyCPU, "proxy-cpu", 0, "CPU the proxy under test is pinned to")
	fs.IntVar(&o.SIPpCPU, "sipp-cpu", 1, "CPU SIPp (caller and callee) and the HTTP delay server are pinned to")
	fs.IntVar(&o.Port, "port", 0, "UDP port of the proxy under test (0: a free one)")
	fs.IntVar(&o.UASPort, "uas-port", 0, "UDP port of the SIPp callee (0: a free one)")
	fs.IntVar(&o.UACPort, "uac-port", 0, "UDP port of the SIPp caller (0: a free one)")
	fs.IntVar(&o.HTTPPort, "http-port", 0, "TCP port of the HTTP delay server (0: a free one)")
	fs.BoolVar(&o.Install, "install", true, "apt-get install sip-tester, kamailio and gnuplot when missing (as root)")
	fs.BoolVar(&o.Profile, "profile", false, "after the measurements, CPU-profile asyncsip at -fixed-rate in every scenario")
	fs.StringVar(&o.Version, "asyncsip-version", "", "asyncsip version to report (default: git describe of the repository; set it when running from an exported tree)")
	fs.IntVar(&o.SIPpBuffer, "sipp-buffer", 8<<20, "SIPp socket buffer size in bytes (-buff_size); 0 keeps SIPp's default (about 128 KiB), which the caller's socket overflows in bursts above ~3500 calls/s")
	fs.StringVar(&o.SyscallTool, "syscall-tool", toolAuto, "how the relay scenario's syscall pass counts the proxy's syscalls: perf (perf stat on the syscalls:sys_enter_* tracepoints), strace (strace -c -f; slows the proxy), auto (perf when it can count tracepoints here, else strace), off")
	fs.DurationVar(&o.SyscallDuration, "syscall-duration", 5*time.Second, "length of the syscall pass (SIPp at -fixed-rate, after the timed measurements)")
	fs.StringVar(&o.Note, "note", "", "note printed in RESULTS.md (conditions of the run)")
	fs.Float64Var(&o.WaitLoad, "wait-load", 0, "before starting, wait until the 1-min load average is below this (0: don't wait)")
	fs.DurationVar(&o.WaitMax, "wait-max", 30*time.Minute, "longest wait for -wait-load")
	fs.IntVar(&o.Kamailio.ShmMB, "kamailio-shm", 512, "Kamailio shared memory, MB (-m)")
	fs.IntVar(&o.Kamailio.PkgMB, "kamailio-pkg", 32, "Kamailio private memory per process, MB (-M)")
	if err := fs.Parse(args); err != nil {
		return o, false, err
	}
	if fs.NArg() > 0 {
		return o, false, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if *quick {
		o.Step, o.FixedDuration, o.Search.Precision, o.Search.MaxSteps = 3*time.Second, 5*time.Second, 0.25, 8
	}
	o.Search.Start = o.FixedRate
	o.Proxies = splitList(*proxies)
	o.Scenarios = splitList(*scenarios)
	for _, p := range o.Proxies {
		if _, ok := proxyKinds[p]; !ok {
			return o, false, fmt.Errorf("-proxies: unknown %q", p)
		}
	}
	for _, s := range o.Scenarios {
		if !knownScenario(s) {
			return o, false, fmt.Errorf("-scenarios: unknown %q", s)
		}
	}
	if !slices.Contains([]string{toolAuto, toolPerf, toolStrace, toolOff}, o.SyscallTool) {
		return o, false, fmt.Errorf("-syscall-tool: unknown %q", o.SyscallTool)
	}
	if o.Step <= 0 || o.SyscallDuration <= 0 || o.FixedDuration <= 0 || o.FixedRate <= 0 || o.Search.MaxSteps < 2 {
		return o, false, errors.New("-step, -fixed-duration, -fixed-rate, -syscall-duration must be > 0 and -max-steps >= 2")
	}
	if err := freePorts(&o); err != nil {
		return o, false, err
	}
	if o.ProxyCPU == o.SIPpCPU {
		return o, false, errors.New("-proxy-cpu and -sipp-cpu must differ")
	}
	return o, *reportOnly, nil
}

// freePorts gives every port left 0 one that is free now on 127.0.0.1
// (UDP for SIP, TCP for HTTP), distinct from the others.
func freePorts(o *Options) error {
	used := map[int]bool{o.Port: true, o.UASPort: true, o.UACPort: true, o.HTTPPort: true}
	pick := func(network string) (int, error) {
		for range 20 {
			var port int
			switch network {
			case "udp":
				c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
				if err != nil {
					return 0, err
				}
				port = c.LocalAddr().(*net.UDPAddr).Port
				c.Close()
			default:
				l, err := net.Listen("tcp", "127.0.0.1:0")
				if err != nil {
					return 0, err
				}
				port = l.Addr().(*net.TCPAddr).Port
				l.Close()
			}
			if !used[port] {
				used[port] = true
				return port, nil
			}
		}
		return 0, errors.New("no free port found")
	}
	for _, p := range []struct {
		port    *int
		network string
	}{{&o.Port, "udp"}, {&o.UASPort, "udp"}, {&o.UACPort, "udp"}, {&o.HTTPPort, "tcp"}} {
		if *p.port != 0 {
			continue
		}
		n, err := pick(p.network)
		if err != nil {
			return fmt.Errorf("ports: %w", err)
		}
		*p.port = n
	}
	return nil
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

func saveResults(path string, r *Results) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

func loadResults(path string) (*Results, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var r Results
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &r, nil
}

// raiseNoFile lifts the open-files limit for SIPp, which keeps a descriptor
// budget per call.
func raiseNoFile() {
	var l syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l) == nil && l.Cur < l.Max {
		l.Cur = l.Max
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l)
	}
}
