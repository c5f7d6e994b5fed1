package siptest_test

import (
	"testing"

	"github.com/asyncsip/asyncsip/siptest"
)

// BenchmarkHarnessCall measures one call through the harness: INVITE
// relayed, 180 and 200 injected, and the transcript kept — what a test
// case of a routing function costs.
func BenchmarkHarnessCall(b *testing.B) {
	h := siptest.NewHarness(b, relayTo("sip:bob@10.0.0.2"))
	b.ReportAllocs()
	for b.Loop() {
		res := h.Send(siptest.NewRequest("INVITE", "sip:bob@example.com"))
		res.Branch(0).Respond(180)
		res.Branch(0).Respond(200)
	}
}

// BenchmarkHarnessAwait measures a call whose route awaits a lookup that
// the test completes.
func BenchmarkHarnessAwait(b *testing.B) {
	h := siptest.NewHarness(b, lcrRoute(nil))
	b.ReportAllocs()
	for b.Loop() {
		res := h.Send(siptest.NewRequest("INVITE", "sip:1555@example.com"))
		if err := res.Await(0).Complete("sip:gw@10.0.0.1", nil); err != nil {
			b.Fatal(err)
		}
	}
}
