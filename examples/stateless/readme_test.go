package main

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/asyncsip/asyncsip/internal/sipp"
	"github.com/asyncsip/asyncsip/internal/testenv"
)

// The README's command lines, run as written from the directories they
// assume (only the ports are moved to free ones): the balancer, two
// backends and a call — successful for the caller and for exactly one of
// the backends (which one depends on the Call-ID's hash).
func TestReadmeSIPp(t *testing.T) {
	sipp.Path(t) // skips without SIPp, fails under CI=true
	root, err := filepath.Abs(filepath.Join("..", ".."))
	require.NoError(t, err)
	// Ports below the ephemeral range: the balancer binds its port only
	// after the build, and a port 0 bound meanwhile must not take it.
	ps := testenv.StaticPorts(t, 4)
	ports := map[int]int{5060: ps[0], 5070: ps[1], 5071: ps[2], 5090: ps[3]}

	run := sipp.ReadmeLines(t, "README.md", "go")
	require.Len(t, run, 1, "the README starts the balancer once")
	sipp.StartGoRun(t, run[0].MapPorts(ports), root, t.TempDir(), func() bool { return testenv.UDPPortBound(ports[5060]) })

	cmds := sipp.ReadmeCommands(t, "README.md")
	require.Len(t, cmds, 3, "two backends and a call")
	b1 := sipp.StartCommand(t, cmds[0].MapPorts(ports), root, time.Minute)
	b2 := sipp.StartCommand(t, cmds[1].MapPorts(ports), root, time.Minute)
	res := sipp.RunCommand(t, cmds[2].MapPorts(ports), root, time.Minute)
	require.Zero(t, res.ExitCode, "%s\n%s", cmds[2], res)
	require.Equal(t, 1, res.Successful, "%s\n%s", cmds[2], res)

	// The caller got the 200 to its BYE, so the backend that had the call
	// is in its final timewait: stopping both (as the README says) lets it
	// finish the call (SIGUSR1 quits once calls in progress end); the
	// other had none.
	r1, r2 := b1.Stop(), b2.Stop()
	assert.Equal(t, 1, r1.Successful+r2.Successful, "exactly one backend got the call:\n%s\n%s", r1, r2)
}
