package metrics_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/asyncsip/asyncsip/async"
	"github.com/asyncsip/asyncsip/internal/testenv"
	"github.com/asyncsip/asyncsip/modules/metrics"
	"github.com/asyncsip/asyncsip/reactor"
	"github.com/asyncsip/asyncsip/tm"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// client opens a connection per request, so that no idle keep-alive
// connection of one test counts in another's descriptor check.
var client = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}

// nullTP is a transport that sends nowhere; the tests feed tm directly.
// It keeps the last message sent to each address, and fails the sends to
// fail.
type nullTP struct {
	mu   sync.Mutex
	sent int
	last map[netip.AddrPort][]byte
	fail netip.AddrPort
}

func (n *nullTP) Send(_ *reactor.Loop, b []byte, to netip.AddrPort) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if to == n.fail {
		return fmt.Errorf("nullTP: send to %s fails", to)
	}
	n.sent++
	if n.last == nil {
		n.last = map[netip.AddrPort][]byte{}
	}
	n.last[to] = append([]byte(nil), b...)
	return nil
}

// lastTo returns the last message sent to addr, nil if none.
func (n *nullTP) lastTo(addr netip.AddrPort) []byte {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.last[addr]
}
func (n *nullTP) Protocol() string          { return "UDP" }
func (n *nullTP) Advertised() (string, int) { return "127.0.0.1", 5060 }
func (n *nullTP) LocalAddr() netip.AddrPort { return netip.MustParseAddrPort("127.0.0.1:5060") }

// rig is a tm server on two real loops, watched by an exporter serving on
// 127.0.0.1.
type rig struct {
	g    *reactor.Group
	core *tm.Server
	tp   *nullTP
	exp  *metrics.Exporter
	url  string
}

func newRig(t *testing.T, routes tm.Routes) *rig {
	t.Helper()
	return newRigConfig(t, tm.Config{}, routes)
}

// newRigConfig is newRig with cfg (its Logger and Observer are set here).
func newRigConfig(t *testing.T, cfg tm.Config, routes tm.Routes) *rig {
	t.Helper()
	fds := testenv.CountFDs()
	g, err := reactor.NewGroup(2, reactor.Config{Logger: quiet})
	require.NoError(t, err)
	exp := metrics.New(metrics.Config{Addr: "127.0.0.1:0", ProbeInterval: 20 * time.Millisecond, Logger: quiet})
	cfg.Logger, cfg.Observer = quiet, exp
	core := tm.NewServer(g.Loops(), cfg, routes)
	tp := &nullTP{}
	core.AddTransport(tp)
	require.NoError(t, exp.Watch(core, g))
	g.Start()
	require.NoError(t, exp.Start())
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		require.NoError(t, exp.Close(ctx))
		core.Close()
		require.NoError(t, g.Stop(ctx))
		testenv.FDsBackTo(t, fds, 5*time.Second)
	})
	return &rig{g: g, core: core, tp: tp, exp: exp, url: "http://" + exp.Addr().String()}
}

// receive hands a datagram from 127.0.0.1:5061 to tm on loop 0, as a
// socket would.
func (r *rig) receive(t *testing.T, raw string) {
	r.receiveFrom(t, netip.MustParseAddrPort("127.0.0.1:5061"), raw)
}

// receiveFrom hands a datagram from src to tm on loop 0.
func (r *rig) receiveFrom(t *testing.T, src netip.AddrPort, raw string) {
	l := r.g.Loop(0)
	require.NoError(t, l.Post(func() { r.core.Receive(l, []byte(raw), src, r.tp) }))
}

func options(callID string) string {
	return strings.ReplaceAll("OPTIONS sip:bob@127.0.0.1 SIP/2.0\n"+
		"Via: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-"+callID+"\n"+
		"Max-Forwards: 70\nFrom: <sip:a@127.0.0.1>;tag=1\nTo: <sip:b@127.0.0.1>\n"+
		"Call-ID: "+callID+"\nCSeq: 1 OPTIONS\nContent-Length: 0\n\n", "\n", "\r\n")
}

// series are scraped samples keyed `name{label="v",...}` with the labels
// sorted by name, as the exposition format writes them.
type series map[string]float64

