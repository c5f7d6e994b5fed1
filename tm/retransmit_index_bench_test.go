package tm

import (
	"net/netip"
	"testing"
	"time"

	"github.com/asyncsip/asyncsip/reactor"
)

// wireTP keeps the last message sent, in a reused buffer: sending
// allocates nothing, so AllocsPerRun sees only the server.
type wireTP struct {
	keep bool     // also keep every message (setup)
	out  [][]byte // kept messages
	last []byte
	to   netip.AddrPort
	n    int
}

func (w *wireTP) Send(_ *reactor.Loop, b []byte, to netip.AddrPort) error {
	w.last, w.to = append(w.last[:0], b...), to
	w.n++
	if w.keep {
		w.out = append(w.out, append([]byte(nil), b...))
	}
	return nil
}
func (w *wireTP) Protocol() string          { return "UDP" }
func (w *wireTP) Advertised() (string, int) { return "127.0.0.1", 5060 }
func (w *wireTP) LocalAddr() netip.AddrPort { return proxyAddr }

// take returns the kept messages and forgets them.
func (w *wireTP) take() [][]byte { out := w.out; w.out = nil; return out }

// BenchmarkRetransmissionAbsorbed: one op is a retransmitted INVITE
// answered with the 100 again (UDP, one loop): the cost of a
// retransmission on a lossy path.
func BenchmarkRetransmissionAbsorbed(b *testing.B) {
	clk := reactor.NewFakeClock(time.Unix(1_700_000_000, 0))
	g := reactor.NewManualGroup(1, clk)
	s := NewServer(g.Loops(), Config{}, Routes{Request: relayAll})
	tp := &wireTP{}
	s.AddTransport(tp)
	l := g.Loop(0)
	inv := []byte(invite("bench-retrans", "z9hG4bK-bench"))
	s.Receive(l, inv, uacAddr, tp)
	l.RunPending()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		s.Receive(l, inv, uacAddr, tp)
		l.RunPending()
	}
	if tp.n != b.N+2 {
		b.Fatalf("sent %d messages, want %d (100, INVITE, a 100 per retransmission)", tp.n, b.N+2)
	}
}
