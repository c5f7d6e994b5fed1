package tm

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/asyncsip/asyncsip/async"
	"github.com/asyncsip/asyncsip/reactor"
)

// captured is a CaptureEvent with its bytes copied, as the hook's contract
// asks.
type captured struct {
	ev   CaptureEvent
	data string
}

func captureInto(out *[]captured) func(CaptureEvent) {
	return func(ev CaptureEvent) {
		*out = append(*out, captured{ev, string(ev.Data)})
	}
}

func TestCaptureSeesEveryMessage(t *testing.T) {
	var evs []captured
	r := newRig(t, Config{Capture: captureInto(&evs)}, Routes{Request: relayAll})

	inv := invite("cap-1", "z9hG4bK-cap1")
	r.recv(uacAddr, inv)
	out := r.expect("127.0.0.1:5061 100", "127.0.0.1:5062 INVITE")
	ok := respond(out[1].msg, 200, "b1").String()
	r.recv(uasAddr, ok)
	r.expect("127.0.0.1:5061 200")
	r.recv(uacAddr, "\r\n\r\n") // keep-alive: not a message
	r.recv(uacAddr, "GARBAGE\r\n\r\n")

	type row struct {
		dir    CaptureDirection
		remote netip.AddrPort
		first  string
	}
	var got []row
	for _, c := range evs {
		line, _, _ := bytes.Cut([]byte(c.data), []byte("\r\n"))
		got = append(got, row{c.ev.Dir, c.ev.Remote, string(line)})
		assert.Equal(t, proxyAddr, c.ev.Local)
		assert.Equal(t, "UDP", c.ev.Protocol)
		assert.Equal(t, 0, c.ev.Loop)
		assert.False(t, c.ev.Time.IsZero())
	}
	want := []row{
		{CaptureIn, uacAddr, "INVITE sip:bob@127.0.0.1:5062 SIP/2.0"},
		{CaptureOut, uacAddr, "SIP/2.0 100 Trying"},
		{CaptureOut, uasAddr, "INVITE sip:bob@127.0.0.1:5062 SIP/2.0"},
		{CaptureIn, uasAddr, "SIP/2.0 200 OK"},
		{CaptureOut, uacAddr, "SIP/2.0 200 OK"},
		{CaptureIn, uacAddr, "GARBAGE"},
	}
	require.Equal(t, want, got)
	// The bytes are exactly what crossed the transport.
	assert.Equal(t, inv, evs[0].data)
	assert.Equal(t, ok, evs[3].data)
	for i, s := range r.tp.out {
		assert.Equal(t, s.msg.String(), evs[[]int{1, 2, 4}[i]].data, "sent message %d", i)
	}

	m := r.s.Messages()
	assert.EqualValues(t, 2, m.RequestsIn["INVITE"]+m.RequestsIn["other"])
	assert.EqualValues(t, 1, m.RequestsIn["other"], "the malformed datagram")
	assert.EqualValues(t, 1, m.RequestsOut["INVITE"])
	assert.Equal(t, [6]uint64{0, 1, 0, 0, 0, 0}, m.ResponsesIn)
	assert.Equal(t, [6]uint64{1, 1, 0, 0, 0, 0}, m.ResponsesOut)
}

func TestCaptureCountsRetransmissions(t *testing.T) {
	var evs []captured
	r := newRig(t, Config{Capture: captureInto(&evs)}, Routes{Request: func(c *Context) { _ = c.Reply(486, "") }})
	r.recv(uacAddr, invite("cap-2", "z9hG4bK-cap2"))
	r.expect("127.0.0.1:5061 486") // an immediate final needs no 100

	r.advance(500 * time.Millisecond) // Timer G retransmits the 486
	r.expect("127.0.0.1:5061 486")
	m := r.s.Messages()
	assert.Equal(t, [6]uint64{0, 0, 0, 2, 0, 0}, m.ResponsesOut)
	assert.Len(t, evs, 3)
}

func TestMessageClassification(t *testing.T) {
	for _, tc := range []struct {
		in     string
		class  int
		method string
	}{
		{"SIP/2.0 180 Ringing\r\n", 1, ""},
		{"SIP/2.0 699 X\r\n", 6, ""},
		{"SIP/2.0 099 X\r\n", 0, "other"},
		{"SIP/2.0 7", 0, "other"},
		{"INVITE sip:a SIP/2.0", 0, "INVITE"},
		{"REFER sip:a SIP/2.0", 0, "REFER"},
		{"FOO sip:a SIP/2.0", 0, "other"},
		{"INVITEX", 0, "other"},
		{"", 0, "other"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			assert.Equal(t, tc.class, statusClass([]byte(tc.in)))
			if tc.class == 0 {
				assert.Equal(t, tc.method, methodNames[methodIndex([]byte(tc.in))])
			}
		})
	}
}

