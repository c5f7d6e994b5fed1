package exec_test

import (
	"errors"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/asyncsip/asyncsip/async"
	"github.com/asyncsip/asyncsip/modules/exec"
	"github.com/asyncsip/asyncsip/siptest"
	"github.com/asyncsip/asyncsip/tm"
)

func TestDescribe(t *testing.T) {
	r := exec.NewRunner(exec.Config{Logger: quiet})
	for _, tc := range []struct {
		name string
		cmd  *exec.Cmd
		want string
	}{
		{"plain words", r.Command("/usr/local/bin/lcr", "+1555", "sip:bob@10.0.0.1:5060;transport=udp"),
			"/usr/local/bin/lcr +1555 'sip:bob@10.0.0.1:5060;transport=udp'"},
		{"script with spaces and quotes", r.Command("/bin/sh", "-c", `echo "$1" it's`, "sh", "x"),
			`/bin/sh -c 'echo "$1" it'\''s' sh x`},
		{"empty argument", r.Command("/bin/echo", ""), "/bin/echo ''"},
		{"name as written, not as found in PATH", r.Command("sh", "-c", "true"), "sh -c true"},
		{"name not in PATH", r.Command("asyncsip-no-such-command", "a b"), "asyncsip-no-such-command 'a b'"},
		{"no Args", &exec.Cmd{Path: "/bin/true"}, "/bin/true"},
		{"glob and variables stay literal", r.Command("/bin/ls", "*.txt", "$HOME", "~"), `/bin/ls '*.txt' '$HOME' '~'`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, tc.cmd.String())
			require.Equal(t, "exec: "+tc.want, tc.cmd.Describe())
			var d async.Describer = tc.cmd
			require.Equal(t, "exec: "+tc.want, d.Describe())
		})
	}
}

// scriptRoute is the OpenSIPS use case as a route: run the routing script
// with the callee, relay to the first line it prints; no route: 404; the
// script failed: 503.
func scriptRoute(r *exec.Runner, script string) func(*tm.Context) {
	return func(c *tm.Context) {
		cmd := r.Command(script, c.Recipient().User)
		cmd.Env = append(os.Environ(), "ROUTE_PORT=5080")
		cmd.Timeout = 300 * time.Millisecond
		async.Await(c, cmd, func(res exec.Result, err error) {
			switch {
			case res.ExitCode == 1:
				_ = c.Reply(404, "No Route")
			case err != nil || len(res.Lines()) == 0:
				_ = c.Reply(503, "Routing Unavailable")
			default:
				_ = c.Relay(res.Lines()[0])
			}
		}, async.Timeout(2*time.Second))
	}
}

// With WithRealOps the harness lets the command run for real on its
// manual loop and waits for it in real time.
func TestHarnessRunsRealCommand(t *testing.T) {
	checkClean(t) // registered first: checked after the harness closed
	r := exec.NewRunner(exec.Config{Logger: quiet})
	h := siptest.NewHarness(t, scriptRoute(r, "./testdata/route.sh"), siptest.WithRealOps("exec"))

	res := h.Send(siptest.NewRequest("INVITE", "sip:bob@example.com"))
	siptest.AssertRelayedTo(t, res, "sip:bob@127.0.0.1:5080")
	require.Equal(t, siptest.AwaitCompleted, res.Await(0).State(), res.String())

	res = h.Send(siptest.NewRequest("INVITE", "sip:carol@example.com"))
	siptest.AssertReplied(t, res, 404)
	require.ErrorIs(t, res.Await(0).Err(), exec.ErrExitStatus)

	// A command that hangs is killed after its Timeout, in real time,
	// although the harness's clock stands still.
	var pid int
	h2 := siptest.NewHarness(t, func(c *tm.Context) {
		cmd := r.Command("/bin/sh", "-c", "sleep 100 & sleep 100")
		cmd.Timeout = 200 * time.Millisecond
		async.Await(c, cmd, func(res exec.Result, err error) {
			pid = res.Pid
			if errors.Is(err, exec.ErrTimeout) {
				_ = c.Reply(503, "Routing Unavailable")
				return
			}
			_ = c.Reply(500, err.Error())
		}, async.Timeout(2*time.Second))
	}, siptest.WithRealOps("exec"))
	res = h2.Send(siptest.NewRequest("INVITE", "sip:x@example.com"))
	siptest.AssertReplied(t, res, 503)
	requireGroupGone(t, pid)

	st := r.Stats()
	require.Equal(t, uint64(3), st.Started)
	require.Zero(t, st.InFlight)
}
