package hep

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/asyncsip/asyncsip/internal/testenv"
	"github.com/asyncsip/asyncsip/tm"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// decoded is a HEPv3 packet as read by decode, written from the
// specification independently of Encode.
type decoded struct {
	family, proto, typ uint8
	src, dst           netip.AddrPort
	sec, usec, agent   uint32
	auth, corr         string
	payload            []byte
	types              []uint16 // chunk types in order
}

// decode parses a HEPv3 packet strictly: magic, total length equal to the
// datagram, generic vendor only, every chunk within bounds and of the size
// its type requires.
func decode(b []byte) (decoded, error) {
	var d decoded
	if len(b) < 6 || string(b[:4]) != "HEP3" {
		return d, errors.New("no HEP3 magic")
	}
	if n := int(binary.BigEndian.Uint16(b[4:6])); n != len(b) {
		return d, fmt.Errorf("total length %d, datagram %d", n, len(b))
	}
	var srcIP, dstIP netip.Addr
	var sport, dport uint16
	want := map[uint16]int{1: 1, 2: 1, 3: 4, 4: 4, 5: 16, 6: 16, 7: 2, 8: 2, 9: 4, 10: 4, 11: 1, 12: 4}
	for rest := b[6:]; len(rest) > 0; {
		if len(rest) < 6 {
			return d, errors.New("truncated chunk header")
		}
		vendor, typ := binary.BigEndian.Uint16(rest), binary.BigEndian.Uint16(rest[2:])
		n := int(binary.BigEndian.Uint16(rest[4:]))
		if vendor != 0 {
			return d, fmt.Errorf("vendor %d", vendor)
		}
		if n < 6 || n > len(rest) {
			return d, fmt.Errorf("chunk %d: length %d out of bounds", typ, n)
		}
		v := rest[6:n]
		rest = rest[n:]
		if w, ok := want[typ]; ok && len(v) != w {
			return d, fmt.Errorf("chunk %d: %d bytes, want %d", typ, len(v), w)
		}
		d.types = append(d.types, typ)
		switch typ {
		case 1:
			d.family = v[0]
		case 2:
			d.proto = v[0]
		case 3, 5:
			srcIP, _ = netip.AddrFromSlice(v)
		case 4, 6:
			dstIP, _ = netip.AddrFromSlice(v)
		case 7:
			sport = binary.BigEndian.Uint16(v)
		case 8:
			dport = binary.BigEndian.Uint16(v)
		case 9:
			d.sec = binary.BigEndian.Uint32(v)
		case 10:
			d.usec = binary.BigEndian.Uint32(v)
		case 11:
			d.typ = v[0]
		case 12:
			d.agent = binary.BigEndian.Uint32(v)
		case 14:
			d.auth = string(v)
		case 15:
			d.payload = append([]byte(nil), v...)
		case 17:
			d.corr = string(v)
		default:
			return d, fmt.Errorf("unexpected chunk %d", typ)
		}
	}
	d.src, d.dst = netip.AddrPortFrom(srcIP, sport), netip.AddrPortFrom(dstIP, dport)
	return d, nil
}

func TestEncodeDecode(t *testing.T) {
	at := time.Unix(1_700_000_000, 123_456_789)
	for _, tc := range []struct {
		name     string
		src, dst string
		family   uint8
		wantSrc  string
		auth     string
		corr     string
	}{
		{"ipv4", "127.0.0.1:5061", "127.0.0.1:5060", FamilyIPv4, "127.0.0.1:5061", "", ""},
		{"ipv6", "[::1]:5061", "[::1]:5060", FamilyIPv6, "[::1]:5061", "secret", "abc@host"},
		{"v4-mapped is v4", "[::ffff:10.0.0.1]:5061", "10.0.0.2:5060", FamilyIPv4, "10.0.0.1:5061", "", ""},
		{"mixed families go as v6", "10.0.0.1:5061", "[2001:db8::1]:5060", FamilyIPv6, "[::ffff:10.0.0.1]:5061", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := Packet{
				Src: netip.MustParseAddrPort(tc.src), Dst: netip.MustParseAddrPort(tc.dst),
				Time: at, Proto: ProtoUDP, Type: TypeSIP, AgentID: 77, AuthKey: tc.auth,
				CorrelationID: tc.corr, Payload: []byte("OPTIONS sip:a SIP/2.0\r\n\r\n"),
			}
			b, err := Encode([]byte("keep"), &p)
			require.NoError(t, err)
			assert.Equal(t, "keep", string(b[:4]), "Encode appends")
			require.Len(t, b[4:], p.Size())
			d, err := decode(b[4:])
			require.NoError(t, err)
			assert.Equal(t, tc.family, d.family)
			assert.EqualValues(t, ProtoUDP, d.proto)
			assert.EqualValues(t, TypeSIP, d.typ)
			assert.Equal(t, tc.wantSrc, d.src.String())
			assert.Equal(t, p.Dst.Port(), d.dst.Port())
			assert.EqualValues(t, 1_700_000_000, d.sec)
			assert.EqualValues(t, 123_456, d.usec)
			assert.EqualValues(t, 77, d.agent)
			assert.Equal(t, tc.auth, d.auth)
			assert.Equal(t, tc.corr, d.corr)
			assert.Equal(t, p.Payload, d.payload)
		})
	}
}

