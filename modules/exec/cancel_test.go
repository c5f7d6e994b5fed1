package exec_test

import (
	"fmt"
	"net"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/stretchr/testify/require"

	"github.com/asyncsip/asyncsip/async"
	"github.com/asyncsip/asyncsip/modules/exec"
	"github.com/asyncsip/asyncsip/tm"
)

// A CANCEL while the route waits on a command: through the real server on
// 127.0.0.1, the caller gets 200 for the CANCEL and 487 for the INVITE at
// once (not after the command's 30 s), the command's process group is
// killed, and the resume never runs.
func TestCancelKillsCommand(t *testing.T) {
	checkClean(t)
	path, readPid := pidFile(t)
	r := exec.NewRunner(exec.Config{Logger: quiet})
	var resumed atomic.Int64
	addr := startServer(t, tm.Timers{}, func(c *tm.Context) {
		cmd := r.Command("/bin/sh", "-c", `echo $$ > "$1.tmp"; mv "$1.tmp" "$1"; exec sleep 30`, "sh", path)
		async.Await(c, cmd, func(exec.Result, error) { resumed.Add(1) }, async.Timeout(time.Minute))
	})

	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	defer conn.Close()
	proxy, err := net.ResolveUDPAddr("udp", addr)
	require.NoError(t, err)
	send := func(method string) {
		msg := fmt.Sprintf("%s sip:bob@%s SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bK-cancel-exec\r\n"+
			"Max-Forwards: 70\r\nFrom: <sip:alice@127.0.0.1>;tag=a1\r\nTo: <sip:bob@127.0.0.1>\r\n"+
			"Call-ID: cancel-exec\r\nCSeq: 1 %s\r\nContent-Length: 0\r\n\r\n", method, addr, conn.LocalAddr(), method)
		_, err := conn.WriteToUDP([]byte(msg), proxy)
		require.NoError(t, err)
	}
	recv := func() *sip.Response {
		buf := make([]byte, 65535)
		require.NoError(t, conn.SetReadDeadline(time.Now().Add(5*time.Second)))
		n, _, err := conn.ReadFromUDP(buf)
		require.NoError(t, err, "no response within 5 s")
		m, err := sip.ParseMessage(buf[:n])
		require.NoError(t, err)
		resp, ok := m.(*sip.Response)
		require.True(t, ok, "got a request: %s", m)
		return resp
	}

	send("INVITE")
	require.Equal(t, 100, recv().StatusCode)
	waitFor(t, 5*time.Second, func() string {
		if _, err := os.Stat(path); err != nil {
			return "command did not start"
		}
		return ""
	})
	pid := readPid()
	require.NotEmpty(t, groupAlive(pid))

	send("CANCEL")
	got := map[string]int{}
	for len(got) < 2 {
		resp := recv()
		got[resp.CSeq().MethodName.String()] = resp.StatusCode
	}
	require.Equal(t, map[string]int{"CANCEL": 200, "INVITE": 487}, got)
	requireGroupGone(t, pid)
	require.Equal(t, uint64(1), r.Stats().Kills(exec.KillCancelled), "killed because the op was cancelled")
	send("ACK")
	require.Zero(t, resumed.Load(), "the resume never runs")
	waitFor(t, 5*time.Second, func() string {
		if r.Stats().InFlight != 0 {
			return "command still in flight"
		}
		return ""
	})
}
