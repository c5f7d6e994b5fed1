package main

import (
	"bytes"
	"github.com/asyncsip/asyncsip/internal/testenv"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/asyncsip/asyncsip/modules/exec"
	"github.com/asyncsip/asyncsip/modules/exec/exectest"
	"github.com/asyncsip/asyncsip/siptest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestRoutesWithScriptResults(t *testing.T) {
	cases := []struct {
		name   string
		result exec.Result
		want   int    // expected final reply, 0 when relayed
		target string // expected branch
	}{
		{"route", exec.Result{Stdout: []byte("sip:+1555@10.0.0.7:5060\n")}, 0, "sip:+1555@10.0.0.7:5060"},
		{"no route", exec.Result{ExitCode: 1}, 404, ""},
		{"empty output", exec.Result{}, 503, ""},
		// A target that cannot be resolved: tm answers 503 itself (no route).
		{"unresolvable target", exec.Result{Stdout: []byte("sip:bob@no-such-host.invalid\n")}, 503, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			script := exectest.New()
			script.On("/bin/route", "+1555", "alice").Result(tc.result) // the callee, the caller
			h := siptest.NewHarness(t, Routes("/bin/route", time.Second), siptest.WithFakes(script))
			res := h.Send(siptest.NewRequest("INVITE", "sip:+1555@example.com"))
			if tc.target != "" {
				siptest.AssertRelayedTo(t, res, tc.target)
				return
			}
			siptest.AssertReplied(t, res, tc.want)
		})
	}
}

// The routes with the real script, testdata/route.sh, run as a process
// from the harness (WithRealOps): a route, no route, and a script that
// hangs and is killed after the timeout, in real time.
func TestRoutesWithRealScript(t *testing.T) {
	// Every process the script starts inherits this marker: none may be
	// left once the harness has closed.
	mark := "test-" + strconv.Itoa(os.Getpid()) + "-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	t.Setenv("ASYNCSIP_EXAMPLE_EXEC_RUN", mark)
	fds := openFDs(t)
	t.Cleanup(func() { requireNoneLeft(t, "ASYNCSIP_EXAMPLE_EXEC_RUN="+mark, fds) }) // runs after the harness's

	h := siptest.NewHarness(t, Routes("./testdata/route.sh", 500*time.Millisecond), siptest.WithRealOps("route.script"))
	for _, tc := range []struct {
		callee string
		want   int    // final reply, 0 when relayed
		target string // the branch, when relayed
	}{
		{"+1555", 0, "sip:+1555@10.2.0.1:5060"},
		{"alice", 404, ""},
		{"hang", 503, ""}, // sleeps 30 s: killed after 500 ms
	} {
		t.Run(tc.callee, func(t *testing.T) {
			start := time.Now()
			res := h.Send(siptest.NewRequest("INVITE", "sip:"+tc.callee+"@example.com"))
			if tc.target != "" {
				siptest.AssertRelayedTo(t, res, tc.target)
			} else {
				siptest.AssertReplied(t, res, tc.want)
			}
			if tc.callee == "hang" && time.Since(start) < 500*time.Millisecond {
				t.Errorf("answered after %v, before the script's timeout", time.Since(start))
			}
			if got := res.Await(0).State(); got == siptest.AwaitRunning || got == siptest.AwaitPending {
				t.Errorf("the script's await is still %v", got)
			}
		})
	}
}

// openFDs counts this process's open descriptors.
func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatalf("count descriptors: %v", err)
	}
	return len(ents)
}

// requireNoneLeft waits (bounded) until no live process has env in its
// environment and the descriptors are back to fds.
func requireNoneLeft(t *testing.T, env string, fds int) {
	t.Helper()
	var left []int
	var n int
	done := testenv.Poll(5*time.Second, func() bool {
		left, n = marked(env), openFDs(t)
		return len(left) == 0 && n <= fds
	})
	if !done {
		t.Errorf("processes left: %v; %d descriptors open, %d before", left, n, fds)
	}
}

// marked returns the pids of the live processes whose environment holds
// env (a zombie has no environment left: it is dead).
func marked(env string) []int {
	dirs, _ := filepath.Glob("/proc/[0-9]*/environ")
	var pids []int
	for _, d := range dirs {
		b, err := os.ReadFile(d)
		if err != nil {
			continue // gone meanwhile, or not ours
		}
		for _, kv := range bytes.Split(b, []byte{0}) {
			if string(kv) == env {
				pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(d)))
				pids = append(pids, pid)
				break
			}
		}
	}
	return pids
}