// Context.Transport returns what the user registered, not tm's wrapper.
func TestContextTransportIsTheRegisteredOne(t *testing.T) {
	var got Transport
	r := newRig(t, Config{}, Routes{Request: func(c *Context) { got = c.Transport(); _ = c.Reply(200, "") }})
	r.recv(uacAddr, request("OPTIONS", "sip:bob@127.0.0.1", "cap-3", "z9hG4bK-cap3", 1, ""))
	r.expect("127.0.0.1:5061 200")
	assert.Same(t, r.tp, got)
}

// A transport of a non-comparable type cannot be matched on receive; it
// still works, and tm does not panic comparing it.
type valueTP struct {
	f     *fakeTP
	_tags []string // makes the type non-comparable
}

func (v valueTP) Send(l *reactor.Loop, b []byte, to netip.AddrPort) error { return v.f.Send(l, b, to) }
func (v valueTP) Protocol() string                                        { return "UDP" }
func (v valueTP) Advertised() (string, int)                               { return "127.0.0.1", 5060 }
func (v valueTP) LocalAddr() netip.AddrPort                               { return proxyAddr }

func TestNonComparableTransport(t *testing.T) {
	r := newRig(t, Config{}, Routes{Request: func(c *Context) { _ = c.Reply(200, "") }})
	vt := valueTP{f: r.tp, _tags: []string{"x"}}
	r.s.AddTransport(vt)
	r.s.Receive(r.g.Loop(0), []byte(request("OPTIONS", "sip:bob@127.0.0.1", "cap-4", "z9hG4bK-cap4", 1, "")), uacAddr, vt)
	r.run()
	r.expect("127.0.0.1:5061 200")
}

// recObserver records async observer events.
type recObserver struct {
	started  []string
	finished []string
	errs     []error
}

func (o *recObserver) OpStarted(name string) { o.started = append(o.started, name) }
func (o *recObserver) OpFinished(name string, _ time.Duration, err error) {
	o.finished = append(o.finished, name)
	o.errs = append(o.errs, err)
}

func TestContextObserverSeesAwaits(t *testing.T) {
	obs := &recObserver{}
	r := newRig(t, Config{Observer: obs}, Routes{Request: func(c *Context) {
		async.Await(c, async.Sleep(time.Second), func(struct{}, error) {
			async.Await(c, async.Sleep(time.Hour), func(_ struct{}, err error) {
				_ = c.Reply(504, "")
			}, async.Name("db.query"), async.Timeout(2*time.Second))
		}, async.Name("util.sleep"))
	}})
	r.recv(uacAddr, request("OPTIONS", "sip:bob@127.0.0.1", "obs-1", "z9hG4bK-obs1", 1, ""))
	r.advance(time.Second)
	r.advance(2 * time.Second)
	r.expect("127.0.0.1:5061 504")
	assert.Equal(t, []string{"util.sleep", "db.query"}, obs.started)
	assert.Equal(t, []string{"util.sleep", "db.query"}, obs.finished)
	assert.NoError(t, obs.errs[0])
	assert.ErrorIs(t, obs.errs[1], async.ErrTimeout)
}

func TestContextObserverNilByDefault(t *testing.T) {
	var obs async.Observer = &recObserver{}
	r := newRig(t, Config{}, Routes{Request: func(c *Context) { obs = c.Observer(); _ = c.Reply(200, "") }})
	r.recv(uacAddr, request("OPTIONS", "sip:bob@127.0.0.1", "obs-2", "z9hG4bK-obs2", 1, ""))
	assert.Nil(t, obs)
}

func TestLoggerCarriesMessageAndTransaction(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&buf, nil))
	r := newRig(t, Config{Logger: log}, Routes{Request: func(c *Context) {
		c.Logger().Info("routing")
		_ = c.Reply(200, "")
	}})
	r.recv(uacAddr, request("OPTIONS", "sip:bob@127.0.0.1", "log-1", "z9hG4bK-log1", 7, ""))
	var rec map[string]any
	require.NoError(t, json.Unmarshal(buf.Bytes(), &rec), buf.String())
	assert.Equal(t, "routing", rec["msg"])
	assert.Equal(t, "log-1", rec["call_id"])
	assert.Equal(t, "7 OPTIONS", rec["cseq"])
	assert.EqualValues(t, 0, rec["loop"])
	assert.Equal(t, "z9hG4bK-log1|127.0.0.1:5061|OPTIONS", rec["tx"])
}

