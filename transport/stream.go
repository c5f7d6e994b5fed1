package transport

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"

	"github.com/asyncsip/asyncsip/reactor"
)

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
