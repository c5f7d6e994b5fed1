package transport

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
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

// Stream is one TCP, TLS, WS or WSS listener and the connections of its
// kind, keyed by remote address. It implements tm.Transport and
// tm.ConnTracker.
type Stream struct {
	h     *Hub
	proto string // Via token: TCP, TLS, WS, WSS
	ln    net.Listener
	local netip.AddrPort
	host  string
	port  int
	mu    sync.Mutex
	conns map[netip.AddrPort]*conn
}

// Listen opens a listener of proto ("TCP", "TLS", "WS" or "WSS") on addr
// ("host:port"); adv is what it advertises in Via and Record-Route (see
// Advertised). It accepts connections once Serve is called, until Close.
func (h *Hub) Listen(proto, addr, adv string) (*Stream, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	ap, err := netip.ParseAddrPort(ln.Addr().String())
	if err != nil {
		_ = ln.Close()
		return nil, err
	}
	if proto == "TLS" || proto == "WSS" {
		if _, err := h.tlsConfigs(true); err != nil {
			_ = ln.Close()
			return nil, err
		}
	}
	t := &Stream{h: h, proto: proto, ln: ln, local: ap, conns: make(map[netip.AddrPort]*conn)}
	t.host, t.port = Advertised(ap, adv)
	h.mu.Lock()
	h.streams = append(h.streams, t)
	h.mu.Unlock()
	return t, nil
}

// Serve runs the accept loop in a goroutine.
func (t *Stream) Serve() {
	t.h.wg.Add(1)
	go func() {
		defer t.h.wg.Done()
		for {
			nc, err := t.ln.Accept()
			if err != nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					continue
				}
				return // listener closed
			}
			t.accepted(nc)
		}
	}()
}

func (t *Stream) accepted(nc net.Conn) {
	ra, err := netip.ParseAddrPort(nc.RemoteAddr().String())
	if err != nil {
		_ = nc.Close()
		return
	}
	c := t.newConn(netip.AddrPortFrom(ra.Addr().Unmap(), ra.Port()))
	if err := t.h.admit(c, true); err != nil {
		t.h.st.rejected.Add(1)
		_ = nc.Close()
		return
	}
	t.h.st.accepted.Add(1)
	if t.proto == "TLS" || t.proto == "WSS" {
		cfg, _ := t.h.tlsConfigs(true) // loaded by listen
		nc = tls.Server(nc, cfg)
	}
	c.nc = nc
	c.start(true) // registered once its handshakes are done
}

func (t *Stream) newConn(remote netip.AddrPort) *conn {
	h := t.h
	id := h.nextID.Add(1)
	c := &conn{
		t: t, id: id, remote: remote,
		loop: h.group.Loop(int(id % uint64(h.group.Len()))),
		done: make(chan struct{}),
		sem:  make(chan struct{}, inflight),
		ws:   t.proto == "WS" || t.proto == "WSS",
	}
	c.ct = &connTransport{c: c}
	c.handleNext = c.handleNextMsg
	return c
}

// register makes c the connection used for sends to its remote address.
func (t *Stream) register(c *conn) {
	t.mu.Lock()
	t.conns[c.remote] = c
	t.mu.Unlock()
}

func (t *Stream) unregister(c *conn) {
	t.mu.Lock()
	if t.conns[c.remote] == c {
		delete(t.conns, c.remote)
	}
	t.mu.Unlock()
}

// Send writes b to `to` on the connection to it, opening one (TCP, TLS)
// when there is none: the message waits in the connection's queue while
// the connect runs in a goroutine. It never blocks.
func (t *Stream) Send(_ *reactor.Loop, b []byte, to netip.AddrPort) error {
	to = netip.AddrPortFrom(to.Addr().Unmap(), to.Port())
	fresh, err := t.send(b, to)
	if errors.Is(err, ErrConnClosed) && !fresh && !t.h.isClosed() {
		// An established connection closed under us (peer hang-up): it
		// is unregistered by now, so this opens a new one. A connection
		// opened by this very send that closed already failed to connect:
		// dialing again at once would only fail again.
		t.unregisterAddr(to)
		_, err = t.send(b, to)
	}
	return err
}

