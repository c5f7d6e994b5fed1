package sipp

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/asyncsip/asyncsip"
	"github.com/asyncsip/asyncsip/internal/testenv"
	"github.com/asyncsip/asyncsip/tm"
)

// SIPp UAC straight to a SIPp UAS: the runner itself works.
func TestUACtoUAS(t *testing.T) {
	port := testenv.FreeUDPPort(t)
	uas := Start(t, Config{Scenario: "uas", LocalPort: port, Timeout: 30 * time.Second})
	require.Equal(t, port, uas.Port())
	res := Run(t, Config{Scenario: "uac", Remote: "127.0.0.1:" + itoa(port), Service: "bob",
		Calls: 5, Rate: 50, Timeout: 20 * time.Second})
	require.Equal(t, 0, res.ExitCode, res.String())
	require.Equal(t, 5, res.Successful, res.String())
	require.Zero(t, res.Failed, res.String())
	uas.Stop() // bounded: SIGUSR1, then SIGKILL after 3 s
}

// UAC and UAS place calls through an asyncsip proxy: the UAS copies the
// signed Record-Route, the UAC sends ACK and BYE along it, and the proxy
// follows them (tm refuses in-dialog requests that do not).
func TestRecordRouteScenarios(t *testing.T) {
	Path(t)
	uas := Start(t, Config{Scenario: UAS, Timeout: 60 * time.Second})
	target := "sip:bob@127.0.0.1:" + itoa(uas.Port())
	srv, err := asyncsip.New(asyncsip.Config{Listen: []string{"udp:127.0.0.1:0"}, Workers: 2,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	require.NoError(t, err)
	srv.SetRoutes(tm.Routes{Request: func(c *tm.Context) {
		if c.InDialog() {
			_ = c.Relay()
			return
		}
		_ = c.Relay(target)
	}})
	require.NoError(t, srv.Start())
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		assert.NoError(t, srv.Shutdown(ctx))
	})
	const calls = 5
	res := Run(t, Config{Scenario: UAC, Remote: srv.Addrs()[0].String(), Service: "bob",
		Calls: calls, Rate: 20, Timeout: 30 * time.Second})
	require.Equal(t, 0, res.ExitCode, res.String())
	require.Equal(t, calls, res.Successful, res.String())
	require.Zero(t, res.Failed, res.String())
	ur := uas.Stop()
	require.Equal(t, calls, ur.Successful, ur.String())
	require.Zero(t, ur.Failed, ur.String())
	assert.Zero(t, srv.Stats().DropUnsigned, "every in-dialog request followed the signed route")
}

// A free port picked for SIPp but taken by another process before SIPp
// binds it: Start notices (SIPp exits, or the port is not SIPp's) and
// starts SIPp on another port. A port the test chose itself and that is
// taken fails the test with the reason.
func TestStartPortTaken(t *testing.T) {
	Path(t)
	held, err := net.ListenPacket("udp4", "127.0.0.1:0")
	require.NoError(t, err)
	defer held.Close()
	heldPort := held.LocalAddr().(*net.UDPAddr).Port

	var mu sync.Mutex
	picks := 0
	orig := pickPort
	pickPort = func(t testing.TB) int {
		mu.Lock()
		defer mu.Unlock()
		picks++
		if picks == 1 {
			return heldPort // taken "meanwhile"
		}
		return orig(t)
	}
	defer func() { pickPort = orig }()

	p := Start(t, Config{Scenario: "uas", Timeout: 30 * time.Second})
	require.NotEqual(t, heldPort, p.Port())
	require.Equal(t, 2, picks)
	own, ok := testenv.ProcessHoldsPort(p.cmd.Process.Pid, "udp", p.Port())
	require.True(t, ok && own, "SIPp holds the port it reports")

	// Run retries the same way.
	picks = 0
	uac := Run(t, Config{Scenario: "uac", Remote: "127.0.0.1:" + itoa(p.Port()), Service: "bob",
		Calls: 1, Timeout: 20 * time.Second})
	require.Equal(t, 0, uac.ExitCode, uac.String())
	require.Equal(t, 1, uac.Successful, uac.String())
	require.Equal(t, 2, picks)

	ft := &fatalT{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		Start(ft, Config{Scenario: "uas", LocalPort: heldPort, Timeout: 30 * time.Second})
	}()
	testenv.Wait(t, 30*time.Second, done, "Start on a taken port")
	require.Contains(t, ft.msg, "port "+itoa(heldPort)+" is held by another process")
	require.True(t, strings.Contains(ft.msg, "Unable to bind"), ft.msg)
}

// fatalT records Fatalf and ends the goroutine, as testing.T does.
type fatalT struct {
	testing.TB
	msg string
}

func (f *fatalT) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func itoa(i int) string { return strconv.Itoa(i) }

// A SIPp over TCP (-t t1) is ready once it listens on its port.
func TestStartTCPListener(t *testing.T) {
	Path(t)
	port := testenv.FreeTCPPort(t)
	p := Start(t, Config{Scenario: "uas", LocalPort: port, Timeout: 30 * time.Second, Args: []string{"-t", "t1"}})
	held, ok := testenv.ProcessHoldsPort(p.cmd.Process.Pid, "tcp", port)
	require.True(t, ok && held, "SIPp listens on TCP port %d", port)
	require.Equal(t, "t1", transportArg(p.cmd.Args))
	require.Equal(t, "", transportArg([]string{"-sn", "uas", "-t"}), "a trailing -t has no value")
}
