package transport

import (
	"bufio"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asyncsip/asyncsip/reactor"
)

// inflight bounds the messages of one connection posted to its loop and
// not yet processed: beyond it the reader stops reading, so a fast sender
// is slowed by TCP flow control instead of growing the loop's queue.
const inflight = 64

// errFraming is wrapped by every framing error (the connection is closed).
var errFraming = errors.New("transport: framing error")

// conn is one TCP, TLS or WebSocket connection: a reader goroutine that
// frames whole messages and posts them to the connection's loop, and a
// bounded queue filled by the loops that a writer goroutine drains. The
// writer runs only while the queue has something: an idle connection costs
// one goroutine.
type conn struct {
	t          *Stream
	id         uint64
	remote     netip.AddrPort
	loop       *reactor.Loop
	ct         *connTransport
	in         inbox  // messages read, waiting for their task on loop
	handleNext func() // c.handleNextMsg bound once (deliver)
	ws         bool
	inbound    bool // counted against MaxConnsPerIP; set by admit
	mu         sync.Mutex
	nc         net.Conn // set once (before start for inbound, by the dialer for outbound), under mu
	writing    bool     // a writer goroutine runs; under mu
	q          [][]byte // messages waiting for the writer; under mu
	qBytes     int      // their size; under mu
	closing    bool     // close once q is written (WebSocket close); under mu
	done       chan struct{}
	sem        chan struct{}
	once       sync.Once
	closed     atomic.Bool
}

func (c *conn) isClosed() bool { return c.closed.Load() }

// close ends the connection (idempotent): the goroutines exit, queued
// messages are dropped, the limits are released.
func (c *conn) close() {
	c.once.Do(func() {
		c.closed.Store(true)
		close(c.done)
		c.mu.Lock()
		if c.nc != nil {
			_ = c.nc.Close()
		}
		c.mu.Unlock()
		c.t.unregister(c)
		c.t.h.release(c)
	})
}

// start runs the reader, and a writer if messages are already queued.
func (c *conn) start(inbound bool) {
	c.t.h.wg.Add(1)
	go c.readLoop(inbound)
	c.mu.Lock()
	c.kick()
	c.mu.Unlock()
}

// kick starts the writer when something is queued and none runs. c.mu is
// held, so the wait group is added to before a close can complete.
func (c *conn) kick() {
	if c.nc == nil || c.writing || c.isClosed() || (len(c.q) == 0 && !c.closing) {
		return
	}
	c.writing = true
	c.t.h.wg.Add(1)
	go c.writeLoop()
}

// enqueue queues a copy of b (framed for WebSocket) without blocking.
func (c *conn) enqueue(b []byte) error {
	if c.ws {
		return c.enqueueRaw(wsFrame(wsOpFor(b), b))
	}
	return c.enqueueRaw(append([]byte(nil), b...))
}

// enqueueRaw queues bytes written as they are; nil asks the writer to
// close the connection once what is queued before it is written.
func (c *conn) enqueueRaw(b []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.isClosed() || c.closing {
		return ErrConnClosed
	}
	cfg := &c.t.h.cfg
	switch {
	case b == nil:
		c.closing = true
	case len(c.q) >= cfg.WriteQueue || c.qBytes+len(b) > cfg.WriteQueueBytes:
		c.t.h.st.drops.Add(1)
		return ErrQueueFull
	default:
		c.q = append(c.q, b)
		c.qBytes += len(b)
	}
	c.kick()
	return nil
}

// writeLoop takes everything queued at once and writes it in one
// writev, until the queue is empty; then it exits (the next enqueue starts
// another).
func (c *conn) writeLoop() {
	defer c.t.h.wg.Done()
	var spare [][]byte
	for {
		c.mu.Lock()
		batch := c.q
		if len(batch) == 0 {
			closing := c.closing
			c.writing = false
			c.mu.Unlock()
			if closing {
				c.close()
			}
			return
		}
		c.q, c.qBytes = spare[:0], 0
		c.mu.Unlock()
		_ = c.nc.SetWriteDeadline(time.Now().Add(c.t.h.cfg.WriteTimeout))
		bufs := net.Buffers(batch) // WriteTo consumes bufs, not batch
		_, err := bufs.WriteTo(c.nc)
		clear(batch)
		spare = batch[:0]
		if err != nil {
			c.close()
			return
		}
	}
}

