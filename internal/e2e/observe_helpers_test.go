package e2e

// Helpers of the observability and operations tests (observe_test.go,
// drain_test.go). They live in the internal test package so that their
// names never meet those of the asyncsip_test files.

import (
	"bufio"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/asyncsip/asyncsip"
	"github.com/asyncsip/asyncsip/async"
	"github.com/asyncsip/asyncsip/internal/testenv"
	"github.com/asyncsip/asyncsip/modules/metrics"
	"github.com/asyncsip/asyncsip/reactor"
	"github.com/asyncsip/asyncsip/tm"
)

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
	if !testenv.Poll(5*time.Second, func() bool { return cond(srv.Stats()) }) {
		t.Fatalf("timed out waiting for %s: %+v", what, srv.Stats())
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
