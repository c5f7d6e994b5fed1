package main

import (
	"github.com/asyncsip/asyncsip/internal/testenv"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func sampleResults() *Results {
	ok := func(rate, cpu, p50, p99 float64) *Step {
		return &Step{Rate: rate, Calls: 100, Successful: 100, CPUSeconds: cpu, P50ms: p50, P99ms: p99}
	}
	return &Results{
		Date: "2026-11-27 05:50 UTC", Machine: map[string]string{"cpu model": "Test CPU", "cpus": "2", "kernel": "Linux 6"},
		Versions: map[string]string{"kamailio": "5.6.3"}, Settings: map[string]string{"step": "15s"},
		Note: "taken under load",
		Rows: []Row{
			{Proxy: "asyncsip", Scenario: "relay", MaxCPS: 8000, Confirmed: true, Fixed: ok(1000, 0.05, 0.2, 1.5), CPUPer1k: 0.05,
				Search: []Step{*ok(1000, 0, 0, 0), {Rate: 16000, Calls: 10, Failed: 10}, {Rate: 8000, Calls: 10, Successful: 10, SIPpCPU: 0.85, CPUSeconds: 9, Wall: 15}},
				Syscalls: &SyscallCount{Tool: "perf stat", Rate: 1000, Seconds: 5.4, Calls: 5000, Messages: 30000, Total: 36000, OK: true,
					Top: []SysCount{{"recvmmsg", 20000}, {"sendmmsg", 16000}}}},
			{Proxy: "kamailio", Scenario: "relay", MaxCPS: 4000, Confirmed: true, Fixed: ok(1000, 0.1, 0.3, 2), CPUPer1k: 0.1,
				Syscalls: &SyscallCount{Tool: "perf stat", Rate: 1000, Err: "perf exited: no permission"}},
			{Proxy: "asyncsip", Scenario: "sleep-blocking", MaxCPS: 190, Fixed: ok(190, 0.01, 21, 40), CPUPer1k: 0.07},
		},
		Missing: []Missing{{"kamailio", "rest", "http_async_client could not be built:\n no source"}},
	}
}

func TestMarkdown(t *testing.T) {
	md := sampleResults().Markdown()
	for _, want := range []string{
		"| relay | asyncsip | 8000 | 60 % | 85 % | 0.050 | 1000 | 0.20 | 1.50 | 1.20 | 2.00× | 0.50× |",
		"| relay | kamailio | 4000 | – | – | 0.100 | 1000 | 0.30 | 2.00 | – |  |  |",
		"| sleep-blocking | asyncsip | 190 (unconfirmed) | – | – | 0.070 | 190 | 21.00 | 40.00 | – |  |  |",
		"syscalls (perf stat, 1000 calls/s, 5.4 s): 36000 for 30000 SIP messages received (5000 calls × 6 + 0 retransmissions) = 1.20 per message received\n  recvmmsg                 20000   0.667/msg\n",
		"syscalls (perf stat, 1000 calls/s, 0.0 s): not measured: perf exited: no permission",
		"per SIP message the proxy *received*",
		"- kamailio / rest: http_async_client could not be built: no source",
		"> **Note:** taken under load",
		"Test CPU", "kamailio `5.6.3`", "16000 cps: FAIL",
	} {
		require.Contains(t, md, want)
	}
}

func TestPlotData(t *testing.T) {
	data, proxies := plotData(sampleResults(), func(r *Row) float64 { return r.MaxCPS })
	require.Equal(t, []string{"asyncsip", "kamailio"}, proxies)
	require.Equal(t, "scenario asyncsip kamailio\nrelay 8000 4000\nsleep-blocking 190 ?\n", data)
}

func TestWriteReport(t *testing.T) {
	if _, err := exec.LookPath("gnuplot"); err != nil {
		testenv.Need(t, "gnuplot", "apt-get install gnuplot-nox, or run make test")
	}
	dir := t.TempDir()
	r := sampleResults()
	require.NoError(t, writeReport(dir, r))
	for _, f := range []string{"RESULTS.md", "throughput.png", "cpu.png"} {
		b, err := os.ReadFile(filepath.Join(dir, f))
		require.NoError(t, err, f)
		if strings.HasSuffix(f, ".png") {
			require.True(t, len(b) > 8 && string(b[1:4]) == "PNG", f)
		}
	}
	require.NoError(t, saveResults(filepath.Join(dir, "results.json"), r))
	back, err := loadResults(filepath.Join(dir, "results.json"))
	require.NoError(t, err)
	require.Equal(t, r.Markdown(), back.Markdown())
}

// TestKamailioConfigs checks the syntax of every Kamailio configuration with
// kamailio -c when Kamailio is installed (the benchmark driver installs it).
func TestKamailioConfigs(t *testing.T) {
	if _, err := exec.LookPath("kamailio"); err != nil {
		testenv.Need(t, "kamailio", "apt-get install kamailio, or run make test / make bench-compare")
	}
	for _, sc := range scenarioNames {
		t.Run(sc, func(t *testing.T) {
			args := []string{"-c", "-f", filepath.Join("..", "..", "kamailio", sc+".cfg")}
			if sc == "rest" {
				// Not packaged by Debian 12: the driver builds it into this cache.
				home, _ := os.UserHomeDir()
				mod := filepath.Join(home, ".cache", "asyncsip-bench", "kamailio", "http_async_client.so")
				if _, err := os.Stat(mod); err != nil {
					t.Skip("http_async_client.so not built yet (make bench-compare builds it)")
				}
				args = append(args, "-A", `HTTP_ASYNC_CLIENT="`+mod+`"`)
			}
			if sc == "db" {
				if _, err := os.Stat("/usr/lib/x86_64-linux-gnu/kamailio/modules/db_sqlite.so"); err != nil {
					t.Skip("kamailio-sqlite-modules not installed")
				}
			}
			out, err := exec.Command("kamailio", args...).CombinedOutput()
			require.NoError(t, err, string(out))
		})
	}
}

func TestParseFlags(t *testing.T) {
	o, reportOnly, err := parseFlags([]string{"-quick", "-proxies", "asyncsip, kamailio", "-scenarios", "relay"})
	require.NoError(t, err)
	require.False(t, reportOnly)
	require.Equal(t, []string{"asyncsip", "kamailio"}, o.Proxies)
	require.Equal(t, 1000.0, o.Search.Start)
	require.Equal(t, toolAuto, o.SyscallTool)
	o, _, err = parseFlags(nil)
	require.NoError(t, err)
	require.Equal(t, []string{"asyncsip", "kamailio", "sipgo"}, o.Proxies, "default: one asyncsip row, the library's default loops")
	o, _, err = parseFlags([]string{"-proxies", "asyncsip-4loops", "-syscall-tool", "strace", "-syscall-duration", "2s"})
	require.NoError(t, err)
	require.Equal(t, toolStrace, o.SyscallTool)
	require.Equal(t, 2*time.Second, o.SyscallDuration)
	for _, bad := range [][]string{
		{"-proxies", "opensips"}, {"-proxies", "asyncsip-w1"}, {"-scenarios", "nap"}, {"-syscall-tool", "dtrace"}, {"-syscall-duration", "0s"}, {"-proxy-cpu", "1"}, {"-step", "0s"}, {"extra"},
	} {
		_, _, err := parseFlags(bad)
		require.Error(t, err, bad)
	}
}