// readLoop runs the handshakes, then frames messages until the connection
// ends.
func (c *conn) readLoop(inbound bool) {
	h := c.t.h
	defer h.wg.Done()
	defer c.close()
	br := bufio.NewReaderSize(c.nc, 4096)
	if tc, ok := c.nc.(*tls.Conn); ok && inbound {
		_ = tc.SetDeadline(time.Now().Add(h.cfg.MessageTimeout))
		if err := tc.Handshake(); err != nil {
			c.failed(err)
			return
		}
		_ = tc.SetDeadline(time.Time{})
	}
	if c.ws {
		if err := c.wsHandshake(br); err != nil {
			c.failed(err)
			return
		}
	}
	if inbound {
		c.t.register(c)
	}
	for {
		var msg []byte
		var err error
		if c.ws {
			msg, err = c.readWS(br)
		} else {
			msg, err = c.readSIP(br)
		}
		if err != nil {
			c.failed(err)
			var wc wsCloseError
			if errors.As(err, &wc) {
				c.wsClose(wc.code)
			}
			return
		}
		if !c.deliver(msg) {
			return
		}
	}
}

// failed counts why a connection ended.
func (c *conn) failed(err error) {
	h := c.t.h
	var ne net.Error
	switch {
	case c.isClosed(), errors.Is(err, io.EOF), errors.Is(err, net.ErrClosed):
	case errors.As(err, &ne) && ne.Timeout():
		h.st.timeouts.Add(1)
	case errors.Is(err, errFraming):
		h.st.framing.Add(1)
		h.log.Debug("transport: connection closed", "from", c.remote, "transport", c.t.proto, "err", err)
	}
}

// deliver posts msg to the connection's loop, waiting while too many of
// its messages are pending there. It reports false once the connection
// or the loop is closed. The message waits in c.in and the task posted is
// c.handleNextMsg, bound once: delivering allocates nothing but the message.
func (c *conn) deliver(msg []byte) bool {
	select {
	case c.sem <- struct{}{}:
	case <-c.done:
		return false
	}
	c.t.h.st.received.Add(1)
	c.in.push(msg)
	if err := c.loop.Post(c.handleNext); err != nil {
		c.in.dropLast()
		<-c.sem
		return false
	}
	return true
}

// handleNextMsg hands the oldest delivered message to the core, on c.loop.
// Tasks run in the order posted, one per message, so the messages reach
// the core in the order they were read.
func (c *conn) handleNextMsg() {
	defer func() { <-c.sem }()
	c.t.h.core.Receive(c.loop, c.in.pop(), c.remote, c.ct)
}

// inbox holds a connection's messages between its reader and its loop, in
// order. At most inflight wait (the semaphore bounds it); the ring grows
// to that on demand, so a quiet connection keeps a small one.
type inbox struct {
	mu      sync.Mutex
	buf     [][]byte
	head, n int
}

func (q *inbox) push(b []byte) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.n == len(q.buf) {
		nb := make([][]byte, max(4, 2*len(q.buf)))
		for i := range q.n {
			nb[i] = q.buf[(q.head+i)%len(q.buf)]
		}
		q.buf, q.head = nb, 0
	}
	q.buf[(q.head+q.n)%len(q.buf)] = b
	q.n++
}

// pop removes the oldest message; the inbox is not empty (a task per
// message).
func (q *inbox) pop() []byte {
	q.mu.Lock()
	defer q.mu.Unlock()
	b := q.buf[q.head]
	q.buf[q.head] = nil
	q.head = (q.head + 1) % len(q.buf)
	q.n--
	return b
}

// dropLast removes the message just pushed, whose task could not be posted.
func (q *inbox) dropLast() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.n--
	q.buf[(q.head+q.n)%len(q.buf)] = nil
}