func TestTablesMatchCounters(t *testing.T) {
	r := newRig(t, Config{}, Routes{Request: relayAll})
	r.recv(uacAddr, invite("tab-1", "z9hG4bK-tab1"))
	out := r.expect("127.0.0.1:5061 100", "127.0.0.1:5062 INVITE")
	srv, cli := r.s.Tables(r.g.Loop(0))
	assert.Equal(t, 1, srv)
	assert.Equal(t, 1, cli)
	st := r.s.Stats()
	assert.EqualValues(t, srv, st.ServerTxCreated-st.ServerTxDone)
	r.recv(uasAddr, respond(out[1].msg, 486, "b1").String())
	r.advance(64 * 500 * time.Millisecond) // Timers D and H: every transaction ends
	srv, cli = r.s.Tables(r.g.Loop(0))
	st = r.s.Stats()
	assert.Equal(t, 0, srv+cli)
	assert.Equal(t, st.ServerTxCreated, st.ServerTxDone)
	assert.Equal(t, st.ClientTxCreated, st.ClientTxDone)

	other := reactor.NewManual(reactor.NewFakeClock(time.Unix(0, 0)))
	srv, cli = r.s.Tables(other)
	assert.Equal(t, 0, srv+cli, "a loop of another server")
}

// BenchmarkReceiveObserved is tm's whole receive path for an OPTIONS
// answered 200 (parse, transaction, route, response), with the wire
// counters only and with a capture hook that copies each message: the
// difference is what observation costs per message.
func BenchmarkReceiveObserved(b *testing.B) {
	for _, tc := range []struct {
		name    string
		capture func(CaptureEvent)
		conn    bool // received on a transport never added (a connection's own)
	}{
		{"counters", nil, false},
		{"counters+capture", func(ev CaptureEvent) { sinkBytes = append(sinkBytes[:0], ev.Data...) }, false},
		{"counters/conn", nil, true},
	} {
		b.Run(tc.name, func(b *testing.B) {
			clk := reactor.NewFakeClock(time.Unix(1_700_000_000, 0))
			g := reactor.NewManualGroup(1, clk)
			s := NewServer(g.Loops(), Config{Capture: tc.capture}, Routes{Request: func(c *Context) { _ = c.Reply(200, "") }})
			tp := &countTP{}
			s.AddTransport(tp)
			in := tp
			if tc.conn {
				in = &countTP{}
			}
			l := g.Loop(0)
			msgs := make([][]byte, 1024)
			for i := range msgs {
				msgs[i] = []byte(request("OPTIONS", "sip:bob@127.0.0.1", fmt.Sprintf("bench-%d", i), fmt.Sprintf("z9hG4bK-b%d", i), 1, ""))
			}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				s.Receive(l, msgs[i%len(msgs)], uacAddr, in)
				i++
				if i%len(msgs) == 0 {
					l.Advance(64 * 500 * time.Millisecond) // Timer J ends the batch's transactions
				}
			}
		})
	}
}

var sinkBytes []byte

// countTP counts what it would send.
type countTP struct{ n int }

func (c *countTP) Send(*reactor.Loop, []byte, netip.AddrPort) error { c.n++; return nil }
func (c *countTP) Protocol() string                                 { return "UDP" }
func (c *countTP) Advertised() (string, int)                        { return "127.0.0.1", 5060 }
func (c *countTP) LocalAddr() netip.AddrPort                        { return proxyAddr }

// BenchmarkWireCount is what every message pays for the counters: classify
// the start line and one atomic add on the loop's own counters.
func BenchmarkWireCount(b *testing.B) {
	var o observe
	o.init(1, nil)
	l := reactor.NewManual(reactor.NewFakeClock(time.Unix(0, 0)))
	msgs := [][]byte{[]byte(invite("c", "z9hG4bK-1")), []byte("SIP/2.0 180 Ringing\r\n"), []byte("SUBSCRIBE sip:a SIP/2.0\r\n")}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		o.count(l, i&1, msgs[i%3])
		i++
	}
}