// send queues b on the connection to `to`, opening one if needed; fresh
// reports that it was opened by this call.
func (t *Stream) send(b []byte, to netip.AddrPort) (fresh bool, err error) {
	t.mu.Lock()
	c := t.conns[to]
	if c == nil {
		if t.proto == "WS" || t.proto == "WSS" {
			t.mu.Unlock()
			return false, fmt.Errorf("%w: %s over %s", ErrNoConn, to, t.proto)
		}
		c = t.newConn(to)
		if err := t.h.admit(c, false); err != nil {
			t.mu.Unlock()
			return true, err
		}
		t.conns[to] = c
		t.mu.Unlock()
		t.dial(c)
		fresh = true
	} else {
		t.mu.Unlock()
	}
	return fresh, c.enqueue(b)
}

// dial connects c in a goroutine, then runs it.
func (t *Stream) dial(c *conn) {
	h := t.h
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		ctx, cancel := context.WithTimeout(h.ctx, h.cfg.DialTimeout)
		defer cancel()
		var d net.Dialer
		nc, err := d.DialContext(ctx, "tcp", c.remote.String())
		if err == nil && t.proto == "TLS" {
			var cfg *tls.Config
			if cfg, err = h.tlsConfigs(false); err == nil {
				cfg = cfg.Clone()
				cfg.ServerName = c.remote.Addr().String()
				tc := tls.Client(nc, cfg)
				err = tc.HandshakeContext(ctx)
				nc = tc
			}
			if err != nil {
				_ = nc.Close()
			}
		}
		if err != nil {
			h.st.dialFail.Add(1)
			h.log.Debug("transport: connect failed", "to", c.remote, "transport", t.proto, "err", err)
			c.close()
			h.core.ConnectionFailed(t, c.remote) // its branches fail now, not at Timer B
			return
		}
		h.st.dialed.Add(1)
		c.mu.Lock()
		closed := c.isClosed()
		if !closed {
			c.nc = nc
		}
		c.mu.Unlock()
		if closed {
			_ = nc.Close()
			return
		}
		c.start(false) // writes what waited for the connect
	}()
}

// unregisterAddr forgets a closed connection to addr.
func (t *Stream) unregisterAddr(addr netip.AddrPort) {
	t.mu.Lock()
	if c := t.conns[addr]; c != nil && c.isClosed() {
		delete(t.conns, addr)
	}
	t.mu.Unlock()
}

func (h *Hub) isClosed() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.closed
}

// HasConn reports whether a connection to addr is open or opening.
func (t *Stream) HasConn(addr netip.AddrPort) bool {
	addr = netip.AddrPortFrom(addr.Addr().Unmap(), addr.Port())
	t.mu.Lock()
	_, ok := t.conns[addr]
	t.mu.Unlock()
	return ok
}

// Protocol returns the Via transport token.
func (t *Stream) Protocol() string { return t.proto }

// Advertised returns the host and port put in Via and Record-Route.
func (t *Stream) Advertised() (string, int) { return t.host, t.port }

// LocalAddr returns the listening address.
func (t *Stream) LocalAddr() netip.AddrPort { return t.local }

// connTransport is the tm.Transport of one connection: what tm keeps in a
// server transaction received on it, so responses go back on the same
// connection (RFC 3261 §18.2.2). Once the connection is gone it falls back
// to the listener's transport, which connects to the Via address.
type connTransport struct{ c *conn }

func (ct *connTransport) Send(l *reactor.Loop, b []byte, to netip.AddrPort) error {
	if err := ct.c.enqueue(b); !errors.Is(err, ErrConnClosed) {
		return err
	}
	return ct.c.t.Send(l, b, to)
}
func (ct *connTransport) Protocol() string          { return ct.c.t.proto }
func (ct *connTransport) Advertised() (string, int) { return ct.c.t.host, ct.c.t.port }
func (ct *connTransport) LocalAddr() netip.AddrPort { return ct.c.t.local }
