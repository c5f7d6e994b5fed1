package main

import (
	"net"
	"net/http"
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
// assume (only the ports are moved to free ones), with an API answering
// the README's JSON: the proxy, a gateway and a call with SIPp — one
// successful call on each side, ACK and BYE through the proxy.
func TestReadmeSIPp(t *testing.T) {
	sipp.Path(t) // skips without SIPp, fails under CI=true
	root, err := filepath.Abs(filepath.Join("..", ".."))
	require.NoError(t, err)
	// Ports below the ephemeral range: the proxy binds its port only after
	// the build, and a port 0 bound meanwhile must not take it.
	ps := testenv.StaticPorts(t, 3)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ports := map[int]int{
		5060: ps[0], 5080: ps[1], 5090: ps[2],
		8080: ln.Addr().(*net.TCPAddr).Port, // bound here, before the proxy starts
	}

	answer := strings.ReplaceAll(readmeJSON(t), ":5080", ":"+strconv.Itoa(ports[5080]))
	asked := make(chan string, 10)
	api := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case asked <- r.URL.RequestURI():
		default:
		}
		if r.URL.Path != "/route" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(answer))
	})}
	go func() { _ = api.Serve(ln) }()
	t.Cleanup(func() { _ = api.Close() })

	run := sipp.ReadmeLines(t, "README.md", "go")
	require.Len(t, run, 1, "the README starts the proxy once")
	sipp.StartGoRun(t, run[0].MapPorts(ports), root, t.TempDir(), func() bool { return testenv.UDPPortBound(ports[5060]) })

	cmds := sipp.ReadmeCommands(t, "README.md")
	require.Len(t, cmds, 2, "a gateway and a call")
	gw := sipp.StartCommand(t, cmds[0].MapPorts(ports), root, time.Minute)
	res := sipp.RunCommand(t, cmds[1].MapPorts(ports), root, time.Minute)
	require.Zero(t, res.ExitCode, "%s\n%s", cmds[1], res)
	require.Equal(t, 1, res.Successful, "%s\n%s", cmds[1], res)
	gres := gw.Wait(30 * time.Second)
	assert.Equal(t, 1, gres.Successful, "the gateway: %s\n%s", cmds[0], gres)

	// One lookup, for the INVITE, as the README says; ACK and BYE follow
	// the Route without asking.
	require.Len(t, asked, 1, "API calls")
	assert.Equal(t, "/route?from=sipp&to=%2B15551234", <-asked)
}

// readmeJSON returns the README's ```json block.
func readmeJSON(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("README.md")
	require.NoError(t, err)
	_, rest, ok := strings.Cut(string(b), "```json\n")
	require.True(t, ok, "README.md has a ```json block")
	block, _, ok := strings.Cut(rest, "```")
	require.True(t, ok)
	return block
}
