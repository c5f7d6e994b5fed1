package tm

import (
	"net/netip"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/asyncsip/asyncsip/reactor"
)

// answerTP answers every request it is given 200, from where it was sent,
// as a gateway on the other end of a socket would: the cost of a probe
// (build, send, parse the answer, match, report) without the kernel.
type answerTP struct {
	s *Server
	l *reactor.Loop
}

func (a *answerTP) Send(_ *reactor.Loop, b []byte, to netip.AddrPort) error {
	msg, err := sip.ParseMessage(append([]byte(nil), b...))
	if err != nil {
		return err
	}
	if req, ok := msg.(*sip.Request); ok {
		wire := []byte(sip.NewResponseFromRequest(req, 200, "OK", nil).String())
		return a.l.Post(func() { a.s.Receive(a.l, wire, to, a) })
	}
	return nil
}
func (a *answerTP) Protocol() string          { return "UDP" }
func (a *answerTP) Advertised() (string, int) { return "127.0.0.1", 5060 }
func (a *answerTP) LocalAddr() netip.AddrPort { return proxyAddr }

// BenchmarkOriginatedOptions is the cost of one OPTIONS probe answered 200
// on one loop: NewRequest, Originate, the client transaction, the answer
// (built and parsed here too, as the peer's work) and the report.
func BenchmarkOriginatedOptions(b *testing.B) {
	clk := reactor.NewFakeClock(time.Unix(0, 0))
	g := reactor.NewManualGroup(1, clk)
	s := NewServer(g.Loops(), Config{}, Routes{})
	l := g.Loop(0)
	s.AddTransport(&answerTP{s: s, l: l})
	ok := 0
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		req, err := s.NewRequest(OutOfDialog{Method: sip.OPTIONS, Target: "sip:gw@127.0.0.1:5062"})
		if err != nil {
			b.Fatal(err)
		}
		s.Originate(l, req, SendOptions{}, func(resp *sip.Response, err error) {
			if err == nil && resp.StatusCode == 200 {
				ok++
			}
		})
		l.RunPending()
		if i%1024 == 0 {
			l.Advance(10 * time.Second) // Timer K: completed transactions go
		}
	}
	b.StopTimer()
	if ok != b.N {
		b.Fatalf("%d of %d probes answered", ok, b.N)
	}
}