func TestEncodeErrors(t *testing.T) {
	p := Packet{Src: netip.MustParseAddrPort("127.0.0.1:1"), Dst: netip.MustParseAddrPort("127.0.0.1:2"),
		Payload: make([]byte, MaxPacket-60)}
	_, err := Encode(nil, &p)
	require.ErrorIs(t, err, ErrTooLarge)
	p.Payload = make([]byte, MaxPacket-p.Size()+len(p.Payload)) // exactly the limit
	b, err := Encode(nil, &p)
	require.NoError(t, err)
	assert.Len(t, b, MaxPacket)
	_, err = Encode(nil, &Packet{Dst: p.Dst})
	require.ErrorIs(t, err, ErrFamily)
}

func FuzzEncodeDecode(f *testing.F) {
	f.Add([]byte("INVITE sip:a SIP/2.0\r\nCall-ID: x\r\n\r\n"), []byte{127, 0, 0, 1}, uint16(5060), "pw")
	f.Add([]byte{}, []byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}, uint16(0), "")
	f.Fuzz(func(t *testing.T, payload, ip []byte, port uint16, auth string) {
		a, ok := netip.AddrFromSlice(ip)
		if !ok {
			return
		}
		p := Packet{Src: netip.AddrPortFrom(a, port), Dst: netip.AddrPortFrom(a, ^port),
			Time: time.Unix(int64(port)*1000, 0), AuthKey: auth, Payload: payload}
		b, err := Encode(nil, &p)
		if err != nil {
			require.ErrorIs(t, err, ErrTooLarge)
			return
		}
		d, err := decode(b)
		require.NoError(t, err)
		require.Equal(t, payload, append([]byte{}, d.payload...))
		require.Equal(t, p.Src.Addr().Unmap(), d.src.Addr().Unmap())
	})
}

func TestCallID(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"INVITE sip:a@b SIP/2.0\r\nVia: x\r\nCall-ID: abc@h\r\n\r\n", "abc@h"},
		{"SIP/2.0 200 OK\r\ni:  compact \r\n\r\n", "compact"},
		{"SIP/2.0 200 OK\r\ncall-id:lower\r\n\r\n", "lower"},
		{"INVITE sip:a@b SIP/2.0\r\n\r\nCall-ID: in-body\r\n", ""},
		{"garbage", ""},
		{"", ""},
	} {
		assert.Equal(t, tc.want, callID([]byte(tc.in)), "%q", tc.in)
	}
}

// listenCollector opens a UDP socket standing for Homer.
func listenCollector(t *testing.T) (*net.UDPConn, string) {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	return c, c.LocalAddr().String()
}

func readPacket(t *testing.T, c *net.UDPConn) decoded {
	t.Helper()
	buf := make([]byte, MaxPacket)
	require.NoError(t, c.SetReadDeadline(time.Now().Add(5*time.Second)))
	n, err := c.Read(buf)
	require.NoError(t, err)
	d, err := decode(buf[:n])
	require.NoError(t, err)
	return d
}

func TestExporterSendsCaptures(t *testing.T) {
	fds := testenv.CountFDs()
	coll, addr := listenCollector(t)
	x, err := New(Config{Collector: addr, AgentID: 9, Password: "homer", Logger: quiet})
	require.NoError(t, err)

	local, remote := netip.MustParseAddrPort("127.0.0.1:5060"), netip.MustParseAddrPort("127.0.0.1:5061")
	msg := []byte("INVITE sip:bob@127.0.0.1 SIP/2.0\r\nCall-ID: hep-1\r\n\r\n")
	at := time.Unix(1_700_000_001, 5_000)
	x.Capture(tm.CaptureEvent{Dir: tm.CaptureIn, Local: local, Remote: remote, Time: at, Protocol: "UDP", Data: msg})
	copy(msg, "XXXXXX") // the hook's caller reuses its buffer: the packet is already encoded
	x.Capture(tm.CaptureEvent{Dir: tm.CaptureOut, Local: local, Remote: remote, Time: at, Protocol: "TLS",
		Data: []byte("SIP/2.0 100 Trying\r\nCall-ID: hep-1\r\n\r\n")})

	in := readPacket(t, coll)
	assert.Equal(t, remote, in.src, "received: from the remote")
	assert.Equal(t, local, in.dst)
	assert.True(t, strings.HasPrefix(string(in.payload), "INVITE sip:bob"), string(in.payload))
	assert.EqualValues(t, ProtoUDP, in.proto)
	assert.EqualValues(t, 9, in.agent)
	assert.Equal(t, "homer", in.auth)
	assert.Equal(t, "hep-1", in.corr)
	assert.EqualValues(t, 1_700_000_001, in.sec)
	assert.EqualValues(t, 5, in.usec)

	out := readPacket(t, coll)
	assert.Equal(t, local, out.src, "sent: from us")
	assert.Equal(t, remote, out.dst)
	assert.EqualValues(t, ProtoTCP, out.proto)
	assert.Equal(t, "SIP/2.0 100 Trying\r\nCall-ID: hep-1\r\n\r\n", string(out.payload))

	require.NoError(t, x.Close())
	require.NoError(t, x.Close(), "Close is idempotent")
	x.Capture(tm.CaptureEvent{Dir: tm.CaptureIn, Local: local, Remote: remote, Time: at, Data: msg})
	assert.Equal(t, Stats{Sent: 2, Dropped: 1}, x.Stats())
	coll.Close()
	assert.LessOrEqual(t, testenv.CountFDs(), fds)
}

