package dispatcher_test

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/asyncsip/asyncsip"
	"github.com/asyncsip/asyncsip/internal/testenv"
	"github.com/asyncsip/asyncsip/modules/dispatcher"
	"github.com/asyncsip/asyncsip/tm"
)

// uas is a raw UDP SIP endpoint on a loopback address that answers every
// request 200 while it is alive, and nothing once it is "dead".
type uas struct {
	conn     *net.UDPConn
	dead     atomic.Bool
	options  atomic.Int64
	messages atomic.Int64
	done     chan struct{}
}

func startUAS(t *testing.T, ip string) *uas {
	t.Helper()
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP(ip)})
	if err != nil {
		t.Skipf("cannot bind %s (loopback aliases needed): %v", ip, err)
	}
	u := &uas{conn: conn, done: make(chan struct{})}
	go u.serve()
	t.Cleanup(func() {
		_ = conn.Close()
		<-u.done
	})
	return u
}

func (u *uas) serve() {
	defer close(u.done)
	buf := make([]byte, 65535)
	for {
		n, from, err := u.conn.ReadFromUDP(buf)
		if err != nil {
			return
		}
		msg, err := sip.ParseMessage(append([]byte(nil), buf[:n]...))
		req, ok := msg.(*sip.Request)
		if err != nil || !ok || u.dead.Load() {
			continue
		}
		switch req.Method {
		case sip.OPTIONS:
			u.options.Add(1)
		case sip.MESSAGE:
			u.messages.Add(1)
		}
		resp := sip.NewResponseFromRequest(req, 200, "OK", nil)
		_, _ = u.conn.WriteToUDP([]byte(resp.String()), from)
	}
}

func (u *uas) uri() string { return "sip:" + u.conn.LocalAddr().String() }

// eventually is testenv.Eventually with this file's argument order: a
// bounded wait for something real time and the network decide.
func eventually(t *testing.T, limit time.Duration, cond func() bool, what string) {
	t.Helper()
	testenv.Eventually(t, limit, what, cond)
}

// The real server on loopback in front of two UDP targets on 127.0.0.2 and
// 127.0.0.3, probed every 200 ms: calls share them; when one stops
// answering it is taken down by probing and calls go to the other only;
// when it answers again it is brought back and gets calls again.
func TestRealServerMovesCallsOffDeadTarget(t *testing.T) {
	a, b := startUAS(t, "127.0.0.2"), startUAS(t, "127.0.0.3")
	d, err := dispatcher.New(dispatcher.Config{
		Sets: []dispatcher.SetConfig{{ID: "gw", Targets: []dispatcher.Target{{URI: a.uri()}, {URI: b.uri()}}}},
		Probe: dispatcher.ProbeConfig{
			Interval: 200 * time.Millisecond, Timeout: 200 * time.Millisecond, FailAfter: 3, RecoverAfter: 2,
		},
	})
	require.NoError(t, err)
	srv, err := asyncsip.New(asyncsip.Config{Listen: []string{"udp:127.0.0.1:0"}, Workers: 2})
	require.NoError(t, err)
	srv.Request(func(c *tm.Context) { _ = d.Relay(c, "gw") })
	require.NoError(t, srv.Start())
	prober, err := d.Start(srv.Core(), srv.Group())
	require.NoError(t, err)
	defer func() {
		prober.Stop()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		require.NoError(t, srv.Shutdown(ctx))
	}()
	proxy := srv.Addrs()[0]
	cli, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(proxy))
	require.NoError(t, err)
	defer cli.Close()

	var seq atomic.Int64
	call := func() int {
		t.Helper()
		i := seq.Add(1)
		local := cli.LocalAddr().String()
		msg := strings.Join([]string{
			fmt.Sprintf("MESSAGE sip:svc@%s SIP/2.0", proxy),
			fmt.Sprintf("Via: SIP/2.0/UDP %s;branch=z9hG4bK-disp-%d;rport", local, i),
			"Max-Forwards: 70",
			fmt.Sprintf("From: <sip:alice@%s>;tag=a%d", local, i),
			"To: <sip:svc@example.com>",
			fmt.Sprintf("Call-ID: disp-%d@test", i),
			"CSeq: 1 MESSAGE",
			"Content-Length: 0", "", ""}, "\r\n")
		_, err := cli.Write([]byte(msg))
		require.NoError(t, err)
		buf := make([]byte, 65535)
		for {
			require.NoError(t, cli.SetReadDeadline(time.Now().Add(5*time.Second)))
			n, err := cli.Read(buf)
			require.NoError(t, err, "no final answer to call %d", i)
			resp, err := sip.ParseMessage(append([]byte(nil), buf[:n]...))
			require.NoError(t, err)
			r, ok := resp.(*sip.Response)
			if ok && r.StatusCode >= 200 && *r.CallID() == sip.CallIDHeader(fmt.Sprintf("disp-%d@test", i)) {
				return r.StatusCode
			}
		}
	}
	calls := func(n int) (toA, toB int64) {
		a0, b0 := a.messages.Load(), b.messages.Load()
		for i := 0; i < n; i++ {
			require.Equal(t, 200, call())
		}
		return a.messages.Load() - a0, b.messages.Load() - b0
	}

	eventually(t, 5*time.Second, func() bool { return a.options.Load() >= 2 && b.options.Load() >= 2 }, "both targets probed")
	toA, toB := calls(20)
	assert.Equal(t, [2]int64{10, 10}, [2]int64{toA, toB}, "round-robin over both")

	b.dead.Store(true)
	eventually(t, 5*time.Second, func() bool { return !d.Up(b.uri()) }, "the silent target taken down")
	toA, toB = calls(20)
	assert.Equal(t, [2]int64{20, 0}, [2]int64{toA, toB}, "every call on the live target")

	b.dead.Store(false)
	eventually(t, 5*time.Second, func() bool { return d.Up(b.uri()) }, "the target back")
	toA, toB = calls(20)
	assert.Equal(t, [2]int64{10, 10}, [2]int64{toA, toB}, "both again")

	st := d.Stats()
	assert.Equal(t, uint64(1), st.Downs)
	assert.Equal(t, uint64(1), st.Ups)
	assert.NotZero(t, st.ProbesFailed)
	assert.NotZero(t, srv.Stats().Originated.Started, "probes are tm originated requests")
}