// get returns the sample of key, whose labels may be in any order.
func (s series) get(key string) float64 { return s[norm(key)] }

// has reports whether key was exposed.
func (s series) has(key string) bool { _, ok := s[norm(key)]; return ok }

// norm sorts the labels of a series key (values hold no commas here).
func norm(key string) string {
	name, labels, ok := strings.Cut(key, "{")
	if !ok {
		return key
	}
	pairs := strings.Split(strings.TrimSuffix(labels, "}"), ",")
	sort.Strings(pairs)
	return name + "{" + strings.Join(pairs, ",") + "}"
}

// scrape fetches /metrics and parses the text format.
func scrape(t *testing.T, url string) series {
	t.Helper()
	resp, err := client.Get(url + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	out := series{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		require.Positive(t, i, line)
		v, err := strconv.ParseFloat(line[i+1:], 64)
		require.NoError(t, err, line)
		out[line[:i]] = v
	}
	require.NoError(t, sc.Err())
	return out
}

func TestScrapeServerMetrics(t *testing.T) {
	r := newRig(t, tm.Routes{Screen: func(req *sip.Request, _ netip.AddrPort) bool {
		return string(*req.CallID()) == "screened"
	}, Request: func(c *tm.Context) {
		if c.CallID() == "held" { // stays suspended until the end of the test
			async.Await(c, async.Sleep(time.Hour), func(struct{}, error) { _ = c.Reply(200, "") },
				async.Name("util.hold"))
			return
		}
		async.Await(c, async.Sleep(time.Millisecond), func(struct{}, error) { _ = c.Reply(200, "") },
			async.Name("util.sleep"))
	}})
	for i := range 5 {
		r.receive(t, options(fmt.Sprint("m-", i)))
	}
	r.receive(t, "NOT SIP AT ALL\r\n\r\n")
	r.receive(t, options("screened"))
	var m series
	waitFor(t, "five 200s and a screened request", func() bool {
		m = scrape(t, r.url)
		return m.get(`asyncsip_sip_responses_total{direction="out",class="2xx"}`) == 5 &&
			m.get(`asyncsip_sip_dropped_total{reason="screened"}`) == 1
	})
	assert.Equal(t, 6.0, m.get(`asyncsip_sip_requests_total{direction="in",method="OPTIONS"}`))
	assert.Equal(t, 1.0, m.get(`asyncsip_sip_requests_total{direction="in",method="other"}`))
	assert.Equal(t, 1.0, m.get(`asyncsip_sip_dropped_total{reason="parse"}`))
	assert.Equal(t, 5.0, m.get(`asyncsip_transactions_created_total{side="server"}`))
	assert.Equal(t, 0.0, m.get(`asyncsip_transactions_in_progress`))
	assert.Equal(t, 0.0, m.get(`asyncsip_transactions_suspended`))
	assert.Equal(t, 5.0, m.get(`asyncsip_async_ops_started_total{module="util",op="sleep"}`))
	assert.Equal(t, 5.0, m.get(`asyncsip_async_op_duration_seconds_count{module="util",op="sleep"}`))
	assert.Equal(t, 0.0, m.get(`asyncsip_async_op_errors_total{module="util",op="sleep",error="timeout"}`))
	// Completed non-INVITE server transactions are kept for Timer J only
	// as tombstones, out of the loops' tables.
	assert.Equal(t, 5.0, m.get(`asyncsip_transaction_tombstones`))
	assert.Positive(t, m.get(`asyncsip_transaction_bytes`))
	assert.Equal(t, 0.0, m.get(`asyncsip_transactions_active{side="server"}`))
	// A transaction still suspended is in its loop's table: active equals
	// what the tables hold once the probe has sampled them.
	r.receive(t, options("held"))
	waitFor(t, "the probes to sample the held transaction", func() bool {
		m = scrape(t, r.url)
		return m.get(`asyncsip_loop_transactions{loop="0",side="server"}`)+
			m.get(`asyncsip_loop_transactions{loop="1",side="server"}`) == 1
	})
	assert.Equal(t, 1.0, m.get(`asyncsip_transactions_active{side="server"}`))
	assert.Equal(t, 1.0, m.get(`asyncsip_transactions_suspended`))
	for _, loop := range []string{"0", "1"} {
		assert.Positive(t, m.get(`asyncsip_loop_lag_seconds_count{loop="`+loop+`"}`), "loop %s probed", loop)
		assert.True(t, m.has(`asyncsip_loop_cpu_seconds_total{loop="`+loop+`"}`))
		assert.True(t, m.has(`asyncsip_loop_utilization_ratio{loop="`+loop+`"}`))
		assert.True(t, m.has(`asyncsip_loop_timers{loop="`+loop+`"}`))
	}
	assert.True(t, m.has("go_goroutines"))
}

func TestPoolMetrics(t *testing.T) {
	r := newRig(t, tm.Routes{})
	p := async.NewPool(async.PoolConfig{Workers: 1, Queue: -1})
	defer p.Close(context.Background())
	require.NoError(t, r.exp.WatchPool("db", p))
	require.Error(t, r.exp.WatchPool("db", p), "a name is watched once")

	release := make(chan struct{})
	results := make(chan error, 2)
	l := r.g.Loop(1)
	for range 2 {
		require.NoError(t, l.Post(func() {
			async.Launch(l, async.Blocking(func(context.Context) (int, error) { <-release; return 1, nil }, async.OnPool(p)),
				func(_ int, err error) { results <- err }, async.Name("db.exec"), async.Observe(r.exp))
		}))
	}
	err := <-results // the second call finds the only worker busy
	require.ErrorIs(t, err, async.ErrOverloaded)
	m := scrape(t, r.url)
	assert.Equal(t, 1.0, m.get(`asyncsip_pool_busy_workers{pool="db"}`))
	assert.Equal(t, 1.0, m.get(`asyncsip_pool_rejected_total{pool="db"}`))
	close(release)
	require.NoError(t, <-results)
	// The pool counts the call completed just after the result is posted.
	waitFor(t, "the pool to count the call", func() bool {
		m = scrape(t, r.url)
		return m.get(`asyncsip_pool_completed_total{pool="db"}`) == 1
	})
	assert.Equal(t, 1.0, m.get(`asyncsip_async_op_errors_total{module="db",op="exec",error="overloaded"}`))
}

func TestMetricNamesFollowConventions(t *testing.T) {
	r := newRig(t, tm.Routes{Request: func(c *tm.Context) { _ = c.Reply(200, "") }})
	r.receive(t, options("lint-1"))
	waitFor(t, "a 200", func() bool {
		return scrape(t, r.url).get(`asyncsip_sip_responses_total{direction="out",class="2xx"}`) == 1
	})
	r.exp.OpStarted("db.query")
	r.exp.OpFinished("db.query", time.Millisecond, nil)
	fams, err := r.exp.Registry().Gather()
	require.NoError(t, err)
	problems, err := promlint.NewWithMetricFamilies(fams).Lint()
	require.NoError(t, err)
	for _, p := range problems {
		if strings.HasPrefix(p.Metric, "asyncsip_") {
			t.Errorf("%s: %s", p.Metric, p.Text)
		}
	}
}

func TestPprofEndpoints(t *testing.T) {
	r := newRig(t, tm.Routes{})
	get := func(path string) (int, string) {
		resp, err := client.Get(r.url + path)
		require.NoError(t, err)
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		return resp.StatusCode, string(b)
	}
	code, body := get("/debug/pprof/")
	assert.Equal(t, 200, code)
	assert.Contains(t, body, "goroutine?debug=1")
	code, body = get("/debug/pprof/goroutine?debug=1")
	assert.Equal(t, 200, code)
	assert.Contains(t, body, "goroutine profile:")
	code, body = get("/debug/pprof/heap?gc=1")
	assert.Equal(t, 200, code)
	assert.True(t, strings.HasPrefix(body, "\x1f\x8b"), "gzipped protobuf")
	code, body = get("/debug/pprof/profile?seconds=1")
	assert.Equal(t, 200, code)
	assert.True(t, strings.HasPrefix(body, "\x1f\x8b"), "gzipped protobuf")
	code, body = get("/debug/pprof/trace?seconds=1")
	assert.Equal(t, 200, code)
	assert.NotEmpty(t, body)
	code, _ = get("/debug/pprof/profile?seconds=-1")
	assert.Equal(t, 400, code)
	code, _ = get("/debug/pprof/profile?seconds=nope")
	assert.Equal(t, 400, code)
	code, _ = get("/debug/pprof/nosuch")
	assert.Equal(t, 404, code)
}

// Close does not wait for a long CPU profile: the profile ends early.
func TestCloseEndsProfiles(t *testing.T) {
	exp := metrics.New(metrics.Config{Addr: "127.0.0.1:0", Logger: quiet})
	require.NoError(t, exp.Start())
	url := "http://" + exp.Addr().String()
	got := make(chan int, 1)
	go func() {
		resp, err := client.Get(url + "/debug/pprof/profile?seconds=300")
		if err != nil {
			got <- -1
			return
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		got <- resp.StatusCode
	}()
	waitFor(t, "the profile to start", func() bool {
		resp, err := client.Get(url + "/debug/pprof/goroutine?debug=1")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return strings.Contains(string(b), "cpuProfile")
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, exp.Close(ctx))
	assert.Equal(t, 200, <-got)
	require.NoError(t, exp.Close(ctx), "Close is idempotent")
}

func TestExporterErrors(t *testing.T) {
	exp := metrics.New(metrics.Config{Logger: quiet})
	require.Error(t, exp.WatchPool("x", async.DefaultPool()), "WatchPool before Watch")
	g := reactor.NewManualGroup(1, reactor.NewFakeClock(time.Unix(0, 0)))
	core := tm.NewServer(g.Loops(), tm.Config{Logger: quiet}, tm.Routes{})
	require.NoError(t, exp.Watch(core, g))
	require.ErrorIs(t, exp.Watch(core, g), metrics.ErrWatching)
	require.NoError(t, exp.Start())
	assert.Nil(t, exp.Addr(), "no listener without Addr")
	require.ErrorIs(t, exp.Start(), metrics.ErrStarted)
	require.NoError(t, exp.Close(context.Background()))
	require.ErrorIs(t, exp.Start(), metrics.ErrStarted)

	bad := metrics.New(metrics.Config{Addr: "127.0.0.1:notaport", Logger: quiet})
	require.ErrorContains(t, bad.Start(), "metrics: listen")
}

// Two exporters in one process keep separate registries.
func TestTwoExportersDoNotMix(t *testing.T) {
	a := newRig(t, tm.Routes{Request: func(c *tm.Context) { _ = c.Reply(200, "") }})
	b := newRig(t, tm.Routes{Request: func(c *tm.Context) { _ = c.Reply(200, "") }})
	a.receive(t, options("two-1"))
	waitFor(t, "a's 200", func() bool {
		return scrape(t, a.url).get(`asyncsip_sip_responses_total{direction="out",class="2xx"}`) == 1
	})
	assert.Equal(t, 0.0, scrape(t, b.url).get(`asyncsip_sip_responses_total{direction="out",class="2xx"}`))
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// outgoing is a request for tm.Server.Send to uri (the proxy replaces its
// Via).
func outgoing(t *testing.T, method, uri, callID string) *sip.Request {
	t.Helper()
	raw := strings.ReplaceAll(method+" "+uri+" SIP/2.0\n"+
		"Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK-x\nMax-Forwards: 70\n"+
		"From: <sip:proxy@127.0.0.1>;tag=p1\nTo: <"+uri+">\nCall-ID: "+callID+"\nCSeq: 1 "+method+"\n"+
		"Content-Length: 0\n\n", "\n", "\r\n")
	m, err := sip.ParseMessage([]byte(raw))
	require.NoError(t, err)
	return m.(*sip.Request)
}

// TestOriginatedMetrics originates requests that end in each outcome and
// checks tm's originated counters in the scrape.
func TestOriginatedMetrics(t *testing.T) {
	r := newRigConfig(t, tm.Config{MaxOriginated: 2}, tm.Routes{})
	uas, dead := netip.MustParseAddrPort("127.0.0.1:5062"), netip.MustParseAddrPort("127.0.0.1:5063")
	r.tp.mu.Lock()
	r.tp.fail = dead
	r.tp.mu.Unlock()
	l := r.g.Loop(1)
	// send originates req on l and returns where its outcome goes: the
	// status code or the error. Extra options make it a plain Launch with
	// them (an await bound shorter than the send's: a cancellation).
	send := func(req *sip.Request, opts tm.SendOptions, launch ...async.Option) <-chan string {
		out := make(chan string, 1)
		report := func(resp *sip.Response, err error) {
			if err != nil {
				out <- err.Error()
				return
			}
			out <- strconv.Itoa(resp.StatusCode)
		}
		require.NoError(t, l.Post(func() {
			if len(launch) > 0 {
				async.Launch(l, r.core.Send(req, opts), report, launch...)
				return
			}
			r.core.Originate(l, req, opts, report)
		}))
		return out
	}
	wait := func(what string, ch <-chan string) string {
		t.Helper()
		select {
		case v := <-ch:
			return v
		case <-time.After(5 * time.Second):
			t.Fatalf("timed out waiting for the outcome of %s", what)
			return ""
		}
	}
	inFlight := func(n float64) {
		t.Helper()
		waitFor(t, fmt.Sprintf("%v originated requests in flight", n), func() bool {
			return scrape(t, r.url).get(`asyncsip_originated_in_flight`) == n
		})
	}

	// Completed: the UAS answers 200.
	ok := send(outgoing(t, "OPTIONS", "sip:bob@127.0.0.1:5062", "o-ok"), tm.SendOptions{})
	waitFor(t, "the OPTIONS to be sent", func() bool { return r.tp.lastTo(uas) != nil })
	m, err := sip.ParseMessage(r.tp.lastTo(uas))
	require.NoError(t, err)
	r.receiveFrom(t, uas, sip.NewResponseFromRequest(m.(*sip.Request), 200, "OK", nil).String())
	assert.Equal(t, "200", wait("o-ok", ok))

	timeout := send(outgoing(t, "OPTIONS", "sip:bob@127.0.0.1:5062", "o-slow"), tm.SendOptions{Timeout: 20 * time.Millisecond})
	assert.Equal(t, tm.ErrOriginatedTimeout.Error(), wait("o-slow", timeout))
	failed := send(outgoing(t, "OPTIONS", "sip:bob@127.0.0.1:5063", "o-dead"), tm.SendOptions{})
	assert.Contains(t, wait("o-dead", failed), tm.ErrOriginatedUnreachable.Error())
	refused := send(outgoing(t, "INVITE", "sip:bob@127.0.0.1:5062", "o-invite"), tm.SendOptions{})
	assert.Contains(t, wait("o-invite", refused), tm.ErrNotOriginable.Error())
	cancelled := send(outgoing(t, "OPTIONS", "sip:bob@127.0.0.1:5062", "o-gone"), tm.SendOptions{},
		async.Timeout(20*time.Millisecond))
	assert.Contains(t, wait("o-gone", cancelled), async.ErrTimeout.Error())
	inFlight(0) // the cancelled transaction ends on its owner loop after the report

	// Two held (no answer, Timer F) fill MaxOriginated; a third is refused.
	send(outgoing(t, "OPTIONS", "sip:bob@127.0.0.1:5062", "o-held-1"), tm.SendOptions{})
	send(outgoing(t, "OPTIONS", "sip:bob@127.0.0.1:5062", "o-held-2"), tm.SendOptions{})
	inFlight(2)
	over := send(outgoing(t, "OPTIONS", "sip:bob@127.0.0.1:5062", "o-over"), tm.SendOptions{})
	assert.Contains(t, wait("o-over", over), async.ErrOverloaded.Error())

	s := scrape(t, r.url)
	assert.Equal(t, 6.0, s.get(`asyncsip_originated_started_total`), "all but the INVITE and the overloaded one")
	for outcome, n := range map[string]float64{
		"completed": 1, "timeout": 1, "failed": 1, "refused": 1, "cancelled": 1, "overloaded": 1,
	} {
		assert.Equal(t, n, s.get(`asyncsip_originated_requests_total{outcome="`+outcome+`"}`), outcome)
	}
	assert.Equal(t, 2.0, s.get(`asyncsip_originated_in_flight`))
	assert.Equal(t, 1.0, s.get(`asyncsip_overload_rejections_total`), "an overloaded send counts there too")
	assert.Equal(t, 7.0, s.get(`asyncsip_async_ops_started_total{module="tm",op="send"}`), "Originate is observed")
}