// A full queue drops instead of blocking the loop.
func TestQueueFullDrops(t *testing.T) {
	x := &Exporter{cfg: Config{AgentID: 1}, q: make(chan *[]byte, 1)} // no sender: nothing drains
	x.bufs.New = func() any { b := make([]byte, 0, 64); return &b }
	ev := tm.CaptureEvent{Dir: tm.CaptureIn, Local: netip.MustParseAddrPort("127.0.0.1:1"),
		Remote: netip.MustParseAddrPort("127.0.0.1:2"), Protocol: "UDP", Data: []byte("x")}
	x.Capture(ev)
	x.Capture(ev)
	x.Capture(tm.CaptureEvent{Dir: tm.CaptureIn, Data: []byte("no addresses")})
	assert.Equal(t, Stats{Dropped: 1, TooLarge: 1}, x.Stats())
	assert.Len(t, x.q, 1)
}

func TestSendErrorsCounted(t *testing.T) {
	port := testenv.FreeUDPPort(t) // nobody listens: ICMP port unreachable
	x, err := New(Config{Collector: fmt.Sprintf("127.0.0.1:%d", port), Logger: quiet})
	require.NoError(t, err)
	defer x.Close()
	ev := tm.CaptureEvent{Dir: tm.CaptureOut, Local: netip.MustParseAddrPort("127.0.0.1:1"),
		Remote: netip.MustParseAddrPort("127.0.0.1:2"), Protocol: "UDP", Data: []byte("x")}
	deadline := time.Now().Add(5 * time.Second)
	for x.Stats().SendErrors == 0 {
		require.True(t, time.Now().Before(deadline), "no send error reported: %+v", x.Stats())
		x.Capture(ev)
		time.Sleep(5 * time.Millisecond)
	}
}

func TestNewErrors(t *testing.T) {
	_, err := New(Config{})
	require.ErrorIs(t, err, ErrNoCollector)
	_, err = New(Config{Collector: "127.0.0.1:notaport"})
	require.ErrorContains(t, err, "hep: collector")
}

func TestCollectorMetric(t *testing.T) {
	x := &Exporter{}
	x.sent.Store(3)
	x.dropped.Store(2)
	reg := prometheus.NewRegistry()
	reg.MustRegister(x.Collector())
	fams, err := reg.Gather()
	require.NoError(t, err)
	got := map[string]float64{}
	for _, f := range fams {
		for _, m := range f.GetMetric() {
			key := f.GetName()
			for _, l := range m.GetLabel() {
				key += "/" + l.GetValue()
			}
			got[key] = metricValue(m)
		}
	}
	assert.Equal(t, map[string]float64{
		"asyncsip_hep_packets_sent_total": 3, "asyncsip_hep_packets_dropped_total/queue_full": 2,
		"asyncsip_hep_packets_dropped_total/too_large": 0, "asyncsip_hep_packets_dropped_total/send_error": 0,
	}, got)
}

func metricValue(m *dto.Metric) float64 { return m.GetCounter().GetValue() }

// BenchmarkCapture is the cost a capture adds to the loop: encode into a
// pooled buffer and queue (a collector socket drains the queue).
func BenchmarkCapture(b *testing.B) {
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(b, err)
	defer c.Close()
	x, err := New(Config{Collector: c.LocalAddr().String(), Queue: 1 << 16, Logger: quiet})
	require.NoError(b, err)
	defer x.Close()
	msg := []byte(strings.Repeat("X-Pad: 0123456789\r\n", 40))
	msg = append([]byte("INVITE sip:bob@127.0.0.1 SIP/2.0\r\nCall-ID: bench@host\r\n"), msg...)
	ev := tm.CaptureEvent{Dir: tm.CaptureIn, Local: netip.MustParseAddrPort("127.0.0.1:5060"),
		Remote: netip.MustParseAddrPort("127.0.0.1:5061"), Time: time.Now(), Protocol: "UDP", Data: msg}
	b.ReportAllocs()
	b.SetBytes(int64(len(msg)))
	for b.Loop() {
		x.Capture(ev)
	}
}
