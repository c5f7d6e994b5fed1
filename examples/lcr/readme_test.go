package main

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/asyncsip/asyncsip/internal/sipp"
	"github.com/asyncsip/asyncsip/internal/testenv"
	"github.com/asyncsip/asyncsip/modules/db"
)

// The README's command lines, run as written from the directories they
// assume (only the ports are moved to free ones): the proxy, the route
// inserted, a gateway and a call with SIPp — one successful call on each
// side, ACK and BYE through the proxy.
func TestReadmeSIPp(t *testing.T) {
	sipp.Path(t) // skips without SIPp, fails under CI=true
	root, err := filepath.Abs(filepath.Join("..", ".."))
	require.NoError(t, err)
	// Ports below the ephemeral range: the proxy binds its port only after
	// the build, and a port 0 bound meanwhile must not take it.
	ps := testenv.StaticPorts(t, 3)
	ports := map[int]int{5060: ps[0], 5080: ps[1], 5090: ps[2]}
	work := t.TempDir() // where the user runs the proxy: lcr.db lands there

	run := sipp.ReadmeLines(t, "README.md", "go")
	require.Len(t, run, 1, "the README starts the proxy once")
	sipp.StartGoRun(t, run[0].MapPorts(ports), root, work, func() bool { return testenv.UDPPortBound(ports[5060]) })

	// The sqlite3 line: its statement, on the file it names (through the
	// embedded driver, so that the test does not need the sqlite3 shell).
	ins := sipp.ReadmeLines(t, "README.md", "sqlite3")
	require.Len(t, ins, 1)
	require.Len(t, ins[0].Args, 2, "sqlite3 FILE STATEMENT")
	line := ins[0].MapPorts(ports)
	h, err := db.Open(db.DriverSQLite, filepath.Join(work, line.Args[0]))
	require.NoError(t, err)
	_, err = h.ExecContext(context.Background(), line.Args[1])
	require.NoError(t, err, "%s", ins[0])
	require.NoError(t, h.Close())

	cmds := sipp.ReadmeCommands(t, "README.md")
	require.Len(t, cmds, 2, "a gateway and a call")
	gw := sipp.StartCommand(t, cmds[0].MapPorts(ports), root, time.Minute)
	res := sipp.RunCommand(t, cmds[1].MapPorts(ports), root, time.Minute)
	require.Zero(t, res.ExitCode, "%s\n%s", cmds[1], res)
	require.Equal(t, 1, res.Successful, "%s\n%s", cmds[1], res)
	gres := gw.Wait(30 * time.Second)
	assert.Equal(t, 1, gres.Successful, "the gateway: %s\n%s", cmds[0], gres)
}
