package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/asyncsip/asyncsip/internal/sipp"
	"github.com/asyncsip/asyncsip/internal/testenv"
)

// readmeGoLine is the README's one `go run` line.
func readmeGoLine(t *testing.T) sipp.Command {
	t.Helper()
	run := sipp.ReadmeLines(t, "README.md", "go")
	require.Len(t, run, 1, "the README starts the balancer once")
	require.GreaterOrEqual(t, len(run[0].Args), 2)
	require.Equal(t, []string{"run", "./examples/loadbalancer"}, run[0].Args[:2])
	return run[0]
}

func writeFile(path, s string) error { return os.WriteFile(path, []byte(s), 0o600) }

// The README's command lines, run as written from the repository root
// (only the ports are moved to free ones): the balancer, two UASes and
// 100 calls — all successful, shared by both UASes, and seen by the
// metrics.
func TestReadmeSIPp(t *testing.T) {
	sipp.Path(t) // skips without SIPp, fails under CI=true
	root, err := filepath.Abs(filepath.Join("..", ".."))
	require.NoError(t, err)
	// Ports below the ephemeral range: the balancer binds its port only
	// after the build, and a port 0 bound meanwhile must not take it.
	ps := testenv.StaticPorts(t, 5)
	ports := map[int]int{5060: ps[0], 5070: ps[1], 5071: ps[2], 5090: ps[3], 9090: ps[4]}

	lb := sipp.StartGoRun(t, readmeGoLine(t).MapPorts(ports), root, t.TempDir(),
		func() bool { return testenv.UDPPortBound(ports[5060]) })

	cmds := sipp.ReadmeCommands(t, "README.md")
	require.Len(t, cmds, 3, "two UASes and the calls")
	uas1 := sipp.StartCommand(t, cmds[0].MapPorts(ports), root, 2*time.Minute)
	uas2 := sipp.StartCommand(t, cmds[1].MapPorts(ports), root, 2*time.Minute)
	res := sipp.RunCommand(t, cmds[2].MapPorts(ports), root, time.Minute)
	require.Zero(t, res.ExitCode, "%s\n%s\n%s", cmds[2], res, lb.Output())
	require.Equal(t, 100, res.Successful, "%s\n%s", cmds[2], res)
	require.Zero(t, res.Failed)

	metrics := scrape(t, fmt.Sprintf("http://127.0.0.1:%d/metrics", ports[9090]))
	assert.Contains(t, metrics, `asyncsip_dialog_calls_total{step="confirmed"} 100`)
	for _, p := range []int{ports[5070], ports[5071]} {
		assert.Contains(t, metrics, fmt.Sprintf(`asyncsip_dispatcher_target_up{set="dst",uri="sip:127.0.0.1:%d"} 1`, p))
	}

	// The UASes end the calls they answered (SIGUSR1 quits once calls in
	// progress end): together they had all 100, each a share.
	r1, r2 := uas1.Stop(), uas2.Stop()
	assert.Equal(t, 100, r1.Successful+r2.Successful, "%s\n%s", r1, r2)
	assert.Positive(t, r1.Successful, "least-loaded uses both")
	assert.Positive(t, r2.Successful, "least-loaded uses both")
}

func scrape(t *testing.T, url string) string {
	t.Helper()
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, 200, resp.StatusCode)
	return strings.ReplaceAll(string(b), "\r", "")
}
