package e2e

// Per-message cost of the proxy's forward paths, measured on the tm core
// alone: a tm.Server on one manual reactor loop (fake clock, no sockets)
// with a transport that only keeps the last INVITE and BYE it was asked to
// send. Everything a real datagram goes through after the socket is timed:
// the sanity gate, parsing, validation, transaction matching and state,
// the route, Via/Record-Route/Max-Forwards edits, serialization.
//
//	go test -run '^$' -bench BenchmarkProxyForward -benchmem .

import (
	"bytes"
	"errors"
	"net/netip"
	"strconv"
	"testing"
	"time"

	"github.com/asyncsip/asyncsip/async"
	"github.com/asyncsip/asyncsip/reactor"
	"github.com/asyncsip/asyncsip/tm"
)

var (
	benchUAC = netip.MustParseAddrPort("127.0.0.1:5061")
	benchUAS = netip.MustParseAddrPort("127.0.0.1:5062")
)

// benchTP is the proxy's transport in benchmarks: sends are counted, and
// the last INVITE and BYE sent are kept so the UAS side can answer them.
type benchTP struct {
	inv, bye, ack []byte
	sent          int
}

func (t *benchTP) Send(_ *reactor.Loop, b []byte, _ netip.AddrPort) error {
	t.sent++
	switch {
	case bytes.HasPrefix(b, []byte("INVITE ")):
		t.inv = append(t.inv[:0], b...)
	case bytes.HasPrefix(b, []byte("BYE ")):
		t.bye = append(t.bye[:0], b...)
	case bytes.HasPrefix(b, []byte("ACK ")):
		t.ack = append(t.ack[:0], b...)
	}
	return nil
}

// recordRoute returns the value of the first Record-Route header of the
// last INVITE the proxy relayed (the one it added, signed for that call's
// dialog), or nil.
func (t *benchTP) recordRoute() []byte {
	const name = "\r\nRecord-Route: "
	i := bytes.Index(t.inv, []byte(name))
	if i < 0 {
		return nil
	}
	v := t.inv[i+len(name):]
	if end := bytes.Index(v, []byte("\r\n")); end >= 0 {
		v = v[:end]
	}
	return v
}
func (t *benchTP) Protocol() string          { return "UDP" }
func (t *benchTP) Advertised() (string, int) { return "127.0.0.1", 5060 }
func (t *benchTP) LocalAddr() netip.AddrPort { return netip.MustParseAddrPort("127.0.0.1:5060") }

// benchProxy is a tm.Server on one manual loop, and the UAC and UAS that
// talk to it, writing their messages into reused buffers.
type benchProxy struct {
	loop  *reactor.Loop
	srv   *tm.Server
	tp    *benchTP
	msg   []byte // the UAC's message being built
	r1xx  []byte // the UAS's responses being built
	r2xx  []byte
	route []byte // the route set of the current dialog: our signed Record-Route
	seq   int    // makes the branches of in-dialog requests unique
}

func newBenchProxy(route func(c *tm.Context)) *benchProxy {
	clk := reactor.NewFakeClock(time.Unix(1_700_000_000, 0))
	g := reactor.NewManualGroup(1, clk)
	srv := tm.NewServer(g.Loops(), tm.Config{}, tm.Routes{Request: route})
	tp := &benchTP{}
	srv.AddTransport(tp)
	return &benchProxy{loop: g.Loop(0), srv: srv, tp: tp}
}

func (p *benchProxy) receive(b []byte, from netip.AddrPort) { p.srv.Receive(p.loop, b, from, p.tp) }

// expire lets every transaction of the calls so far end (Timers B, D, H, J,
// K, L and the RFC 6026 Accepted state all fit in 2×40 s).
func (p *benchProxy) expire() {
	p.loop.Advance(40 * time.Second)
	p.loop.Advance(40 * time.Second)
}

const benchSDP = "v=0\r\no=alice 2890844526 2890844526 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\n" +
	"t=0 0\r\nm=audio 49170 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"

// invite writes call n's INVITE from the UAC (RFC 3261 §24.2 F1 layout).
func (p *benchProxy) invite(n int) []byte {
	b := append(p.msg[:0], "INVITE sip:bob@127.0.0.1:5062 SIP/2.0\r\n"+
		"Via: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-bench-"...)
	b = strconv.AppendInt(b, int64(n), 36)
	b = append(b, ";rport\r\nMax-Forwards: 70\r\nFrom: <sip:alice@127.0.0.1:5061>;tag=a"...)
	b = strconv.AppendInt(b, int64(n), 36)
	b = append(b, "\r\nTo: <sip:bob@127.0.0.1:5062>\r\nCall-ID: bench-"...)
	b = strconv.AppendInt(b, int64(n), 36)
	b = append(b, "\r\nCSeq: 1 INVITE\r\nContact: <sip:alice@127.0.0.1:5061>\r\n"+
		"Content-Type: application/sdp\r\nContent-Length: "...)
	b = strconv.AppendInt(b, int64(len(benchSDP)), 10)
	b = append(b, "\r\n\r\n"+benchSDP...)
	p.msg = b
	return b
}

