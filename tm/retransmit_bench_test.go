package tm

import (
	"strconv"
	"testing"
	"time"

	"github.com/asyncsip/asyncsip/reactor"
)

// BenchmarkRetransmitTimerA: one op is the six Timer A retransmissions
// (0.5 s to 16 s apart, RFC 3261 §17.1.1.2) of a relayed INVITE the next
// hop never answers; receiving the INVITE and the Timer B/C ending are
// untimed.
//
//	go test -run '^$' -bench BenchmarkRetransmitTimerA -benchmem -benchtime=20000x ./tm
func BenchmarkRetransmitTimerA(b *testing.B) {
	clk := reactor.NewFakeClock(time.Unix(1_700_000_000, 0))
	g := reactor.NewManualGroup(1, clk)
	l := g.Loop(0)
	s := NewServer(g.Loops(), Config{}, Routes{Request: func(c *Context) { _ = c.Relay() }})
	tp := &countTP{}
	s.AddTransport(tp)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		n := strconv.Itoa(i)
		s.Receive(l, []byte(invite("retr-"+n, "z9hG4bK-r"+n)), uacAddr, tp)
		before := tp.n
		b.StartTimer()
		for d := 500 * time.Millisecond; d <= 16*time.Second; d *= 2 {
			l.Advance(d)
		}
		b.StopTimer()
		if got := tp.n - before; got != 6 {
			b.Fatalf("%d retransmissions, want 6", got)
		}
		l.Advance(5 * time.Minute) // Timers B and C, then the transactions end
		b.StartTimer()
	}
}
