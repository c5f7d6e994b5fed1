package dns_test

// End to end through the real asyncsip server: a request for a domain is
// resolved by SRV (the route awaits Resolve), relayed to the first target,
// and the failure route fails over to the second target on 503 or timeout.

import (
	"context"
	"fmt"
	"github.com/asyncsip/asyncsip/internal/testenv"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/stretchr/testify/require"

	"github.com/asyncsip/asyncsip"
	"github.com/asyncsip/asyncsip/async"
	"github.com/asyncsip/asyncsip/modules/dns"
	"github.com/asyncsip/asyncsip/tm"
)

// uas is a UDP user agent server that answers every request with code
// (0: never answers) and counts the requests it got (got) and the distinct
// calls among them (retransmissions with T1 = 20 ms are common).
type uas struct {
	conn  *net.UDPConn
	got   atomic.Int64
	mu    sync.Mutex
	calls map[string]bool
	wg    sync.WaitGroup
}

// callCount returns the distinct Call-IDs received.
func (u *uas) callCount() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.calls)
}

func startUAS(t *testing.T, code int) *uas {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	u := &uas{conn: c, calls: map[string]bool{}}
	u.wg.Add(1)
	go func() {
		defer u.wg.Done()
		buf := make([]byte, 65535)
		for {
			n, from, err := c.ReadFromUDP(buf)
			if err != nil {
				return // closed
			}
			m, err := sip.ParseMessage(append([]byte(nil), buf[:n]...))
			req, ok := m.(*sip.Request)
			if err != nil || !ok || req.Method == sip.ACK {
				continue
			}
			u.got.Add(1)
			if id := req.CallID(); id != nil {
				u.mu.Lock()
				u.calls[id.Value()] = true
				u.mu.Unlock()
			}
			if code == 0 {
				continue
			}
			resp := sip.NewResponseFromRequest(req, code, "Test", nil)
			_, _ = c.WriteToUDP([]byte(resp.String()), from)
		}
	}()
	t.Cleanup(func() { c.Close(); u.wg.Wait() })
	return u
}

func (u *uas) port() int { return u.conn.LocalAddr().(*net.UDPAddr).Port }

// startProxy runs asyncsip with the failover routes over r.
func startProxy(t *testing.T, r *dns.Resolver, resolved *atomic.Int64) string {
	t.Helper()
	srv, err := asyncsip.New(asyncsip.Config{
		Listen:  []string{"udp:127.0.0.1:0"},
		Workers: 2,
		Core:    tm.Config{Timers: tm.Timers{T1: 20 * time.Millisecond}, Resolver: r.Lookup},
	})
	require.NoError(t, err)
	srv.Request(func(c *tm.Context) {
		async.Await(c, r.Resolve(c.Req().Recipient.String()), func(ts []dns.Target, err error) {
			if err != nil {
				_ = c.Reply(503, "DNS: "+string(dns.KindOf(err)))
				return
			}
			resolved.Add(1)
			if err := dns.Failover(c, ts); err != nil {
				_ = c.Reply(503, "No target")
			}
		}, async.Timeout(2*time.Second))
	})
	srv.Failure(func(c *tm.Context) { dns.FailoverNext(c) })
	require.NoError(t, srv.Start())
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		require.NoError(t, srv.Shutdown(ctx))
	})
	return srv.Addrs()[0].String()
}

// uac sends OPTIONS to the proxy and returns the final status code.
func uac(t *testing.T, proxy, ruri string, i int) int {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	defer c.Close()
	port := c.LocalAddr().(*net.UDPAddr).Port
	msg := fmt.Sprintf(`OPTIONS %s SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:%d;branch=z9hG4bK-dns-%d;rport
Max-Forwards: 70
From: <sip:alice@127.0.0.1>;tag=a%d
To: <%s>
Call-ID: dns-failover-%d-%d
CSeq: 1 OPTIONS
Content-Length: 0

`, ruri, port, i, i, ruri, port, i)
	to, err := net.ResolveUDPAddr("udp", proxy)
	require.NoError(t, err)
	_, err = c.WriteToUDP([]byte(strings.ReplaceAll(msg, "\n", "\r\n")), to)
	require.NoError(t, err)
	buf := make([]byte, 65535)
	for {
		require.NoError(t, c.SetReadDeadline(time.Now().Add(10*time.Second)))
		n, _, err := c.ReadFromUDP(buf)
		require.NoError(t, err, "waiting for the final response")
		m, err := sip.ParseMessage(append([]byte(nil), buf[:n]...))
		require.NoError(t, err)
		if r, ok := m.(*sip.Response); ok && r.StatusCode >= 200 {
			return r.StatusCode
		}
	}
}

func TestFailoverThroughServer(t *testing.T) {
	for _, tc := range []struct {
		name      string
		firstCode int // 0: the first target never answers (Timer F → 408)
	}{
		{"first answers 503", 503},
		{"first is silent", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			testenv.CheckFDs(t)
			down, up := startUAS(t, tc.firstCode), startUAS(t, 200)
			z := newZone(t,
				fmt.Sprintf("_sip._udp.example.test. 60 IN SRV 10 1 %d down.example.test.", down.port()),
				fmt.Sprintf("_sip._udp.example.test. 60 IN SRV 20 1 %d up.example.test.", up.port()),
				"down.example.test. 60 IN A 127.0.0.1",
				"up.example.test. 60 IN A 127.0.0.1",
			)
			r := newResolver(t, dns.Config{Servers: []string{serve(t, z)}, IPv4Only: true, Transports: []string{"udp"}})
			var resolved atomic.Int64
			proxy := startProxy(t, r, &resolved)

			const calls = 3
			for i := range calls {
				require.Equal(t, 200, uac(t, proxy, "sip:bob@example.test", i), "call %d", i)
			}
			require.Equal(t, int64(calls), resolved.Load())
			require.Equal(t, calls, up.callCount(), "the second SRV target got every request")
			require.Equal(t, calls, down.callCount(), "the first SRV target was tried first")
			st := r.Stats()
			require.Equal(t, uint64(calls-1), st.SyncResolutions, "later calls resolve from the cache")
			require.Equal(t, 1, z.count("_sip._udp.example.test", "SRV"))

			// A domain that does not exist: 503 from the route, no relay.
			require.Equal(t, 503, uac(t, proxy, "sip:bob@nowhere.test", calls))
		})
	}
}
