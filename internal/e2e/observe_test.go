package e2e

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/asyncsip/asyncsip"
	"github.com/asyncsip/asyncsip/async"
	"github.com/asyncsip/asyncsip/internal/e2e/e2etest"
	"github.com/asyncsip/asyncsip/internal/sipp"
	"github.com/asyncsip/asyncsip/internal/testenv"
	"github.com/asyncsip/asyncsip/modules/hep"
	"github.com/asyncsip/asyncsip/modules/metrics"
	"github.com/asyncsip/asyncsip/tm"
)

// captureLog records capture events, copying their bytes.
type captureLog struct {
	mu      sync.Mutex
	in, out int
	lines   map[string]int // "in INVITE", "out 2xx" ...
}

func (c *captureLog) record(ev tm.CaptureEvent) {
	first, _, _ := strings.Cut(string(ev.Data), " ")
	key := first
	if first == "SIP/2.0" && len(ev.Data) > 8 {
		key = string(ev.Data[8]) + "xx"
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.lines == nil {
		c.lines = map[string]int{}
	}
	if ev.Dir == tm.CaptureIn {
		c.in++
	} else {
		c.out++
	}
	c.lines[ev.Dir.String()+" "+key]++
}

func (c *captureLog) counts() (in, out int, lines map[string]int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	lines = map[string]int{}
	for k, v := range c.lines {
		lines[k] = v
	}
	return c.in, c.out, lines
}

// hepPacket is what the test decoder reads from a HEPv3 datagram: the
// chunks by type (generic vendor), checked for bounds.
type hepPacket map[uint16][]byte

func decodeHEP(b []byte) (hepPacket, error) {
	if len(b) < 6 || string(b[:4]) != "HEP3" || int(binary.BigEndian.Uint16(b[4:])) != len(b) {
		return nil, fmt.Errorf("bad HEP3 header")
	}
	p := hepPacket{}
	for rest := b[6:]; len(rest) > 0; {
		if len(rest) < 6 {
			return nil, fmt.Errorf("truncated chunk")
		}
		n := int(binary.BigEndian.Uint16(rest[4:]))
		if binary.BigEndian.Uint16(rest) != 0 || n < 6 || n > len(rest) {
			return nil, fmt.Errorf("bad chunk header % x", rest[:6])
		}
		p[binary.BigEndian.Uint16(rest[2:])] = rest[6:n]
		rest = rest[n:]
	}
	return p, nil
}

func (p hepPacket) u16(typ uint16) uint16 { return binary.BigEndian.Uint16(p[typ]) }

// hepCollector receives HEP datagrams on 127.0.0.1 and decodes them.
type hepCollector struct {
	conn *net.UDPConn
	mu   sync.Mutex
	pkts []hepPacket
	errs []error
	done chan struct{}
}

func startCollector(t *testing.T) *hepCollector {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	_ = c.SetReadBuffer(8 << 20)
	hc := &hepCollector{conn: c, done: make(chan struct{})}
	go func() {
		defer close(hc.done)
		buf := make([]byte, 65535)
		for {
			n, err := c.Read(buf)
			if err != nil {
				return
			}
			p, err := decodeHEP(append([]byte(nil), buf[:n]...))
			hc.mu.Lock()
			if err != nil {
				hc.errs = append(hc.errs, err)
			} else {
				hc.pkts = append(hc.pkts, p)
			}
			hc.mu.Unlock()
		}
	}()
	t.Cleanup(func() { c.Close(); <-hc.done })
	return hc
}

func (hc *hepCollector) received() ([]hepPacket, []error) {
	hc.mu.Lock()
	defer hc.mu.Unlock()
	return append([]hepPacket(nil), hc.pkts...), append([]error(nil), hc.errs...)
}

// Metrics scraped over HTTP while SIPp runs calls through the proxy, the
// capture hook and a HEP collector, all checked against each other.
func TestObservabilityDuringSIPpRun(t *testing.T) {
	const calls = 40
	sipp.Path(t)
	uasPort := sipp.Start(t, sipp.Config{Scenario: sipp.UAS, Timeout: 60 * time.Second}).Port()
	coll := startCollector(t)
	hx, err := hep.New(hep.Config{Collector: coll.conn.LocalAddr().String(), AgentID: 42, Logger: e2etest.Quiet})
	require.NoError(t, err)
	defer hx.Close()
	capLog := &captureLog{}

	target := fmt.Sprintf("sip:bob@127.0.0.1:%d", uasPort)
	// T1 = 100 ms: server transactions linger 6.4 s (Timers J, L) and client
	// ones 5 s (Timer K = T4) after the last call, a quiet window in which
	// the counters and the transaction tables must agree exactly.
	exp := metrics.New(metrics.Config{Addr: "127.0.0.1:0", Logger: e2etest.Quiet})
	e2etest.NoLeaks(t)
	srv := e2etest.NewServer(t, asyncsip.Config{
		Extensions: []asyncsip.Extension{exp},
		Core: tm.Config{
			Timers:  tm.Timers{T1: 100 * time.Millisecond},
			Capture: func(ev tm.CaptureEvent) { capLog.record(ev); hx.Capture(ev) },
		},
	}, tm.Routes{Request: func(c *tm.Context) {
		if c.Method() == "INVITE" {
			async.Await(c, async.Sleep(50*time.Millisecond), func(struct{}, error) { _ = c.Relay(target) },
				async.Name("test.delay"))
			return
		}
		// ACK and BYE come along our signed Record-Route (sipp.UAC):
		// relayed to their Request-URI, the UAS's Contact.
		_ = c.Relay()
	}})
	require.NoError(t, srv.Start())
	proxyPort := srv.Addrs()[0].Port()

	// Scrape every 50 ms during the run.
	var snaps []samples
	var scrapeErr error
	stop, scraped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(scraped)
		for {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			s, err := fetchMetrics(exp)
			if err != nil {
				scrapeErr = err
				return
			}
			snaps = append(snaps, s)
		}
	}()
	res := sipp.Run(t, sipp.Config{Scenario: sipp.UAC, Remote: srv.Addrs()[0].String(), Service: "bob",
		Calls: calls, Rate: 40, Timeout: 40 * time.Second})
	close(stop)
	<-scraped
	require.NoError(t, scrapeErr)
	require.Equal(t, calls, res.Successful, res.String())
	require.Zero(t, res.Failed, res.String())

	// Counters only grow from scrape to scrape; gauges stay in range.
	snaps = append(snaps, scrapeMetrics(t, exp))
	require.Greater(t, len(snaps), 2, "scrapes during the run")
	maxSuspended := 0.0
	for i, s := range snaps {
		maxSuspended = max(maxSuspended, s.get("asyncsip_transactions_suspended"))
		assert.GreaterOrEqual(t, s.get("asyncsip_transactions_suspended"), 0.0)
		assert.GreaterOrEqual(t, s.get("asyncsip_transactions_in_progress"), 0.0)
		if i == 0 {
			continue
		}
		for k, v := range snaps[i-1] {
			if strings.HasPrefix(k, "asyncsip_") && (strings.HasSuffix(k, "_total") || strings.Contains(k, "_total{") ||
				strings.Contains(k, "_count{") || strings.Contains(k, "_bucket{")) {
				assert.GreaterOrEqual(t, s[k], v, "%s decreased", k)
			}
		}
	}
	t.Logf("%d scrapes during the run; at most %v transactions suspended at a scrape", len(snaps), maxSuspended)

	// In the quiet window: created - completed is what the loops' tables
	// hold, sampled independently on the loops by the probe.
	var m samples
	waitMetrics(t, exp, "counters and tables to agree", 5*time.Second, func(s samples) bool {
		m = s
		for _, side := range []string{"server", "client"} {
			active := s.get(`asyncsip_transactions_created_total{side="`+side+`"}`) -
				s.get(`asyncsip_transactions_completed_total{side="`+side+`"}`)
			if active <= 0 || active != s.sum("asyncsip_loop_transactions", `side="`+side+`"`) {
				return false
			}
		}
		return true
	})
	assert.Equal(t, 0.0, m.get("asyncsip_transactions_in_progress"))
	assert.Equal(t, 0.0, m.get("asyncsip_transactions_suspended"))

	in := func(method string) float64 {
		return m.get(`asyncsip_sip_requests_total{direction="in",method="` + method + `"}`)
	}
	assert.GreaterOrEqual(t, in("INVITE"), float64(calls))
	assert.GreaterOrEqual(t, in("ACK"), float64(calls))
	assert.GreaterOrEqual(t, in("BYE"), float64(calls))
	assert.GreaterOrEqual(t, m.get(`asyncsip_sip_requests_total{direction="out",method="INVITE"}`), float64(calls))
	assert.GreaterOrEqual(t, m.get(`asyncsip_sip_responses_total{direction="in",class="2xx"}`), float64(2*calls))
	assert.GreaterOrEqual(t, m.get(`asyncsip_sip_responses_total{direction="out",class="2xx"}`), float64(2*calls))
	assert.Equal(t, float64(calls), m.get(`asyncsip_async_ops_started_total{module="test",op="delay"}`))
	assert.Equal(t, float64(calls), m.get(`asyncsip_async_ops_finished_total{module="test",op="delay"}`))
	assert.Equal(t, float64(calls), m.get(`asyncsip_async_op_duration_seconds_count{module="test",op="delay"}`))
	assert.Equal(t, 0.0, m.sum("asyncsip_async_op_errors_total", `module="test"`))
	// No malformed or refused input. ("other" may count a stray 180 that a
	// second loop handed over after its 200 was relayed: RFC 6026 drops it.)
	for _, reason := range []string{"parse", "size", "headers", "invalid", "closed"} {
		assert.Zero(t, m.get(`asyncsip_sip_dropped_total{reason="`+reason+`"}`), "drops: %v", dropsOf(m))
	}
	assert.Equal(t, in("ACK"), m.get(`asyncsip_sip_requests_total{direction="out",method="ACK"}`), "ACKs relayed once")
	for _, loop := range []string{"0", "1"} {
		assert.Positive(t, m.get(`asyncsip_loop_lag_seconds_count{loop="`+loop+`"}`))
		assert.Positive(t, m.get(`asyncsip_loop_cpu_seconds_total{loop="`+loop+`"}`))
	}
	assert.Contains(t, m, `asyncsip_pool_workers{pool="default"}`)

	// Every transaction ends: created = completed + in progress (0).
	waitMetrics(t, exp, "every transaction to end", 15*time.Second, func(s samples) bool {
		m = s
		return s.get(`asyncsip_transactions_active{side="server"}`) == 0 &&
			s.get(`asyncsip_transactions_active{side="client"}`) == 0 && s.sum("asyncsip_loop_transactions") == 0
	})
	for _, side := range []string{"server", "client"} {
		assert.Equal(t, m.get(`asyncsip_transactions_created_total{side="`+side+`"}`),
			m.get(`asyncsip_transactions_completed_total{side="`+side+`"}`)+
				map[string]float64{"server": m.get("asyncsip_transactions_in_progress"), "client": 0}[side])
	}

	// The capture hook saw exactly the messages the wire counters counted.
	capIn, capOut, lines := capLog.counts()
	assert.Equal(t, m.sum("asyncsip_sip_requests_total", `direction="in"`)+
		m.sum("asyncsip_sip_responses_total", `direction="in"`), float64(capIn))
	assert.Equal(t, m.sum("asyncsip_sip_requests_total", `direction="out"`)+
		m.sum("asyncsip_sip_responses_total", `direction="out"`), float64(capOut))
	assert.Equal(t, in("INVITE"), float64(lines["in INVITE"]))
	assert.Equal(t, in("BYE"), float64(lines["in BYE"]))

	// And the HEP collector received every captured message, decodable.
	var pkts []hepPacket
	require.Eventually(t, func() bool {
		var errs []error
		pkts, errs = coll.received()
		require.Empty(t, errs)
		return len(pkts) == capIn+capOut
	}, 5*time.Second, 10*time.Millisecond, "HEP packets: %+v", hx.Stats())
	hepIn := 0
	for _, p := range pkts {
		payload := string(p[hep.ChunkPayload])
		assert.EqualValues(t, []byte{hep.TypeSIP}, p[hep.ChunkProtoType])
		assert.EqualValues(t, []byte{hep.ProtoUDP}, p[hep.ChunkIPProto])
		assert.EqualValues(t, []byte{hep.FamilyIPv4}, p[hep.ChunkIPFamily])
		assert.Equal(t, uint32(42), binary.BigEndian.Uint32(p[hep.ChunkAgentID]))
		assert.Equal(t, e2etest.Header(payload, "Call-ID"), string(p[hep.ChunkCorrelationID]))
		assert.True(t, strings.HasSuffix(strings.SplitN(payload, "\r\n", 2)[0], " SIP/2.0") ||
			strings.HasPrefix(payload, "SIP/2.0 "), payload)
		if p.u16(hep.ChunkDstPort) == proxyPort {
			hepIn++
		} else {
			assert.Equal(t, proxyPort, p.u16(hep.ChunkSrcPort))
		}
		assert.Equal(t, netip.AddrFrom4([4]byte{127, 0, 0, 1}).AsSlice(), p[hep.ChunkIPv4Src])
	}
	assert.Equal(t, capIn, hepIn)
	assert.Equal(t, hep.Stats{Sent: uint64(capIn + capOut)}, hx.Stats())
}

