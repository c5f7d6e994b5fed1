package e2e

// Interop tests: the real server (asyncsip.New on udp:127.0.0.1:0) driven by
// SIPp on loopback. The scenarios are in testdata/sipp/; each test is
// bounded by the SIPp timeouts it passes and by the server's short timers.

import (
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/asyncsip/asyncsip"
	"github.com/asyncsip/asyncsip/internal/e2e/e2etest"
	"github.com/asyncsip/asyncsip/internal/sipp"
	"github.com/asyncsip/asyncsip/tm"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// scenario returns the path of a SIPp scenario in testdata/sipp, or the
// Record-Route-aware call scenarios shipped with internal/sipp (sipp.UAC,
// sipp.UAS) as they are.
func scenario(name string) string {
	if name == sipp.UAC || name == sipp.UAS {
		return name
	}
	return filepath.Join("testdata", "sipp", name)
}

// proxy is a running asyncsip server for one test.
type proxy struct {
	srv  *asyncsip.Server
	addr string // "127.0.0.1:port", SIPp's remote
	port int
}

// startProxy starts a server on udp:127.0.0.1:0 with 2 workers unless cfg
// says otherwise. It is shut down, and the process's descriptors checked,
// when the test ends.
func startProxy(t testing.TB, cfg asyncsip.Config, routes tm.Routes) *proxy {
	t.Helper()
	srv := e2etest.StartServer(t, cfg, routes)
	a := srv.Addrs()[0]
	return &proxy{srv: srv, addr: a.String(), port: int(a.Port())}
}

// relayTo is the request route of most tests: requests that came back
// through our signed Record-Route (ACK for 2xx, BYE) follow their Route
// set and Request-URI; any other request is relayed to target, a UAS.
// (tm refuses an in-dialog request without our Route before the route
// runs.)
func relayTo(target string) func(c *tm.Context) {
	return func(c *tm.Context) {
		if c.InDialog() {
			_ = c.Relay()
			return
		}
		_ = c.Relay(target)
	}
}

// startUAS runs a SIPp UAS scenario (see scenario) on a free port in the
// background and returns the port it holds.
func startUAS(t testing.TB, file string, timeout time.Duration, keys map[string]string) (*sipp.Process, int) {
	t.Helper()
	p := sipp.Start(t, sipp.Config{Scenario: scenario(file), Timeout: timeout, Keys: keys})
	return p, p.Port()
}

// runUAC runs a SIPp client in the foreground, on a free port unless cfg
// says otherwise (sipp.Run picks one: SIPp's default, 5060 or the next
// free one, is where every other SIPp run on the machine binds too, and a
// late response meant for a previous run's UAC would land in this one).
func runUAC(t testing.TB, cfg sipp.Config) sipp.Result {
	t.Helper()
	return sipp.Run(t, cfg)
}

// requireAllOK checks a SIPp client run: exit status 0, every call
// successful, none failed.
func requireAllOK(t testing.TB, res sipp.Result, calls int) {
	t.Helper()
	require.Equal(t, 0, res.ExitCode, res.String())
	require.Equal(t, calls, res.Successful, res.String())
	require.Zero(t, res.Failed, res.String())
}

// requireUASOK stops a background SIPp UAS and checks that it saw calls
// successful calls and no failure (a check_it regexp that did not match
// fails the call and logs "Failed regexp match").
func requireUASOK(t testing.TB, p *sipp.Process, calls int) {
	t.Helper()
	res := p.Stop()
	require.Equal(t, calls, res.Successful, "UAS: %s", res.String())
	require.Zero(t, res.Failed, "UAS: %s", res.String())
	require.NotContains(t, res.Errors, "Failed regexp match", "UAS: %s", res.String())
}

func uri(user string, port int) string { return "sip:" + user + "@127.0.0.1:" + strconv.Itoa(port) }
