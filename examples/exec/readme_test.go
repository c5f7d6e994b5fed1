package main

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/asyncsip/asyncsip/internal/sipp"
	"github.com/asyncsip/asyncsip/internal/testenv"
)

// The README's command lines, run as written from the directories they
// assume (only the ports are moved to free ones): the script the README
// writes, the proxy running it, a gateway and a call with SIPp — one
// successful call on each side, ACK and BYE through the proxy.
func TestReadmeSIPp(t *testing.T) {
	sipp.Path(t) // skips without SIPp, fails under CI=true
	root, err := filepath.Abs(filepath.Join("..", ".."))
	require.NoError(t, err)
	// Ports below the ephemeral range: the proxy binds its port only after
	// the build, and a port 0 bound meanwhile must not take it.
	ps := testenv.StaticPorts(t, 3)
	ports := map[int]int{5060: ps[0], 5080: ps[1], 5090: ps[2]}
	work := t.TempDir() // where the user writes route.sh and runs the proxy

	script := readmeHeredoc(t, "README.md", "route.sh")
	script = strings.ReplaceAll(script, ":5080", ":"+strconv.Itoa(ports[5080]))
	require.NoError(t, os.WriteFile(filepath.Join(work, "route.sh"), []byte(script), 0o755)) // chmod +x

	run := sipp.ReadmeLines(t, "README.md", "go")
	require.Len(t, run, 1, "the README starts the proxy once")
	sipp.StartGoRun(t, run[0].MapPorts(ports), root, work, func() bool { return testenv.UDPPortBound(ports[5060]) })

	cmds := sipp.ReadmeCommands(t, "README.md")
	require.Len(t, cmds, 2, "a gateway and a call")
	gw := sipp.StartCommand(t, cmds[0].MapPorts(ports), root, time.Minute)
	res := sipp.RunCommand(t, cmds[1].MapPorts(ports), root, time.Minute)
	require.Zero(t, res.ExitCode, "%s\n%s", cmds[1], res)
	require.Equal(t, 1, res.Successful, "%s\n%s", cmds[1], res)
	gres := gw.Wait(30 * time.Second)
	assert.Equal(t, 1, gres.Successful, "the gateway: %s\n%s", cmds[0], gres)
}

// readmeHeredoc returns the body of the README's `cat > file <<'END'`
// here-document, with a final newline.
func readmeHeredoc(t *testing.T, readme, file string) string {
	t.Helper()
	b, err := os.ReadFile(readme)
	require.NoError(t, err)
	var body []string
	end := ""
	for _, line := range strings.Split(string(b), "\n") {
		switch {
		case end == "" && strings.HasPrefix(line, "cat > "+file+" <<'"):
			end = strings.TrimSuffix(strings.TrimPrefix(line, "cat > "+file+" <<'"), "'")
			require.NotEmpty(t, end, "here-document delimiter in %q", line)
		case end != "" && line == end:
			return strings.Join(body, "\n") + "\n"
		case end != "":
			body = append(body, line)
		}
	}
	t.Fatalf("%s: no complete `cat > %s <<'…'` here-document", readme, file)
	return ""
}
