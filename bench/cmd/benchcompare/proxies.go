package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/asyncsip/asyncsip/bench/internal/routedb"
)

// scenarioNames are the scenarios of the comparison, in report order.
var scenarioNames = []string{"relay", "sleep", "sleep-blocking", "rest", "db"}

func knownScenario(s string) bool { return slices.Contains(scenarioNames, s) }

// proxyKind says how to start one proxy and which scenarios it takes part in.
type proxyKind struct {
	scenarios []string
	// argv returns the command line (nil argv: no proxy, SIPp calls the
	// callee directly) and extra environment.
	argv func(e *env, scenario string) (argv, environ []string, err error)
}

func (k proxyKind) supports(s string) bool { return slices.Contains(k.scenarios, s) }

// proxyKinds are the proxies the driver knows, in report order.
var proxyKinds = map[string]proxyKind{
	"asyncsip": {scenarios: scenarioNames, argv: asyncsipArgv},
	// asyncsip-4loops (not in the default run): 4 event loops on the one
	// CPU instead of the default one loop per usable CPU, which shows what
	// the hand-offs between loops sharing a CPU cost.
	"asyncsip-4loops": {scenarios: []string{"relay"}, argv: func(e *env, sc string) ([]string, []string, error) {
		argv, env, err := asyncsipArgv(e, sc)
		return withWorkers(argv, "4"), env, err
	}},
	"kamailio": {scenarios: scenarioNames, argv: kamailioArgv},
	"sipgo":    {scenarios: []string{"relay", "sleep"}, argv: sipgoArgv},
	// sipp-direct: the callee without a proxy (not in the default run: on
	// loopback the sender pays for delivery, so without a proxy SIPp pays for
	// both directions and this understates its ceiling behind a proxy; the
	// SIPp CPU share of every step tells that better).
	"sipp-direct": {scenarios: []string{"relay"}},
}

// proxyOrder is the column and legend order of the report.
var proxyOrder = []string{"asyncsip", "asyncsip-4loops", "kamailio", "sipgo", "sipp-direct"}

// asyncsipArgv runs benchproxy with -workers 0: asyncsip.Config.Workers
// left to the library's default, one event loop per GOMAXPROCS, which Go
// takes from the CPU affinity (taskset -c: 1).
func asyncsipArgv(e *env, sc string) ([]string, []string, error) {
	o := e.o
	return []string{filepath.Join(e.bin, "benchproxy"), "-scenario", sc,
		"-listen", fmt.Sprintf("udp:127.0.0.1:%d", o.Port), "-target", fmt.Sprintf("127.0.0.1:%d", o.UASPort),
		"-workers", "0", "-rest-url", fmt.Sprintf("http://127.0.0.1:%d/route", o.HTTPPort),
		"-db", "sqlite:" + e.dbPath, "-db-fill=false"}, nil, nil
}

func withWorkers(argv []string, n string) []string {
	out := slices.Clone(argv)
	for i := range out {
		if out[i] == "-workers" && i+1 < len(out) {
			out[i+1] = n
		}
	}
	return out
}

func sipgoArgv(e *env, sc string) ([]string, []string, error) {
	o := e.o
	return []string{filepath.Join(e.bin, "sipgoproxy"), "-scenario", sc,
		"-listen", fmt.Sprintf("127.0.0.1:%d", o.Port), "-target", fmt.Sprintf("127.0.0.1:%d", o.UASPort)}, nil, nil
}

func kamailioArgv(e *env, sc string) ([]string, []string, error) {
	o := e.o
	if sc == "rest" && e.httpMod == "" {
		return nil, nil, fmt.Errorf("http_async_client could not be built: %s", e.httpErr)
	}
	run := filepath.Join(e.work, "kamailio-run")
	if err := os.MkdirAll(run, 0o755); err != nil {
		return nil, nil, err
	}
	argv := []string{"kamailio", "-f", filepath.Join(o.Repo, "bench", "kamailio", sc+".cfg"),
		"-DD", "-E", "-x", "tlsf", "-m", fmt.Sprint(o.Kamailio.ShmMB), "-M", fmt.Sprint(o.Kamailio.PkgMB),
		"-Y", run, "-w", run,
		"-A", fmt.Sprintf("LISTEN=udp:127.0.0.1:%d", o.Port),
		"-A", fmt.Sprintf(`TARGET="sip:127.0.0.1:%d"`, o.UASPort),
		"-A", fmt.Sprintf(`REST_URL="http://127.0.0.1:%d/route"`, o.HTTPPort),
		"-A", fmt.Sprintf(`DB_CON="routes=>sqlite:///%s"`, e.dbPath)}
	if e.httpMod != "" {
		argv = append(argv, "-A", fmt.Sprintf(`HTTP_ASYNC_CLIENT="%s"`, e.httpMod))
	}
	return argv, nil, nil
}

