package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// machineInfo describes the host: CPU model and count (lscpu), kernel.
func machineInfo() map[string]string {
	m := map[string]string{"cpus": strconv.Itoa(runtime.NumCPU())}
	if out, err := exec.Command("lscpu").Output(); err == nil {
		for _, line := range strings.Split(string(out), "\n") {
			k, v, ok := strings.Cut(line, ":")
			if ok && strings.TrimSpace(k) == "Model name" {
				m["cpu model"] = strings.TrimSpace(v)
			}
		}
	}
	if out, err := exec.Command("uname", "-sr").Output(); err == nil {
		m["kernel"] = strings.TrimSpace(string(out))
	}
	return m
}

// versions lists what was measured: asyncsip's commit, sipgo's version from
// go.mod, Kamailio, SIPp, Go.
func versions(repo, httpMod string) map[string]string {
	v := map[string]string{"go": runtime.Version()}
	first := func(name string, args ...string) string {
		out, err := exec.Command(name, args...).CombinedOutput()
		if err != nil && len(out) == 0 {
			return "unavailable"
		}
		for _, line := range strings.Split(string(out), "\n") {
			if line = strings.TrimSpace(line); line != "" {
				return line
			}
		}
		return "unavailable"
	}
	v["asyncsip"] = first("git", "-C", repo, "describe", "--always", "--dirty")
	v["kamailio"] = strings.TrimPrefix(first("kamailio", "-v"), "version: ")
	if out, err := exec.Command("dpkg-query", "-W", "-f=${Version}", "kamailio").Output(); err == nil {
		v["kamailio"] += " (Debian " + string(out) + ")"
	}
	if httpMod != "" {
		v["http_async_client"] = "built from the Debian source package: " + httpMod
	}
	v["sipp"] = first("sipp", "-v")
	if b, err := os.ReadFile(filepath.Join(repo, "go.mod")); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if f := strings.Fields(line); len(f) >= 2 && f[0] == "github.com/emiago/sipgo" {
				v["sipgo"] = f[1]
			}
		}
	}
	return v
}

// loadAvg returns /proc/loadavg's three load averages.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

func load1() float64 {
	f := strings.Fields(loadAvg())
	if len(f) == 0 {
		return 0
	}
	x, _ := strconv.ParseFloat(f[0], 64)
	return x
}

// waitQuiet polls the 1-minute load average every minute until it is
// below limit or max has passed.
func waitQuiet(ctx context.Context, limit float64, max time.Duration) {
	end := time.Now().Add(max)
	for {
		l := load1()
		if l < limit {
			logf("load %.2f < %.2f: starting", l, limit)
			return
		}
		if time.Now().After(end) {
			logf("load %.2f still >= %.2f after %v: starting anyway", l, limit, max)
			return
		}
		logf("load %.2f >= %.2f: waiting", l, limit)
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Minute):
		}
	}
}

// profileBlock runs asyncsip at the fixed rate (or its measured max when
// lower) with -cpuprofile and keeps the top of `go tool pprof -top`.
func profileBlock(ctx context.Context, e *env, sc string) (Profile, error) {
	rate := e.o.FixedRate
	for _, r := range e.res.Rows {
		if r.Proxy == "asyncsip" && r.Scenario == sc && r.MaxCPS > 0 && r.MaxCPS < rate {
			rate = r.MaxCPS
		}
	}
	b := &block{e: e, name: "asyncsip/" + sc + " (profile)", dir: filepath.Join(e.work, "profile-"+sc)}
	if err := os.MkdirAll(b.dir, 0o755); err != nil {
		return Profile{}, err
	}
	defer b.stop()
	if err := startPeers(e, b, sc); err != nil {
		return Profile{}, err
	}
	argv, env, err := asyncsipArgv(e, sc)
	if err != nil {
		return Profile{}, err
	}
	prof := filepath.Join(b.dir, "cpu.pprof")
	argv = append(argv, "-cpuprofile", prof)
	p, err := b.start("asyncsip", e.o.ProxyCPU, func() bool { return udpBound(e.o.Port) }, env, argv...)
	if err != nil {
		return Profile{}, err
	}
	b.proxy = p
	b.uac(ctx, rate, e.o.FixedDuration)
	p.Stop(10 * time.Second) // SIGTERM: the profile is written on exit
	top, err := exec.CommandContext(ctx, "go", "tool", "pprof", "-top", "-nodecount=25", filepath.Join(e.bin, "benchproxy"), prof).CombinedOutput()
	if err != nil {
		return Profile{}, fmt.Errorf("pprof: %v\n%s", err, top)
	}
	return Profile{Scenario: sc, Rate: rate, Top: string(top), File: prof}, nil
}
