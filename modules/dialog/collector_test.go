package dialog_test

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/asyncsip/asyncsip/modules/dialog"
	"github.com/asyncsip/asyncsip/siptest"
)

func gather(t *testing.T, c prometheus.Collector) map[string]float64 {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	require.NoError(t, reg.Register(c))
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
	return got
}

func TestCollector(t *testing.T) {
	opts := dialog.Options{MaxDuration: time.Minute, Profiles: []dialog.ProfileValue{
		{Profile: "trunk", Value: "gw1", Limit: 2}, {Profile: "user", Value: "alice"}}}
	r := newRig(t, dialog.Config{}, opts)
	inv, ok := r.call(t)
	r.call(t)
	r.h.Send(siptest.NewRequest("INVITE", "sip:bob@example.com")) // over the limit: 486
	r.h.Send(siptest.NewDialog(inv, ok).Bye())

	got := gather(t, r.tr.Collector("trunk"))
	for k, want := range map[string]float64{
		"asyncsip_dialog_active":                                     1,
		"asyncsip_dialog_calls_total step=created":                   2,
		"asyncsip_dialog_calls_total step=confirmed":                 2,
		"asyncsip_dialog_calls_total step=terminated":                1,
		"asyncsip_dialog_terminated_total reason=bye-caller":         1,
		"asyncsip_dialog_terminated_total reason=timeout":            0,
		"asyncsip_dialog_refused_total cause=limit":                  1,
		"asyncsip_dialog_refused_total cause=overloaded":             0,
		"asyncsip_dialog_requests_total method=BYE outcome=sent":     0,
		"asyncsip_dialog_profile_calls profile=trunk value=gw1":      1,
		"asyncsip_dialog_requests_total method=OPTIONS outcome=sent": 0,
	} {
		v, found := got[k]
		if assert.True(t, found, "%s missing: %v", k, got) {
			assert.Equal(t, want, v, k)
		}
	}
	_, user := got["asyncsip_dialog_profile_calls profile=user value=alice"]
	assert.False(t, user, "only the named profiles are exported")

	r.h.Clock.Advance(time.Minute)
	got = gather(t, r.tr.Collector("trunk"))
	assert.Equal(t, 2.0, got["asyncsip_dialog_requests_total method=BYE outcome=sent"])
	assert.Equal(t, 1.0, got["asyncsip_dialog_terminated_total reason=timeout"])
	_, gw := got["asyncsip_dialog_profile_calls profile=trunk value=gw1"]
	assert.False(t, gw, "a value back at zero is not exported")
}
