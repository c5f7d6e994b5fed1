package ratelimit_test

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/asyncsip/asyncsip"
	"github.com/asyncsip/asyncsip/internal/testenv"
	"github.com/asyncsip/asyncsip/modules/ratelimit"
	"github.com/asyncsip/asyncsip/tm"
)

// A flood through the real server on loopback: the flooding source gets
// exactly Burst answers, then nothing (dropped, not answered) until its
// ban ends; another source is served meanwhile; a scanner gets nothing.
func TestFloodThroughServer(t *testing.T) {
	fds := testenv.CountFDs()
	t.Cleanup(func() { assert.Equal(t, fds, testenv.CountFDs(), "fds back to baseline") })
	rl := ratelimit.New(ratelimit.Config{Rate: 0.001, Burst: 10, BanFor: 700 * time.Millisecond})
	srv, err := asyncsip.New(asyncsip.Config{Listen: []string{"udp:127.0.0.1:0", "udp:[::1]:0"}, Workers: 2})
	require.NoError(t, err)
	srv.Request(func(c *tm.Context) {
		if !rl.Check(c) || ratelimit.IsScanner(c.Req()) {
			c.Drop()
			return
		}
		_ = c.Reply(200, "OK")
	})
	require.NoError(t, srv.Start())
	job, err := rl.Start(srv.Group())
	require.NoError(t, err)
	defer func() {
		job.Stop()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		require.NoError(t, srv.Shutdown(ctx))
	}()
	v4, v6 := srv.Addrs()[0], srv.Addrs()[1]

	flood := dial(t, "udp4", v4.String())
	for i := 0; i < 100; i++ {
		send(t, flood, fmt.Sprintf("flood-%d", i), "")
	}
	assert.Equal(t, 10, countAnswers(t, flood, 2*time.Second), "Burst answers, the rest dropped")
	assert.True(t, rl.Stats().Bans >= 1)

	other := dial(t, "udp6", v6.String())
	send(t, other, "other", "")
	assert.Equal(t, 1, countAnswers(t, other, 2*time.Second), "another source is served")

	scan := dial(t, "udp6", v6.String())
	send(t, scan, "scan", "User-Agent: friendly-scanner\r\n")
	assert.Zero(t, countAnswers(t, scan, 300*time.Millisecond), "a scanner gets nothing")

	time.Sleep(800 * time.Millisecond) // the ban ends
	send(t, flood, "after-ban", "")
	assert.Equal(t, 1, countAnswers(t, flood, 2*time.Second), "served again once the ban ended")
}

func dial(t *testing.T, network, addr string) *net.UDPConn {
	t.Helper()
	ra, err := net.ResolveUDPAddr(network, addr)
	require.NoError(t, err)
	c, err := net.DialUDP(network, nil, ra)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func send(t *testing.T, c *net.UDPConn, callID, extra string) {
	t.Helper()
	la := c.LocalAddr().(*net.UDPAddr)
	host := la.IP.String()
	if la.IP.To4() == nil {
		host = "[" + host + "]"
	}
	msg := strings.ReplaceAll(fmt.Sprintf(`OPTIONS sip:ping@%s SIP/2.0
Via: SIP/2.0/UDP %s:%d;branch=z9hG4bK-%s;rport
Max-Forwards: 70
From: <sip:rl@example.com>;tag=1
To: <sip:ping@example.com>
Call-ID: %s
CSeq: 1 OPTIONS
%sContent-Length: 0

`, c.RemoteAddr(), host, la.Port, callID, callID, strings.ReplaceAll(extra, "\r", "")), "\n", "\r\n")
	_, err := c.Write([]byte(msg))
	require.NoError(t, err)
}

// countAnswers counts the 200 responses: it waits up to first for the
// first one, then stops once none came for 300 ms.
func countAnswers(t *testing.T, c *net.UDPConn, first time.Duration) int {
	t.Helper()
	buf := make([]byte, 4096)
	n := 0
	wait := first
	for {
		require.NoError(t, c.SetReadDeadline(time.Now().Add(wait)))
		k, err := c.Read(buf)
		if err != nil {
			return n
		}
		if strings.HasPrefix(string(buf[:k]), "SIP/2.0 200 ") {
			n++
			wait = 300 * time.Millisecond
		}
	}
}
