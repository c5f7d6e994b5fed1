package rtpengine_test

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/asyncsip/asyncsip/modules/rtpengine"
	"github.com/asyncsip/asyncsip/modules/rtpengine/rtpenginetest"
)

func TestCollector(t *testing.T) {
	t.Parallel()
	s := rtpenginetest.NewServer(t)
	g := newGroup(t, 1)
	c := newClient(t, fast(s.Addr))
	if _, err := run(t, g.Loop(0), c.Offer(rtpengine.Call{CallID: "m", FromTag: "f"}, []byte(offerSDP), nil)); err != nil {
		t.Fatal(err)
	}
	s.Refuse("answer", "Unknown call-id")
	_, _ = run(t, g.Loop(0), c.Answer(rtpengine.Call{CallID: "m", FromTag: "f", ToTag: "t"}, []byte(offerSDP), nil))
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c.Collector())
	inst := strings.TrimPrefix(s.Addr, "udp:")
	want := `
# HELP asyncsip_rtpengine_tries_total Commands sent to an rtpengine instance (one per instance tried), by outcome (ok, refused, timeout, bad_reply).
# TYPE asyncsip_rtpengine_tries_total counter
asyncsip_rtpengine_tries_total{instance="` + inst + `",outcome="bad_reply"} 0
asyncsip_rtpengine_tries_total{instance="` + inst + `",outcome="ok"} 1
asyncsip_rtpengine_tries_total{instance="` + inst + `",outcome="refused"} 1
asyncsip_rtpengine_tries_total{instance="` + inst + `",outcome="timeout"} 0
# HELP asyncsip_rtpengine_calls Calls whose instance is remembered (call affinity).
# TYPE asyncsip_rtpengine_calls gauge
asyncsip_rtpengine_calls 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "asyncsip_rtpengine_tries_total", "asyncsip_rtpengine_calls"); err != nil {
		t.Fatal(err)
	}
	if n, err := testutil.GatherAndCount(reg, "asyncsip_rtpengine_latency_seconds"); err != nil || n != 1 {
		t.Fatalf("latency histograms: %d, %v", n, err)
	}
}
