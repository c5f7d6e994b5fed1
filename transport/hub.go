package transport

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asyncsip/asyncsip/reactor"
)

// StreamConfig configures the connection-oriented transports (TCP, TLS,
// WS and WSS listeners and the outbound connections). Zero fields take the
// defaults shown.
type StreamConfig struct {
	// MaxConns bounds the open connections, inbound and outbound (10000).
	MaxConns int
	// MaxConnsPerIP bounds the inbound connections from one source IP (64).
	MaxConnsPerIP int
	// MaxHeader bounds a message's header section, and a WebSocket
	// handshake, in bytes (16384). The whole message is bounded by the
	// maxMsg of NewHub (the facade passes tm's Limits.MaxMessage).
	MaxHeader int
	// IdleTimeout closes a connection on which nothing arrives for that
	// long (3 min); CRLF keep-alives (RFC 5626) count as traffic.
	IdleTimeout time.Duration
	// MessageTimeout bounds the reading of one message once its first byte
	// arrived, and the TLS and WebSocket handshakes (10 s): a peer that
	// sends half a header and stalls is cut off.
	MessageTimeout time.Duration
	// DialTimeout bounds an outbound connect (5 s); WriteTimeout one write
	// (10 s).
	DialTimeout, WriteTimeout time.Duration
	// WriteQueue and WriteQueueBytes bound the messages waiting to be
	// written on one connection (1024 messages, 1 MiB); beyond them sends
	// fail and are counted as drops. The queue takes no memory while
	// empty.
	WriteQueue, WriteQueueBytes int
	// CertFile and KeyFile are the PEM certificate chain and key of tls:
	// and wss: listeners; outbound TLS connections present them to peers
	// that ask for a client certificate.
	CertFile, KeyFile string
	// ClientCAFile, when set, makes tls: and wss: listeners require a
	// client certificate signed by one of its PEM CAs.
	ClientCAFile string
	// RootCAFile holds the PEM CAs that verify the servers this proxy
	// connects to over TLS (default: the system roots). The certificate is
	// checked against the target's IP address.
	RootCAFile string
}

func (c StreamConfig) withDefaults() StreamConfig {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	defD := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&c.MaxConns, 10000)
	def(&c.MaxConnsPerIP, 64)
	def(&c.MaxHeader, 16384)
	def(&c.WriteQueue, 1024)
	def(&c.WriteQueueBytes, 1<<20)
	defD(&c.IdleTimeout, 3*time.Minute)
	defD(&c.MessageTimeout, 10*time.Second)
	defD(&c.DialTimeout, 5*time.Second)
	defD(&c.WriteTimeout, 10*time.Second)
	return c
}

// Errors of the stream transports.
var (
	// ErrQueueFull is returned by a send when the connection's write queue
	// is full (the message is dropped and counted).
	ErrQueueFull = errors.New("transport: connection write queue full")
	// ErrConnClosed is returned by a send on a closed connection.
	ErrConnClosed = errors.New("transport: connection closed")
	// ErrConnLimit is returned when MaxConns connections are open.
	ErrConnLimit = errors.New("transport: connection limit reached")
	// ErrNoConn is returned when a WebSocket peer has no open connection
	// (this proxy does not open WebSocket connections).
	ErrNoConn = errors.New("transport: no connection to peer")
)

// StreamStats counts the connection-oriented transports' events.
type StreamStats struct {
	Open          int64  // connections open now
	Accepted      uint64 // inbound connections accepted
	Rejected      uint64 // inbound connections refused by MaxConns / MaxConnsPerIP
	Dialed        uint64 // outbound connections established
	DialFailures  uint64 // outbound connects that failed or timed out
	Timeouts      uint64 // connections closed by IdleTimeout or MessageTimeout
	FramingErrors uint64 // connections closed for a malformed or oversized message
	QueueDrops    uint64 // messages dropped because a write queue was full
	KeepAlives    uint64 // CRLF pings answered and WebSocket pings ponged
	Received      uint64 // messages handed to the loops
}

