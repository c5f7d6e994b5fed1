package dialog_test

import (
	"io"
	"log/slog"
	"runtime"
	"testing"

	"github.com/asyncsip/asyncsip/modules/dialog"
	"github.com/asyncsip/asyncsip/siptest"
	"github.com/asyncsip/asyncsip/tm"
)

// benchRig is a harness relaying every INVITE to the callee, tracking it
// when tr is not nil (with two profile values and a max duration, which
// arms a timer per call).
func benchRig(b *testing.B, tr *dialog.Tracker) *siptest.Harness {
	opts := dialog.Options{MaxDuration: 3600e9, Profiles: []dialog.ProfileValue{
		{Profile: "trunk", Value: "gw1"}, {Profile: "user", Value: "alice"}}}
	route := func(c *tm.Context) {
		if c.InDialog() {
			_ = c.Relay()
			return
		}
		if tr != nil {
			if err := tr.Track(c, opts); err != nil {
				b.Fatal(err)
			}
		}
		_ = c.Relay("sip:bob@" + calleeAddr)
	}
	r := tm.Routes{Request: route}
	if tr != nil {
		r = tr.Routes(r)
	}
	return siptest.NewHarness(b, r)
}

func quietTracker() *dialog.Tracker {
	return dialog.New(dialog.Config{MaxDialogs: 1 << 30, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
}

// setUp runs INVITE, 180, 200 and ACK through the harness.
func setUp(h *siptest.Harness) *siptest.Dialog {
	inv := siptest.NewRequest("INVITE", "sip:bob@example.com")
	res := h.Send(inv)
	res.Branch(0).Respond(180)
	res.Branch(0).Respond(200)
	d := siptest.NewDialog(inv, res.LastReply().Response)
	h.Send(d.Ack())
	return d
}

// BenchmarkCall is one whole call (INVITE, 180, 200, ACK, BYE, 200)
// through the harness, without and with tracking: the difference is the
// tracker's cost per call.
func BenchmarkCall(b *testing.B) {
	for _, tracked := range []bool{false, true} {
		name := "plain"
		var tr *dialog.Tracker
		if tracked {
			name, tr = "tracked", quietTracker()
		}
		b.Run(name, func(b *testing.B) {
			h := benchRig(b, tr)
			b.ReportAllocs()
			for b.Loop() {
				d := setUp(h)
				h.Send(d.Bye()).Branch(0).Respond(200)
			}
			if tr != nil && tr.Active() != 0 {
				b.Fatalf("%d calls still tracked", tr.Active())
			}
		})
	}
}

// BenchmarkDialogMemory measures the heap a confirmed call holds in the
// tracker (B/dialog): the heap after n confirmed calls, tracked and not,
// through the same harness, divided by n.
func BenchmarkDialogMemory(b *testing.B) {
	const n = 2000
	heap := func(tr *dialog.Tracker) uint64 {
		h := benchRig(b, tr)
		runtime.GC()
		var m0, m1 runtime.MemStats
		runtime.ReadMemStats(&m0)
		for range n {
			setUp(h)
		}
		runtime.GC()
		runtime.ReadMemStats(&m1)
		runtime.KeepAlive(h)
		if tr != nil && tr.Active() != n {
			b.Fatalf("%d calls tracked, want %d", tr.Active(), n)
		}
		return m1.HeapAlloc - m0.HeapAlloc
	}
	var per float64
	for b.Loop() {
		plain := heap(nil)
		tracked := heap(quietTracker())
		per = (float64(tracked) - float64(plain)) / n
	}
	b.ReportMetric(per, "B/dialog")
}
