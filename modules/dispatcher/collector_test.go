package dispatcher_test

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/asyncsip/asyncsip/modules/dispatcher"
	"github.com/asyncsip/asyncsip/siptest"
)

// The collector shows each target's state per set and its counters once
// per URI, even when two sets share it.
func TestCollector(t *testing.T) {
	d := newDispatcher(t,
		dispatcher.SetConfig{ID: "gw", Targets: targets(1, 1)},
		dispatcher.SetConfig{ID: "b", Targets: targets(1)}) // shares 10.0.0.1
	h := siptest.NewHarness(t, relayRoutes(d))
	route(t, h, 4, 0)
	require.NoError(t, d.MarkDown("10.0.0.2:5060"))
	reg := prometheus.NewPedanticRegistry()
	require.NoError(t, reg.Register(d.Collector()))
	fams, err := reg.Gather()
	require.NoError(t, err)
	got := map[string]float64{}
	for _, f := range fams {
		for _, m := range f.GetMetric() {
			key := f.GetName()
			for _, l := range m.GetLabel() {
				key += " " + l.GetName() + "=" + l.GetValue()
			}
			if g := m.GetGauge(); g != nil {
				got[key] = g.GetValue()
			} else {
				got[key] = m.GetCounter().GetValue()
			}
		}
	}
	for key, v := range map[string]float64{
		"asyncsip_dispatcher_target_up set=gw uri=sip:10.0.0.1:5060":            1,
		"asyncsip_dispatcher_target_up set=gw uri=sip:10.0.0.2:5060":            0,
		"asyncsip_dispatcher_target_up set=b uri=sip:10.0.0.1:5060":             1,
		"asyncsip_dispatcher_target_selected_total uri=sip:10.0.0.1:5060":       2,
		"asyncsip_dispatcher_target_selected_total uri=sip:10.0.0.2:5060":       2,
		"asyncsip_dispatcher_targets state=down":                                1,
		"asyncsip_dispatcher_targets state=up":                                  1,
		"asyncsip_dispatcher_state_changes_total state=down":                    1,
		"asyncsip_dispatcher_state_changes_total state=up":                      0,
		"asyncsip_dispatcher_probes_total outcome=sent":                         0,
		"asyncsip_dispatcher_no_target_total":                                   0,
		"asyncsip_dispatcher_target_probe_failures_total uri=sip:10.0.0.1:5060": 0,
	} {
		assert.Contains(t, got, key)
		assert.Equal(t, v, got[key], key)
	}
	assert.Len(t, got, 3+2*3+2+2+3+1, "target_up per set entry, counters once per URI: %v", got)
}