// setRoute takes the dialog's route set from the INVITE the proxy just
// relayed, as the UAC does from the 200 (the UAS copies the Record-Route):
// the proxy's Record-Route, signed for the call (Call-ID, From tag).
func (p *benchProxy) setRoute() {
	p.route = append(p.route[:0], p.tp.recordRoute()...)
}

// inDialog writes call n's ACK or BYE, routed by the proxy's Record-Route
// (p.route, see setRoute) to the UAS's Contact (RFC 3261 §24.2 F11, F13).
func (p *benchProxy) inDialog(method string, cseq, n int) []byte {
	p.seq++
	b := append(p.msg[:0], method...)
	b = append(b, " sip:127.0.0.1:5062 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-bench-"...)
	b = append(b, method...)
	b = strconv.AppendInt(b, int64(n), 36)
	b = append(b, '-')
	b = strconv.AppendInt(b, int64(p.seq), 36)
	b = append(b, ";rport\r\nRoute: "...)
	b = append(b, p.route...)
	b = append(b, "\r\nMax-Forwards: 70\r\n"+
		"From: <sip:alice@127.0.0.1:5061>;tag=a"...)
	b = strconv.AppendInt(b, int64(n), 36)
	b = append(b, "\r\nTo: <sip:bob@127.0.0.1:5062>;tag=b\r\nCall-ID: bench-"...)
	b = strconv.AppendInt(b, int64(n), 36)
	b = append(b, "\r\nCSeq: "...)
	b = strconv.AppendInt(b, int64(cseq), 10)
	b = append(b, ' ')
	b = append(b, method...)
	b = append(b, "\r\nContent-Length: 0\r\n\r\n"...)
	p.msg = b
	return b
}

// respond writes the UAS's response to the request req the proxy sent:
// Vias, Record-Route, From, Call-ID and CSeq copied, To tagged (RFC 3261
// §8.2.6), and a Contact for an INVITE. When req is not a request it
// returns nil it returns nil (the proxy did not relay what the
// benchmark expects, see call).
func respond(dst []byte, req []byte, status string) []byte {
	if !bytes.Contains(req, []byte("\r\n\r\n")) {
		return nil
	}
	b := append(dst[:0], "SIP/2.0 "...)
	b = append(b, status...)
	b = append(b, "\r\n"...)
	head := req[bytes.Index(req, []byte("\r\n"))+2:]
	if end := bytes.Index(head, []byte("\r\n\r\n")); end >= 0 {
		head = head[:end+2]
	}
	for len(head) > 0 {
		i := bytes.Index(head, []byte("\r\n"))
		line := head[:i]
		head = head[i+2:]
		switch {
		case bytes.HasPrefix(line, []byte("Via:")), bytes.HasPrefix(line, []byte("Record-Route:")),
			bytes.HasPrefix(line, []byte("From:")), bytes.HasPrefix(line, []byte("Call-ID:")),
			bytes.HasPrefix(line, []byte("CSeq:")):
			b = append(b, line...)
			b = append(b, "\r\n"...)
		case bytes.HasPrefix(line, []byte("To:")):
			b = append(b, line...)
			if !bytes.Contains(line, []byte(";tag=")) {
				b = append(b, ";tag=b"...)
			}
			b = append(b, "\r\n"...)
		}
	}
	if bytes.HasPrefix(req, []byte("INVITE ")) {
		b = append(b, "Contact: <sip:127.0.0.1:5062>\r\n"...)
	}
	return append(b, "Content-Length: 0\r\n\r\n"...)
}

// call runs one whole call through the proxy: INVITE, 180, 200, ACK, BYE,
// 200 (six messages received, each forwarded; plus the proxy's 100).
// With await the route suspends on a 1 ms Sleep before relaying the INVITE.
// It returns an error when the proxy did not relay the INVITE or the BYE.
func (p *benchProxy) call(n int, await bool) error {
	p.tp.inv, p.tp.bye = p.tp.inv[:0], p.tp.bye[:0]
	p.receive(p.invite(n), benchUAC)
	if await {
		p.loop.Advance(time.Millisecond) // the Sleep ends: resume, relay
	}
	p.r1xx = respond(p.r1xx, p.tp.inv, "180 Ringing")
	p.r2xx = respond(p.r2xx, p.tp.inv, "200 OK")
	if p.r2xx == nil {
		return errors.New("bench: the INVITE was not relayed")
	}
	p.setRoute()
	p.receive(p.r1xx, benchUAS)
	p.receive(p.r2xx, benchUAS)
	p.receive(p.inDialog("ACK", 1, n), benchUAC)
	p.receive(p.inDialog("BYE", 2, n), benchUAC)
	p.r2xx = respond(p.r2xx, p.tp.bye, "200 OK")
	if p.r2xx == nil {
		return errors.New("bench: the BYE was not relayed")
	}
	p.receive(p.r2xx, benchUAS)
	return nil
}

