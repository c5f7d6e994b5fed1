package main

import (
	"testing"
	"time"

	"github.com/asyncsip/asyncsip/modules/exec"
	"github.com/asyncsip/asyncsip/siptest"
)

func TestRoutesWithScriptResults(t *testing.T) {
	cases := []struct {
		name   string
		result exec.Result
		want   int    // expected final reply, 0 when relayed
		target string // expected branch
	}{
		{"route", exec.Result{Stdout: []byte("sip:+1555@10.0.0.7:5060\n")}, 0, "sip:+1555@10.0.0.7:5060"},
		{"no route", exec.Result{ExitCode: 1}, 404, ""},
		{"empty output", exec.Result{}, 503, ""},
		// A target that cannot be resolved: tm answers 503 itself (RFC 3261 §16.9).
		{"unresolvable target", exec.Result{Stdout: []byte("sip:bob@no-such-host.invalid\n")}, 503, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ops := siptest.NewFakeOps()
			ops.On("route.script").Return(tc.result)
			h := siptest.NewHarness(t, Routes("/bin/route", time.Second), siptest.WithFakes(ops))
			res := h.Send(siptest.NewRequest("INVITE", "sip:+1555@example.com"))
			if tc.target != "" {
				siptest.AssertRelayedTo(t, res, tc.target)
				return
			}
			siptest.AssertReplied(t, res, tc.want)
		})
	}
}
