package e2e

// Helpers of the observability and operations tests (observe_test.go,
// drain_test.go). They live in the internal test package so that their
// names never meet those of the asyncsip_test files.

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/asyncsip/asyncsip"
	"github.com/asyncsip/asyncsip/async"
	"github.com/asyncsip/asyncsip/internal/testenv"
	"github.com/asyncsip/asyncsip/modules/metrics"
	"github.com/asyncsip/asyncsip/reactor"
	"github.com/asyncsip/asyncsip/tm"
)

var obsQuiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// obsServer starts a server on udp:127.0.0.1:0 with 2 workers; it is shut
// down when the test ends, and goroutines and descriptors are checked.
func obsServer(t *testing.T, cfg asyncsip.Config, routes tm.Routes) *asyncsip.Server {
	t.Helper()
	leaks := goleak.IgnoreCurrent()
	fds := testenv.CountFDs()
	cfg.Listen = []string{"udp:127.0.0.1:0"}
	if cfg.Workers == 0 {
		cfg.Workers = 2
	}
	if cfg.Logger == nil {
		cfg.Logger = obsQuiet
	}
	srv, err := asyncsip.New(cfg)
	require.NoError(t, err)
	srv.SetRoutes(routes)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		obsCheckFDs(t, fds)
		goleak.VerifyNone(t, leaks)
	})
	return srv
}