func relayRoute(c *tm.Context) { _ = c.Relay() }

func awaitRelayRoute(c *tm.Context) {
	if c.Method() != "INVITE" {
		_ = c.Relay()
		return
	}
	async.Await(c, async.Sleep(time.Millisecond), func(_ struct{}, err error) {
		if err != nil {
			_ = c.Reply(500, "Server Internal Error")
			return
		}
		_ = c.Relay()
	})
}

// batch is how many calls run between two expire rounds (untimed).
const batch = 1024

// BenchmarkProxyForward measures the forward paths of the stateful proxy:
//   - call: one op is a whole call, six messages in and out (ns/msg is
//     the average per message received);
//   - call-await: the same with async.Await(Sleep) before the INVITE is
//     relayed (the difference to call is the cost of one await in a route);
//   - invite: one op is an INVITE received, answered 100 and relayed
//     (server and client transaction created): the request path;
//   - response: one op is a 180 or a 200 from the UAS relayed upstream
//     through both transactions: the response path;
//   - ack: one op is an ACK for a 2xx routed by Route without a
//     transaction: the stateless request path.
func BenchmarkProxyForward(b *testing.B) {
	for _, tc := range []struct {
		name  string
		await bool
	}{{"call", false}, {"call-await", true}} {
		b.Run(tc.name, func(b *testing.B) {
			route := relayRoute
			if tc.await {
				route = awaitRelayRoute
			}
			p := newBenchProxy(route)
			if err := p.call(-1, tc.await); err != nil { // warm the buffers
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if i%batch == batch-1 {
					b.StopTimer()
					p.expire()
					b.StartTimer()
				}
				if err := p.call(i, tc.await); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(6*b.N), "ns/msg")
		})
	}
	b.Run("invite", func(b *testing.B) {
		p := newBenchProxy(relayRoute)
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			if i%batch == batch-1 {
				b.StopTimer()
				p.expire()
				b.StartTimer()
			}
			p.receive(p.invite(i), benchUAC)
		}
	})
	b.Run("response", func(b *testing.B) {
		p := newBenchProxy(relayRoute)
		var msgs [][]byte
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			if len(msgs) == 0 { // untimed: expire, then start a batch of calls
				b.StopTimer()
				p.expire()
				for k := 0; k < batch/2; k++ {
					p.receive(p.invite(i+k), benchUAC)
					msgs = append(msgs, respond(nil, p.tp.inv, "180 Ringing"), respond(nil, p.tp.inv, "200 OK"))
				}
				b.StartTimer()
			}
			p.receive(msgs[0], benchUAS)
			msgs = msgs[1:]
		}
	})
	b.Run("ack", func(b *testing.B) {
		p := newAckBench()
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			p.receive(p.inDialog("ACK", 1, 0), benchUAC)
		}
	})
}

// newAckBench returns a proxy that relayed call 0's INVITE, and holds its
// signed route set: the "ack" benchmark sends that call's ACK again and
// again, each a new stateless forward.
func newAckBench() *benchProxy {
	p := newBenchProxy(relayRoute)
	p.receive(p.invite(0), benchUAC)
	p.setRoute()
	return p
}

// The benchmark's calls take the intended path: every message is relayed
// (100 + six forwards per call), nothing is dropped, and the transactions
// all end once the timers have run.
func TestBenchProxyCallPath(t *testing.T) {
	for _, await := range []bool{false, true} {
		route := relayRoute
		if await {
			route = awaitRelayRoute
		}
		p := newBenchProxy(route)
		const calls = 3
		for n := 0; n < calls; n++ {
			if err := p.call(n, await); err != nil {
				t.Fatalf("await=%v, call %d: %v", await, n, err)
			}
		}
		st := p.srv.Stats()
		if p.tp.sent != 7*calls || st.ClientTxCreated != 2*calls || st.Stateless != calls ||
			st.DropParse+st.DropInvalid+st.DropOther+st.DropUnsigned != 0 || st.InProgress != 0 {
			t.Fatalf("await=%v: sent %d, stats %+v", await, p.tp.sent, st)
		}
		p.expire()
		if st := p.srv.Stats(); st.ServerTxDone != st.ServerTxCreated || st.ClientTxDone != st.ClientTxCreated {
			t.Fatalf("await=%v: transactions left after expiry: %+v", await, st)
		}
	}
}

// The "ack" benchmark forwards every ACK (none refused as unsigned).
func TestBenchProxyAckPath(t *testing.T) {
	p := newAckBench()
	if len(p.route) == 0 {
		t.Fatal("the INVITE was not relayed with a Record-Route")
	}
	before := p.tp.sent
	const acks = 5
	for i := 0; i < acks; i++ {
		p.receive(p.inDialog("ACK", 1, 0), benchUAC)
	}
	if st := p.srv.Stats(); p.tp.sent-before != acks || st.Stateless != acks || st.DropUnsigned != 0 {
		t.Fatalf("sent %d of %d ACKs, stats %+v", p.tp.sent-before, acks, st)
	}
}
