package dispatcher

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Prometheus series, read at scrape time from Targets and Stats: nothing is
// added to selection or probing.
var (
	dTargetUp = prometheus.NewDesc("asyncsip_dispatcher_target_up",
		"1 when the target is up (selectable), 0 when probing or MarkDown took it out.", []string{"set", "uri"}, nil)
	dTargetSelected = prometheus.NewDesc("asyncsip_dispatcher_target_selected_total",
		"Calls sent to the target (Select and Next), all sets together.", []string{"uri"}, nil)
	dTargetProbes = prometheus.NewDesc("asyncsip_dispatcher_target_probes_total",
		"Probes of the target that ended.", []string{"uri"}, nil)
	dTargetProbeFailures = prometheus.NewDesc("asyncsip_dispatcher_target_probe_failures_total",
		"Probes of the target that failed (timeout, unreachable, a failure code).", []string{"uri"}, nil)
	dNoTarget = prometheus.NewDesc("asyncsip_dispatcher_no_target_total",
		"Selections that found no live target (answered 503 by Relay and RelayNext).", nil, nil)
	dProbes = prometheus.NewDesc("asyncsip_dispatcher_probes_total",
		"Probes by outcome: sent, failed, skipped (a probe still out, MaxInFlight, our own overload).", []string{"outcome"}, nil)
	dChanges = prometheus.NewDesc("asyncsip_dispatcher_state_changes_total",
		"Target state changes, by new state (up, down).", []string{"state"}, nil)
	dTargetsDown = prometheus.NewDesc("asyncsip_dispatcher_targets",
		"Distinct targets, by state (up, down).", []string{"state"}, nil)
)

type collector struct{ d *Dispatcher }

// Collector returns a prometheus.Collector of the dispatcher's state: per
// target up/down (by set) and counters, probes, state changes. Register it
// with the metrics exporter (metrics.Exporter.Registry().MustRegister); two
// dispatchers in one registry need prometheus.WrapRegistererWith to tell
// them apart.
func (d *Dispatcher) Collector() prometheus.Collector { return collector{d} }

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{dTargetUp, dTargetSelected, dTargetProbes, dTargetProbeFailures, dNoTarget, dProbes, dChanges, dTargetsDown} {
		ch <- d
	}
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	seen := map[string]bool{}
	for _, t := range c.d.Targets() {
		up := 0.0
		if t.Up {
			up = 1
		}
		ch <- prometheus.MustNewConstMetric(dTargetUp, prometheus.GaugeValue, up, t.Set, t.URI)
		if seen[t.URI] {
			continue
		}
		seen[t.URI] = true
		ch <- prometheus.MustNewConstMetric(dTargetSelected, prometheus.CounterValue, float64(t.Selected), t.URI)
		ch <- prometheus.MustNewConstMetric(dTargetProbes, prometheus.CounterValue, float64(t.Probes), t.URI)
		ch <- prometheus.MustNewConstMetric(dTargetProbeFailures, prometheus.CounterValue, float64(t.ProbesFailed), t.URI)
	}
	st := c.d.Stats()
	ch <- prometheus.MustNewConstMetric(dNoTarget, prometheus.CounterValue, float64(st.NoTarget))
	for outcome, v := range map[string]uint64{"sent": st.ProbesSent, "failed": st.ProbesFailed, "skipped": st.ProbesSkipped} {
		ch <- prometheus.MustNewConstMetric(dProbes, prometheus.CounterValue, float64(v), outcome)
	}
	ch <- prometheus.MustNewConstMetric(dChanges, prometheus.CounterValue, float64(st.Ups), "up")
	ch <- prometheus.MustNewConstMetric(dChanges, prometheus.CounterValue, float64(st.Downs), "down")
	ch <- prometheus.MustNewConstMetric(dTargetsDown, prometheus.GaugeValue, float64(st.Targets-st.TargetsDown), "up")
	ch <- prometheus.MustNewConstMetric(dTargetsDown, prometheus.GaugeValue, float64(st.TargetsDown), "down")
}