// obsCheckFDs waits (bounded) for the descriptor count to come back to base.
func obsCheckFDs(t *testing.T, base int) {
	t.Helper()
	if base < 0 {
		return
	}
	deadline := time.Now().Add(3 * time.Second)
	for testenv.CountFDs() > base {
		if time.Now().After(deadline) {
			t.Errorf("file descriptors: %d open after the test, %d before", testenv.CountFDs(), base)
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// sipPeer is a UDP socket on 127.0.0.1 that speaks raw SIP: a UAC sending
// requests and reading responses, or a UAS answering every request.
type sipPeer struct {
	t    *testing.T
	conn *net.UDPConn
}

func newPeer(t *testing.T) *sipPeer {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	return &sipPeer{t: t, conn: c}
}

func (p *sipPeer) port() int { return p.conn.LocalAddr().(*net.UDPAddr).Port }

// request builds a request from this peer to ruri.
func (p *sipPeer) request(method, ruri, callID string) string {
	return strings.ReplaceAll(fmt.Sprintf("%s %s SIP/2.0\n"+
		"Via: SIP/2.0/UDP 127.0.0.1:%d;branch=z9hG4bK-%s;rport\n"+
		"Max-Forwards: 70\nFrom: <sip:alice@127.0.0.1>;tag=a-%s\nTo: <sip:bob@127.0.0.1>\n"+
		"Call-ID: %s\nCSeq: 1 %s\nContact: <sip:alice@127.0.0.1:%d>\nContent-Length: 0\n\n",
		method, ruri, p.port(), callID, callID, callID, method, p.port()), "\n", "\r\n")
}

// send sends raw to the server.
func (p *sipPeer) send(srv *asyncsip.Server, raw string) {
	_, err := p.conn.WriteToUDPAddrPort([]byte(raw), srv.Addrs()[0])
	require.NoError(p.t, err)
}

// final reads until a final response (>= 200) arrives, within 5 s, and
// returns its status line and Call-ID.
func (p *sipPeer) final() (status, callID string) {
	p.t.Helper()
	for {
		msg := p.read(5 * time.Second)
		status, _, _ = strings.Cut(msg, "\r\n")
		if strings.HasPrefix(status, "SIP/2.0 1") {
			continue
		}
		return status, headerValue(msg, "Call-ID")
	}
}

// read returns the next datagram, failing the test after d.
func (p *sipPeer) read(d time.Duration) string {
	p.t.Helper()
	buf := make([]byte, 65535)
	require.NoError(p.t, p.conn.SetReadDeadline(time.Now().Add(d)))
	n, err := p.conn.Read(buf)
	require.NoError(p.t, err, "no message within %v", d)
	return string(buf[:n])
}

// answer runs a UAS that answers every request but ACK with code, until
// the test ends.
func (p *sipPeer) answer(code int, reason string) {
	done := make(chan struct{})
	p.t.Cleanup(func() { p.conn.Close(); <-done })
	go func() {
		defer close(done)
		buf := make([]byte, 65535)
		for {
			n, from, err := p.conn.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			msg := string(buf[:n])
			if strings.HasPrefix(msg, "ACK ") || strings.HasPrefix(msg, "SIP/2.0") {
				continue
			}
			_, _ = p.conn.WriteToUDPAddrPort([]byte(replyTo(msg, code, reason)), from)
		}
	}()
}

// response answers req with code, copying what RFC 3261 §8.2.6 says.
func replyTo(req string, code int, reason string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "SIP/2.0 %d %s\r\n", code, reason)
	for _, line := range strings.Split(req, "\r\n")[1:] {
		name, _, _ := strings.Cut(line, ":")
		switch strings.ToLower(strings.TrimSpace(name)) {
		case "via", "from", "call-id", "cseq":
			b.WriteString(line + "\r\n")
		case "to":
			b.WriteString(line + ";tag=uas\r\n")
		}
	}
	b.WriteString("Content-Length: 0\r\n\r\n")
	return b.String()
}

// header returns the first value of a header of msg.
func headerValue(msg, name string) string {
	for _, line := range strings.Split(msg, "\r\n") {
		n, v, ok := strings.Cut(line, ":")
		if ok && strings.EqualFold(strings.TrimSpace(n), name) {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// gate is an async op source whose ops complete only when the test opens
// the gate: a deterministic stand-in for a slow query.
type gate struct {
	mu      sync.Mutex
	waiting []func()
	open    bool
}

// op returns an op that completes (with its loop's clock time) once the
// gate is open.
func (g *gate) op() async.Op[string] {
	return async.OpFunc[string](func(l *reactor.Loop, done func(string, error)) func() {
		finish := func() { _ = async.PostDone(l, done, "opened", nil) }
		g.mu.Lock()
		defer g.mu.Unlock()
		if g.open {
			finish()
		} else {
			g.waiting = append(g.waiting, finish)
		}
		return func() {}
	})
}

// release completes every op waiting and every later one.
func (g *gate) release() {
	g.mu.Lock()
	g.open = true
	w := g.waiting
	g.waiting = nil
	g.mu.Unlock()
	for _, f := range w {
		f()
	}
}

// waitStats polls the server's stats until cond holds (5 s at most).
func waitStats(t *testing.T, srv *asyncsip.Server, what string, cond func(tm.StatsSnapshot) bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond(srv.Stats()) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s: %+v", what, srv.Stats())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// obsClient opens a connection per request: no idle keep-alive
// connection outlives a test.
var obsClient = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}

// samples are scraped series keyed `name{a="x",b="y"}`, labels sorted.
type samples map[string]float64

// get returns the value of key, whose labels may be in any order.
func (s samples) get(key string) float64 {
	name, labels, ok := strings.Cut(key, "{")
	if ok {
		pairs := strings.Split(strings.TrimSuffix(labels, "}"), ",")
		sort.Strings(pairs)
		key = name + "{" + strings.Join(pairs, ",") + "}"
	}
	return s[key]
}

// sum adds the values of every series of a metric whose key contains all
// of the given label pairs.
func (s samples) sum(name string, pairs ...string) float64 {
	total := 0.0
	for k, v := range s {
		if !strings.HasPrefix(k, name+"{") && k != name {
			continue
		}
		all := true
		for _, p := range pairs {
			all = all && strings.Contains(k, p)
		}
		if all {
			total += v
		}
	}
	return total
}

// scrapeMetrics fetches /metrics over HTTP and parses the text format.
func scrapeMetrics(t *testing.T, exp *metrics.Exporter) samples {
	t.Helper()
	s, err := fetchMetrics(exp)
	require.NoError(t, err)
	return s
}

// fetchMetrics is scrapeMetrics for goroutines other than the test's.
func fetchMetrics(exp *metrics.Exporter) (samples, error) {
	resp, err := obsClient.Get("http://" + exp.Addr().String() + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /metrics: %s", resp.Status)
	}
	out := samples{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i <= 0 {
			return nil, fmt.Errorf("bad sample line %q", line)
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			return nil, fmt.Errorf("bad sample line %q: %w", line, err)
		}
		out[line[:i]] = v
	}
	return out, sc.Err()
}
