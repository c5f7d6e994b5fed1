package e2e

// Helpers of the reliability tests (reliability_*_test.go): a proxy built
// with the overload caps set, a UDP client that records every final
// response by Call-ID, and memory figures.

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/stretchr/testify/require"

	"github.com/asyncsip/asyncsip/internal/testenv"
	"github.com/asyncsip/asyncsip/reactor"
	"github.com/asyncsip/asyncsip/tm"
	"github.com/asyncsip/asyncsip/transport"
)

// cappedProxy is the server of asyncsip.New built from the same parts —
// reactor loops, a UDP listener of package transport, the tm core — with
// no facade around them: these tests leave transactions suspended on
// backends that never answer, and end them with tm's Close instead of
// waiting for a drain.
type cappedProxy struct {
	g    *reactor.Group
	core *tm.Server
	addr *net.UDPAddr
}

func startCappedProxy(t testing.TB, workers int, cfg tm.Config, routes tm.Routes) *cappedProxy {
	t.Helper()
	fds := testenv.CountFDs()
	t.Cleanup(func() { testenv.FDsBackTo(t, fds, 5*time.Second) })
	g, err := reactor.NewGroup(workers, reactor.Config{})
	require.NoError(t, err)
	core := tm.NewServer(g.Loops(), cfg, routes)
	udp, err := transport.ListenUDP(g, reactor.UDPConfig{Addr: "127.0.0.1:0", ReadBuffer: 4 << 20, WriteBuffer: 4 << 20}, "",
		transport.Core{
			Receive: func(l *reactor.Loop, b []byte, from netip.AddrPort, tp transport.Transport) {
				core.Receive(l, b, from, tp)
			},
			ConnectionFailed: func(tp transport.Transport, dst netip.AddrPort) { core.ConnectionFailed(tp, dst) },
		})
	require.NoError(t, err)
	core.AddTransport(udp)
	g.Start()
	p := &cappedProxy{g: g, core: core, addr: net.UDPAddrFromAddrPort(udp.LocalAddr())}
	t.Cleanup(func() {
		core.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		require.NoError(t, g.Stop(ctx))
		require.NoError(t, udp.Close())
	})
	return p
}

// tables returns the largest server and client transaction tables of the
// loops now (read on each loop).
func (p *cappedProxy) tables() (srv, cli int) {
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, l := range p.g.Loops() {
		l := l
		wg.Add(1)
		if err := l.Post(func() {
			defer wg.Done()
			s, c := p.core.Tables(l)
			mu.Lock()
			srv, cli = max(srv, s), max(cli, c)
			mu.Unlock()
		}); err != nil {
			wg.Done()
		}
	}
	wg.Wait()
	return srv, cli
}

// final is one final response received by a relClient.
type final struct {
	code       int
	reason     string
	retryAfter bool
	at         time.Time // when it was received
}

// relClient is a UDP UA on 127.0.0.1 that sends requests and records the
// final responses by Call-ID (and how many, to catch duplicates).
type relClient struct {
	conn  *net.UDPConn
	port  int
	mu    sync.Mutex
	fin   map[string][]final
	count bool // count finals in n instead of recording them (memory tests)
	n     int
	done  chan struct{}
}

func newRelClient(t testing.TB) *relClient { return startRelClient(t, false) }

// newCountingClient only counts final responses, so that what it keeps
// does not weigh in the heap figures.
func newCountingClient(t testing.TB) *relClient { return startRelClient(t, true) }

func startRelClient(t testing.TB, count bool) *relClient {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	_ = c.SetReadBuffer(4 << 20)
	cl := &relClient{conn: c, port: c.LocalAddr().(*net.UDPAddr).Port, fin: map[string][]final{}, count: count, done: make(chan struct{})}
	go cl.read()
	t.Cleanup(func() { _ = c.Close(); <-cl.done })
	return cl
}

func (cl *relClient) read() {
	defer close(cl.done)
	buf := make([]byte, 65536)
	for {
		n, err := cl.conn.Read(buf)
		if err != nil {
			return
		}
		if cl.count {
			if n > 12 && string(buf[:8]) == "SIP/2.0 " && buf[8] != '1' {
				cl.mu.Lock()
				cl.n++
				cl.mu.Unlock()
			}
			continue
		}
		m, err := sip.ParseMessage(append([]byte(nil), buf[:n]...))
		if err != nil {
			continue
		}
		r, ok := m.(*sip.Response)
		if !ok || r.StatusCode < 200 || r.CallID() == nil {
			continue
		}
		cl.mu.Lock()
		id := string(*r.CallID())
		cl.fin[id] = append(cl.fin[id], final{r.StatusCode, r.Reason, r.GetHeader("Retry-After") != nil, time.Now()})
		cl.mu.Unlock()
	}
}

// send sends a request of method to the proxy for user, with Call-ID id.
func (cl *relClient) send(t testing.TB, to *net.UDPAddr, method, user, id string) {
	msg := fmt.Sprintf("%s sip:%s@%s SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:%d;branch=z9hG4bK-%s;rport\r\n"+
		"Max-Forwards: 70\r\nFrom: <sip:rel@127.0.0.1>;tag=r1\r\nTo: <sip:%s@127.0.0.1>\r\nCall-ID: %s\r\n"+
		"CSeq: 1 %s\r\nContact: <sip:rel@127.0.0.1:%d>\r\nContent-Length: 0\r\n\r\n",
		method, user, to, cl.port, id, user, id, method, cl.port)
	if _, err := cl.conn.WriteToUDP([]byte(msg), to); err != nil {
		t.Errorf("send %s: %v", id, err)
	}
}

// waitFinals waits (at most d) until n Call-IDs have a final response.
func (cl *relClient) waitFinals(n int, d time.Duration) int {
	got := func() int {
		cl.mu.Lock()
		defer cl.mu.Unlock()
		return len(cl.fin) + cl.n
	}
	testenv.Poll(d, func() bool { return got() >= n })
	return got()
}

func (cl *relClient) finals() map[string][]final {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	out := make(map[string][]final, len(cl.fin))
	for k, v := range cl.fin {
		out[k] = append([]final(nil), v...)
	}
	return out
}

// memFigures are the memory numbers reported by the reliability tests.
type memFigures struct{ heapMiB, rssMiB float64 }

func (m memFigures) String() string {
	return fmt.Sprintf("heap %.1f MiB, RSS %.1f MiB", m.heapMiB, m.rssMiB)
}

// memNow collects garbage and reads the live heap and the process RSS.
func memNow() memFigures {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return memFigures{heapMiB: float64(ms.HeapAlloc) / (1 << 20), rssMiB: rssMiB()}
}

// rssMiB reads VmRSS from /proc/self/status (-1 if unavailable).
func rssMiB() float64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseFloat(f[1], 64)
			return kb / 1024
		}
	}
	return -1
}
