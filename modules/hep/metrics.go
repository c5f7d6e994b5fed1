package hep

import "github.com/prometheus/client_golang/prometheus"

var (
	dSent = prometheus.NewDesc("asyncsip_hep_packets_sent_total",
		"HEP packets written to the collector.", nil, nil)
	dDropped = prometheus.NewDesc("asyncsip_hep_packets_dropped_total",
		"Captured messages not sent to the collector, by reason (queue_full, too_large, send_error).",
		[]string{"reason"}, nil)
)

// Collector returns a Prometheus collector of the exporter's counters, to
// register with the server's exporter:
// exp.Registry().MustRegister(hx.Collector()), exp a *metrics.Exporter.
func (x *Exporter) Collector() prometheus.Collector { return collector{x} }

type collector struct{ x *Exporter }

func (c collector) Describe(ch chan<- *prometheus.Desc) { ch <- dSent; ch <- dDropped }

func (c collector) Collect(ch chan<- prometheus.Metric) {
	s := c.x.Stats()
	ch <- prometheus.MustNewConstMetric(dSent, prometheus.CounterValue, float64(s.Sent))
	ch <- prometheus.MustNewConstMetric(dDropped, prometheus.CounterValue, float64(s.Dropped), "queue_full")
	ch <- prometheus.MustNewConstMetric(dDropped, prometheus.CounterValue, float64(s.TooLarge), "too_large")
	ch <- prometheus.MustNewConstMetric(dDropped, prometheus.CounterValue, float64(s.SendErrors), "send_error")
}
