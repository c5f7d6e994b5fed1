package exectest_test

import (
	"errors"
	"io"
	"log/slog"
	"regexp"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/asyncsip/asyncsip/async"
	"github.com/asyncsip/asyncsip/modules/exec"
	"github.com/asyncsip/asyncsip/modules/exec/exectest"
	"github.com/asyncsip/asyncsip/siptest"
	"github.com/asyncsip/asyncsip/tm"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// scriptRoute is the OpenSIPS use case as a route: run the routing script
// with the callee, relay to the first line it prints; no route (exit
// status 1): 404; the script failed: 503.
func scriptRoute(r *exec.Runner, script string) func(*tm.Context) {
	return func(c *tm.Context) {
		cmd := r.Command(script, c.Recipient().User)
		cmd.Timeout = 300 * time.Millisecond
		async.Await(c, cmd, func(res exec.Result, err error) {
			switch {
			case errors.Is(err, exec.ErrExitStatus) && res.ExitCode == 1:
				_ = c.Reply(404, "No Route")
			case err != nil || len(res.Lines()) == 0:
				_ = c.Reply(503, "Routing Unavailable")
			default:
				_ = c.Relay(res.Lines()[0])
			}
		}, async.Timeout(2*time.Second))
	}
}

// The fake recognizes a route's command by program and arguments and
// answers for it: no process runs.
func TestFakeAnswersCommand(t *testing.T) {
	t.Parallel()
	r := exec.NewRunner(exec.Config{Logger: quiet})
	fake := exectest.New()
	bob := fake.On("./testdata/route.sh", "bob").Output("sip:bob@10.0.0.9:5060\n", 0)
	other := fake.On("./testdata/route.sh").Output("", 1)
	h := siptest.NewHarness(t, scriptRoute(r, "./testdata/route.sh"), siptest.WithFakes(fake))

	res := h.Send(siptest.NewRequest("INVITE", "sip:bob@example.com"))
	siptest.AssertRelayedTo(t, res, "sip:bob@10.0.0.9:5060")
	require.Equal(t, "exec: ./testdata/route.sh bob", res.Await(0).Desc)
	require.IsType(t, &exec.Cmd{}, res.Await(0).Op())
	assert.Contains(t, res.Await(0).String(), `exectest.Fake rule "./testdata/route.sh bob"`)

	res = h.Send(siptest.NewRequest("INVITE", "sip:carol@example.com"))
	siptest.AssertReplied(t, res, 404)
	require.ErrorIs(t, res.Await(0).Err(), exec.ErrExitStatus, "a non-zero exit status comes with its error")

	require.Equal(t, 1, bob.Hits())
	require.Equal(t, 1, other.Hits())
	require.Equal(t, []string{"./testdata/route.sh bob", "./testdata/route.sh carol"}, fake.Seen())
	require.Zero(t, r.Stats().Started, "a faked command does not run")
}

// Rules are tried in order: by regexp on the command line, by program
// whatever its arguments; failures and kills read as the real ones.
func TestFakeRulesInOrder(t *testing.T) {
	t.Parallel()
	r := exec.NewRunner(exec.Config{Logger: quiet})
	fake := exectest.New()
	fake.On("/usr/local/bin/lcr").Output("sip:gw@10.0.0.4\n", 0)
	fake.OnRegexp(regexp.MustCompile(`^/usr/bin/blocklist \+1900`)).Output("", 1)
	fake.On("/usr/bin/blocklist", "+1555").Result(exec.Result{ExitCode: -1, Signal: 9})
	fake.On("/usr/bin/blocklist", "+1666").Fail(exec.ErrTimeout)
	fake.On("/usr/bin/blocklist").Output("", 0)
	route := func(c *tm.Context) {
		async.Await(c, r.Command("/usr/bin/blocklist", c.Recipient().User), func(_ exec.Result, err error) {
			if err != nil {
				c.Set("err", err)
				_ = c.Reply(403, "")
				return
			}
			async.Await(c, r.Command("/usr/local/bin/lcr", "--number", c.Recipient().User), func(res exec.Result, err error) {
				if err != nil {
					_ = c.Reply(503, "")
					return
				}
				_ = c.Relay(res.Lines()[0])
			})
		})
	}
	h := siptest.NewHarness(t, route, siptest.WithFakes(fake))
	siptest.AssertReplied(t, h.Send(siptest.NewRequest("INVITE", "sip:+19005550000@example.com")), 403)
	res := h.Send(siptest.NewRequest("INVITE", "sip:+15551234@example.com"))
	siptest.AssertRelayedTo(t, res, "sip:gw@10.0.0.4")
	assert.Equal(t, "exec: /usr/local/bin/lcr --number +15551234", res.Await(1).Desc)
	for _, tc := range []struct {
		user string
		want error
	}{{"+1555", exec.ErrSignaled}, {"+1666", exec.ErrTimeout}} {
		res = h.Send(siptest.NewRequest("INVITE", "sip:"+tc.user+"@example.com"))
		siptest.AssertReplied(t, res, 403)
		err, _ := tm.Value[error](res.Context(), "err")
		assert.ErrorIs(t, err, tc.want)
	}
	assert.Len(t, fake.Seen(), 5)
}
