package tm

import (
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/asyncsip/asyncsip/reactor"
)

func seedCorpus(f *testing.F) {
	f.Add([]byte(invite("fz", "z9hG4bK-fz")))
	f.Add([]byte(request("OPTIONS", "sip:bob@127.0.0.1:5062", "fz2", "z9hG4bK-fz2", 1, "")))
	f.Add([]byte("SIP/2.0 180 Ringing\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKx\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:b@c>;tag=2\r\nCall-ID: fz\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"))
	files, _ := filepath.Glob(filepath.Join("testdata", "fuzz", "seed", "*.sip"))
	for _, p := range files {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
}

// FuzzParseValidate: the sanity gate, the parser and validation never panic
// and never accept what the gate refused.
func FuzzParseValidate(f *testing.F) {
	seedCorpus(f)
	p := newParser(Limits{})
	f.Fuzz(func(t *testing.T, data []byte) {
		msg, err := parse(p, data, Limits{})
		if err != nil {
			return
		}
		_ = validate(msg, Limits{})
		_ = msg.String()
	})
}

// FuzzRequestPath: bytes in → whatever the proxy sends out, through the
// real transaction layer on a manual loop. Nothing panics, every timer
// eventually runs out, and no state is left behind.
func FuzzRequestPath(f *testing.F) {
	seedCorpus(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		clk := reactor.NewFakeClock(time.Unix(1_700_000_000, 0))
		l := reactor.NewManual(clk)
		tp := &discardTP{}
		s := NewServer([]*reactor.Loop{l}, Config{}, Routes{Request: relayAll})
		s.AddTransport(tp)
		s.Receive(l, data, netip.MustParseAddrPort("127.0.0.1:5061"), tp)
		l.Advance(10 * time.Minute)
		if n := len(s.loops[0].stx) + len(s.loops[0].ctx); n != 0 {
			t.Fatalf("%d transactions left after all timers", n)
		}
	})
}

type discardTP struct{ n int }

func (d *discardTP) Send(_ *reactor.Loop, b []byte, _ netip.AddrPort) error {
	d.n += len(b)
	return nil
}
func (d *discardTP) Protocol() string          { return "UDP" }
func (d *discardTP) Advertised() (string, int) { return "127.0.0.1", 5060 }
func (d *discardTP) LocalAddr() netip.AddrPort { return proxyAddr }