// fillDB (re)creates the routing table of the db scenario: user "bob" (the
// SIPp service) routes to the callee, among 10,000 other rows.
func fillDB(e *env) error {
	db, _, err := routedb.Open("sqlite:" + e.dbPath)
	if err != nil {
		return err
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return routedb.Fill(ctx, db, fmt.Sprintf("127.0.0.1:%d", e.o.UASPort), []string{"bob"}, 10000)
}

// setup installs what is missing, builds the Go programs and, when Kamailio
// runs the rest scenario, the http_async_client module.
func setup(ctx context.Context, e *env) error {
	o := e.o
	if o.Repo == "" {
		out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
		if err != nil || strings.TrimSpace(string(out)) == "" || strings.TrimSpace(string(out)) == os.DevNull {
			return fmt.Errorf("run benchcompare from inside the asyncsip module: %v", err)
		}
		e.o.Repo = filepath.Dir(strings.TrimSpace(string(out)))
	}
	o = e.o
	need := map[string][]string{"sipp": {"sip-tester"}, "taskset": {"util-linux"}, "gnuplot": {"gnuplot-nox"}}
	if slices.Contains(o.Scenarios, "relay") && o.SyscallTool != toolOff {
		e.o.SyscallTool = chooseSyscallTool(ctx, o.SyscallTool)
		o.SyscallTool = e.o.SyscallTool
		logf("syscall pass: %s", o.SyscallTool)
		if o.SyscallTool == toolStrace {
			need["strace"] = []string{"strace"}
		}
	}
	if slices.Contains(o.Proxies, "kamailio") {
		need["kamailio"] = []string{"kamailio"}
		if slices.Contains(o.Scenarios, "db") {
			need["/usr/lib/x86_64-linux-gnu/kamailio/modules/db_sqlite.so"] = []string{"kamailio-sqlite-modules"}
		}
	}
	if err := ensurePackages(ctx, need, o.Install); err != nil {
		return err
	}
	e.bin = filepath.Join(e.work, "bin")
	for _, cmd := range []string{"benchproxy", "httpdelay", "sipgoproxy"} {
		b := exec.CommandContext(ctx, "go", "build", "-o", filepath.Join(e.bin, cmd), "./bench/cmd/"+cmd)
		b.Dir = o.Repo
		if out, err := b.CombinedOutput(); err != nil {
			return fmt.Errorf("go build %s: %v\n%s", cmd, err, out)
		}
	}
	e.dbPath = filepath.Join(e.work, "routes.db")
	if slices.Contains(o.Proxies, "kamailio") && slices.Contains(o.Scenarios, "rest") {
		home, _ := os.UserHomeDir()
		dst := filepath.Join(home, ".cache", "asyncsip-bench", "kamailio")
		script := filepath.Join(o.Repo, "bench", "kamailio", "build-http-async-client.sh")
		logPath := filepath.Join(e.work, "http_async_client-build.log")
		out, err := exec.CommandContext(ctx, "bash", "-c", fmt.Sprintf("%q %q 2>%q", script, dst, logPath)).Output()
		if err != nil {
			e.httpErr = fmt.Sprintf("%v: %s", err, tailFile(logPath, 400))
			logf("http_async_client: %s", e.httpErr)
		} else {
			e.httpMod = strings.TrimSpace(string(out))
			logf("http_async_client: %s", e.httpMod)
		}
	}
	return nil
}

// ensurePackages installs the Debian packages of the missing commands or
// files, without letting a package start its service (policy-rc.d).
func ensurePackages(ctx context.Context, need map[string][]string, install bool) error {
	var pkgs []string
	for what, p := range need {
		if strings.HasPrefix(what, "/") {
			if _, err := os.Stat(what); err == nil {
				continue
			}
		} else if _, err := exec.LookPath(what); err == nil {
			continue
		}
		pkgs = append(pkgs, p...)
	}
	if len(pkgs) == 0 {
		return nil
	}
	slices.Sort(pkgs)
	if !install {
		return fmt.Errorf("missing packages %v (rerun with -install)", pkgs)
	}
	logf("installing %v", pkgs)
	const policy = "/usr/sbin/policy-rc.d"
	if _, err := os.Stat(policy); os.IsNotExist(err) {
		// Debian's kamailio service would start on :5060; keep it stopped.
		if err := os.WriteFile(policy, []byte("#!/bin/sh\nexit 101\n"), 0o755); err != nil {
			return fmt.Errorf("policy-rc.d: %w", err)
		}
		defer os.Remove(policy)
	}
	for _, args := range [][]string{{"update", "-qq"}, append([]string{"install", "-y", "-q", "--no-install-recommends"}, pkgs...)} {
		c := exec.CommandContext(ctx, "apt-get", args...)
		c.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		if out, err := c.CombinedOutput(); err != nil {
			return fmt.Errorf("apt-get %s: %v\n%s", args[0], err, tail(string(out), 800))
		}
	}
	return nil
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

func tailFile(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	return strings.TrimSpace(tail(string(b), n))
}