func dropsOf(m samples) map[string]float64 {
	out := map[string]float64{}
	for k, v := range m {
		if strings.HasPrefix(k, "asyncsip_sip_dropped_total") && v > 0 {
			out[k] = v
		}
	}
	return out
}

// waitMetrics scrapes until cond holds, for up to d.
func waitMetrics(t *testing.T, exp *metrics.Exporter, what string, d time.Duration, cond func(samples) bool) {
	t.Helper()
	var s samples
	if testenv.Poll(d, func() bool { s = scrapeMetrics(t, exp); return cond(s) }) {
		return
	}
	var keys []string
	for k, v := range s {
		if strings.HasPrefix(k, "asyncsip_transactions") || strings.HasPrefix(k, "asyncsip_loop_transactions") {
			keys = append(keys, fmt.Sprintf("%s=%v", k, v))
		}
	}
	t.Fatalf("timed out waiting for %s: %v", what, keys)
}

// Without an exporter nothing is served and tm observes nothing.
func TestMetricsOff(t *testing.T) {
	e2etest.NoLeaks(t)
	srv := e2etest.NewServer(t, asyncsip.Config{}, tm.Routes{Request: func(c *tm.Context) {
		assert.Nil(t, c.Observer())
		_ = c.Reply(200, "")
	}})
	require.NoError(t, srv.Start())
	p := e2etest.NewUDPPeer(t)
	p.SendTo(srv.Addrs()[0], e2etest.Request("OPTIONS", "sip:bob@127.0.0.1", "UDP", p.Port(), "off-1", ""))
	status := e2etest.StatusLine(p.Final(5 * time.Second))
	assert.Equal(t, "SIP/2.0 200 OK", status)
}

func TestMetricsListenError(t *testing.T) {
	exp := metrics.New(metrics.Config{Addr: "127.0.0.1:notaport", Logger: e2etest.Quiet})
	e2etest.NoLeaks(t)
	srv := e2etest.NewServer(t, asyncsip.Config{Extensions: []asyncsip.Extension{exp}}, tm.Routes{})
	require.ErrorContains(t, srv.Start(), "metrics: listen")
	assert.Empty(t, srv.Addrs(), "no socket stays open")
}
