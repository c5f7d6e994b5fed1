package dialog

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Prometheus series, read at scrape time from Stats and the store: nothing
// is added to the calls' path.
var (
	dActive = prometheus.NewDesc("asyncsip_dialog_active",
		"Calls tracked now.", nil, nil)
	dCalls = prometheus.NewDesc("asyncsip_dialog_calls_total",
		"Tracked calls through each step: created, confirmed, terminated.", []string{"step"}, nil)
	dTerminated = prometheus.NewDesc("asyncsip_dialog_terminated_total",
		"Tracked calls ended, by reason.", []string{"reason"}, nil)
	dRefused = prometheus.NewDesc("asyncsip_dialog_refused_total",
		"Track calls refused: overloaded (MaxDialogs), limit (a profile value at its limit).", []string{"cause"}, nil)
	dRequests = prometheus.NewDesc("asyncsip_dialog_requests_total",
		"Requests the tracker sent (BYE, OPTIONS pings), by outcome: sent, failed.", []string{"method", "outcome"}, nil)
	dProfile = prometheus.NewDesc("asyncsip_dialog_profile_calls",
		"Calls counted now in a profile value.", []string{"profile", "value"}, nil)
)

type collector struct {
	t        *Tracker
	profiles []string
}

// Collector returns a prometheus.Collector of the tracker: active calls,
// calls per step and per end reason, refusals, BYEs and pings, and the
// counts of the named profiles per value (name only profiles whose values
// are few — per trunk, per tenant — not per user). Register it with the
// metrics exporter (metrics.Exporter.Registry().MustRegister).
func (t *Tracker) Collector(profiles ...string) prometheus.Collector {
	return collector{t: t, profiles: profiles}
}

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{dActive, dCalls, dTerminated, dRefused, dRequests, dProfile} {
		ch <- d
	}
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	st := c.t.Stats()
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	ch <- prometheus.MustNewConstMetric(dActive, prometheus.GaugeValue, float64(st.Active))
	counter(dCalls, st.Created, "created")
	counter(dCalls, st.Confirmed, "confirmed")
	counter(dCalls, st.Terminated, "terminated")
	for r, v := range st.ByReason {
		counter(dTerminated, v, string(r))
	}
	counter(dRefused, st.Overloaded, "overloaded")
	counter(dRefused, st.Limited, "limit")
	counter(dRequests, st.ByeSent, "BYE", "sent")
	counter(dRequests, st.ByeFailed, "BYE", "failed")
	counter(dRequests, st.PingSent, "OPTIONS", "sent")
	counter(dRequests, st.PingFailed, "OPTIONS", "failed")
	for _, p := range c.profiles {
		for v, n := range c.t.Profile(p).Values() {
			ch <- prometheus.MustNewConstMetric(dProfile, prometheus.GaugeValue, float64(n), p, v)
		}
	}
}
