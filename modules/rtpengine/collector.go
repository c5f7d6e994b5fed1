package rtpengine

import (
	"github.com/prometheus/client_golang/prometheus"
)

var (
	dTries = prometheus.NewDesc("asyncsip_rtpengine_tries_total",
		"Commands sent to an rtpengine instance (one per instance tried), by outcome (ok, refused, timeout, bad_reply).",
		[]string{"instance", "outcome"}, nil)
	dRetrans = prometheus.NewDesc("asyncsip_rtpengine_retransmissions_total",
		"Command retransmissions, per instance.", []string{"instance"}, nil)
	dFailovers = prometheus.NewDesc("asyncsip_rtpengine_failovers_total",
		"Offers moved off the instance (no answer, or the instance was down).", []string{"instance"}, nil)
	dUp = prometheus.NewDesc("asyncsip_rtpengine_instance_up",
		"1 while the instance is in the choice for new calls.", []string{"instance"}, nil)
	dLatency = prometheus.NewDesc("asyncsip_rtpengine_latency_seconds",
		"Round trip of answered commands, per instance.", []string{"instance"}, nil)
	dCalls = prometheus.NewDesc("asyncsip_rtpengine_calls",
		"Calls whose instance is remembered (call affinity).", nil, nil)
	dInFlight = prometheus.NewDesc("asyncsip_rtpengine_in_flight",
		"Commands waiting for an answer.", nil, nil)
	dOverloaded = prometheus.NewDesc("asyncsip_rtpengine_overloaded_total",
		"Commands refused over MaxInFlight.", nil, nil)
)

// Collector returns a Prometheus collector of the client's counters, per
// instance, to register with the server's exporter:
// srv.Metrics().Registry().MustRegister(rtp.Collector()).
func (c *Client) Collector() prometheus.Collector { return collector{c} }

type collector struct{ c *Client }

func (collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{dTries, dRetrans, dFailovers, dUp, dLatency, dCalls, dInFlight, dOverloaded} {
		ch <- d
	}
}

func (k collector) Collect(ch chan<- prometheus.Metric) {
	s := k.c.Stats()
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	for _, in := range s.Instances {
		counter(dTries, in.OK, in.Addr, KindOK.String())
		counter(dTries, in.Refused, in.Addr, KindRefused.String())
		counter(dTries, in.Timeouts, in.Addr, KindTimeout.String())
		counter(dTries, in.BadReplies, in.Addr, KindBadReply.String())
		counter(dRetrans, in.Retransmits, in.Addr)
		counter(dFailovers, in.Failovers, in.Addr)
		up := 0.0
		if in.Up {
			up = 1
		}
		ch <- prometheus.MustNewConstMetric(dUp, prometheus.GaugeValue, up, in.Addr)
		buckets := map[float64]uint64{}
		var n uint64
		for i, b := range latencyBounds {
			n += in.LatencyBuckets[i]
			buckets[b.Seconds()] = n
		}
		n += in.LatencyBuckets[len(latencyBounds)]
		ch <- prometheus.MustNewConstHistogram(dLatency, n, in.LatencySum.Seconds(), buckets, in.Addr)
	}
	ch <- prometheus.MustNewConstMetric(dCalls, prometheus.GaugeValue, float64(s.Calls))
	ch <- prometheus.MustNewConstMetric(dInFlight, prometheus.GaugeValue, float64(s.InFlight))
	counter(dOverloaded, s.Overloaded)
}
