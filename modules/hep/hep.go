package hep

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"

	"github.com/asyncsip/asyncsip/tm"
)

// Config configures an Exporter.
type Config struct {
	// Collector is the UDP address of the HEP collector ("127.0.0.1:9060",
	// heplify-server's default port). Required.
	Collector string
	// AgentID identifies this node in the collector (Homer's "capture
	// ID"); default 2001, a common convention.
	AgentID uint32
	// Password is sent in the authentication chunk; empty leaves it out.
	Password string
	// Queue bounds the packets waiting for the sender (default 4096).
	// Beyond it captures are dropped and counted: capture never slows the
	// loops down.
	Queue int
	// NoCorrelation leaves out the correlation chunk (the Call-ID, which
	// collectors use to group a call's messages).
	NoCorrelation bool
	// Logger receives send errors, rate-limited to the first of each run
	// of failures (default slog.Default()).
	Logger *slog.Logger
}

// ErrNoCollector is returned by New without Config.Collector.
var ErrNoCollector = errors.New("hep: no collector address")

// Stats are the exporter's counters.
type Stats struct {
	Sent       uint64 // packets written to the collector
	Dropped    uint64 // captures dropped: queue full or exporter closed
	TooLarge   uint64 // captures too large for a HEP packet
	SendErrors uint64 // packets the socket refused
}

// Exporter sends captured SIP messages to a HEP collector (Homer) over UDP.
// Its Capture method is a tm capture hook (tm.Config.Capture,
// asyncsip.Config.Capture): it encodes the packet on the loop into a pooled
// buffer and queues it without blocking; one goroutine writes the queue to
// the socket.
type Exporter struct {
	cfg  Config
	log  *slog.Logger
	conn *net.UDPConn
	q    chan *[]byte
	bufs sync.Pool
	done chan struct{}
	wg   sync.WaitGroup

	closed                            atomic.Bool
	closeOnce                         sync.Once
	sent, dropped, tooLarge, sendErrs atomic.Uint64
	failing                           atomic.Bool
}

// New connects a UDP socket to the collector and starts the sender.
func New(cfg Config) (*Exporter, error) {
	if cfg.Collector == "" {
		return nil, ErrNoCollector
	}
	if cfg.AgentID == 0 {
		cfg.AgentID = 2001
	}
	if cfg.Queue <= 0 {
		cfg.Queue = 4096
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	ra, err := net.ResolveUDPAddr("udp", cfg.Collector)
	if err != nil {
		return nil, fmt.Errorf("hep: collector %q: %w", cfg.Collector, err)
	}
	conn, err := net.DialUDP("udp", nil, ra)
	if err != nil {
		return nil, fmt.Errorf("hep: collector %q: %w", cfg.Collector, err)
	}
	x := &Exporter{
		cfg: cfg, log: cfg.Logger, conn: conn,
		q: make(chan *[]byte, cfg.Queue), done: make(chan struct{}),
	}
	x.bufs.New = func() any { b := make([]byte, 0, 2048); return &b }
	x.wg.Add(1)
	go x.send()
	return x, nil
}

// Capture encodes ev as a HEPv3 packet and queues it for the collector. It
// never blocks: when the queue is full the packet is dropped and counted.
// It copies what it needs of ev.Data before returning.
func (x *Exporter) Capture(ev tm.CaptureEvent) {
	if x.closed.Load() {
		x.dropped.Add(1)
		return
	}
	p := Packet{
		Time: ev.Time, Proto: ProtoUDP, Type: TypeSIP, AgentID: x.cfg.AgentID,
		AuthKey: x.cfg.Password, Payload: ev.Data,
	}
	if ev.Protocol != "UDP" {
		p.Proto = ProtoTCP // TCP, TLS and WS all run over TCP
	}
	if ev.Dir == tm.CaptureIn {
		p.Src, p.Dst = ev.Remote, ev.Local
	} else {
		p.Src, p.Dst = ev.Local, ev.Remote
	}
	if !x.cfg.NoCorrelation {
		p.CorrelationID = callID(ev.Data)
	}
	bp := x.bufs.Get().(*[]byte)
	b, err := Encode((*bp)[:0], &p)
	if err != nil {
		x.bufs.Put(bp)
		x.tooLarge.Add(1)
		return
	}
	*bp = b
	select {
	case x.q <- bp:
	default:
		x.bufs.Put(bp)
		x.dropped.Add(1)
	}
}

// send writes queued packets until Close, then flushes what is queued.
func (x *Exporter) send() {
	defer x.wg.Done()
	for {
		select {
		case bp := <-x.q:
			x.write(bp)
		case <-x.done:
			for {
				select {
				case bp := <-x.q:
					x.write(bp)
				default:
					return
				}
			}
		}
	}
}

func (x *Exporter) write(bp *[]byte) {
	_, err := x.conn.Write(*bp)
	x.bufs.Put(bp)
	if err != nil {
		x.sendErrs.Add(1)
		if x.failing.CompareAndSwap(false, true) {
			x.log.Warn("hep: cannot send to collector", "collector", x.cfg.Collector, "err", err)
		}
		return
	}
	x.failing.Store(false)
	x.sent.Add(1)
}

// Stats returns the exporter's counters.
func (x *Exporter) Stats() Stats {
	return Stats{Sent: x.sent.Load(), Dropped: x.dropped.Load(), TooLarge: x.tooLarge.Load(), SendErrors: x.sendErrs.Load()}
}

// Close sends what is queued, stops the sender and closes the socket.
// Captures after Close are dropped and counted. Close is idempotent.
func (x *Exporter) Close() error {
	var err error
	x.closeOnce.Do(func() {
		x.closed.Store(true)
		close(x.done)
		x.wg.Wait()
		err = x.conn.Close()
	})
	return err
}

// callID returns the Call-ID header value of a SIP message (long or
// compact form), or "" — without parsing the message.
func callID(msg []byte) string {
	for len(msg) > 0 {
		i := bytes.Index(msg, []byte("\r\n"))
		if i <= 0 {
			return "" // end of headers (or no CRLF)
		}
		line := msg[:i]
		msg = msg[i+2:]
		c := bytes.IndexByte(line, ':')
		if c < 0 {
			continue
		}
		name := bytes.TrimSpace(line[:c])
		if bytes.EqualFold(name, []byte("Call-ID")) || bytes.EqualFold(name, []byte("i")) {
			return string(bytes.TrimSpace(line[c+1:]))
		}
	}
	return ""
}