// Hub is shared by the stream transports of one server: limits, counters,
// the goroutines' wait group, the listeners. Its methods are safe from any
// goroutine.
type Hub struct {
	cfg     StreamConfig
	maxMsg  int
	group   *reactor.Group
	core    Core
	log     *slog.Logger
	wg      sync.WaitGroup
	mu      sync.Mutex
	perIP   map[netip.Addr]int
	total   int
	closed  bool
	conns   map[*conn]struct{}
	streams []*Stream // listeners, closed by Close
	nextID  atomic.Uint64
	st      streamCounters
	srvTLS  *tls.Config
	cliTLS  *tls.Config
	tlsErr  error
	tlsOnce sync.Once
	ctx     context.Context // ends at close: stops connects in progress
	cancel  context.CancelFunc
}

type streamCounters struct {
	accepted, rejected, dialed, dialFail, timeouts, framing, drops, keepalive, received atomic.Uint64
}

// NewHub creates the shared state of the stream transports that run on g's
// loops and hand what they receive to core. maxMsg bounds a message
// (header and body, or a WebSocket message).
func NewHub(g *reactor.Group, core Core, cfg StreamConfig, maxMsg int, log *slog.Logger) *Hub {
	if log == nil {
		log = slog.Default()
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Hub{
		cfg: cfg.withDefaults(), maxMsg: maxMsg, group: g, core: core, log: log,
		perIP: make(map[netip.Addr]int), conns: make(map[*conn]struct{}),
		ctx: ctx, cancel: cancel,
	}
}

// Stats returns a snapshot of the counters.
func (h *Hub) Stats() StreamStats {
	h.mu.Lock()
	open := int64(h.total)
	h.mu.Unlock()
	return StreamStats{
		Open: open, Accepted: h.st.accepted.Load(), Rejected: h.st.rejected.Load(),
		Dialed: h.st.dialed.Load(), DialFailures: h.st.dialFail.Load(), Timeouts: h.st.timeouts.Load(),
		FramingErrors: h.st.framing.Load(), QueueDrops: h.st.drops.Load(),
		KeepAlives: h.st.keepalive.Load(), Received: h.st.received.Load(),
	}
}

// admit counts a new connection against the limits; inbound ones also
// against the per-IP limit.
func (h *Hub) admit(c *conn, inbound bool) error {
	ip := c.remote.Addr().Unmap()
	h.mu.Lock()
	defer h.mu.Unlock()
	switch {
	case h.closed:
		return ErrConnClosed
	case h.total >= h.cfg.MaxConns:
		return ErrConnLimit
	case inbound && h.perIP[ip] >= h.cfg.MaxConnsPerIP:
		return fmt.Errorf("%w: %d from %s", ErrConnLimit, h.perIP[ip], ip)
	}
	h.total++
	if inbound {
		h.perIP[ip]++
	}
	c.inbound = inbound
	h.conns[c] = struct{}{}
	return nil
}

func (h *Hub) release(c *conn) {
	ip := c.remote.Addr().Unmap()
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.conns[c]; !ok {
		return
	}
	delete(h.conns, c)
	h.total--
	if !c.inbound {
		return
	}
	if h.perIP[ip]--; h.perIP[ip] <= 0 {
		delete(h.perIP, ip)
	}
}

// Close stops every listener and connection and waits for their
// goroutines.
func (h *Hub) Close() {
	h.mu.Lock()
	h.closed = true
	tps := h.streams
	all := make([]*conn, 0, len(h.conns))
	for c := range h.conns {
		all = append(all, c)
	}
	h.mu.Unlock()
	h.cancel()
	for _, t := range tps {
		_ = t.ln.Close()
	}
	for _, c := range all {
		c.close()
	}
	h.wg.Wait()
}

func (h *Hub) isClosed() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.closed
}
