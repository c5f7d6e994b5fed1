package rtpengine

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"

	"golang.org/x/sys/unix"

	"github.com/asyncsip/asyncsip/reactor"
)

// loopConn is a client's UDP sockets on one loop (one per address family,
// opened on first use) and the requests in flight from that loop, by
// cookie. Only its loop touches it; replies are read by a watcher of the
// loop, so a command needs no goroutine.
type loopConn struct {
	c       *Client
	l       *reactor.Loop
	fd4     int
	fd6     int
	pending map[string]*request
	seq     uint64
	buf     []byte
	cookie  []byte
	closed  bool
}

// maxReply is the largest ng reply read (a query of a big call is a few
// KiB; an SDP with many candidates some more).
const maxReply = 65535

// repliesPerWake bounds the datagrams read per readiness event, so that a
// flood of replies cannot starve the loop's other work.
const repliesPerWake = 64

// conn returns the client's sockets on l, creating them on first use.
func (c *Client) conn(l *reactor.Loop) (*loopConn, error) {
	c.mu.Lock()
	lc := c.conns[l]
	if lc == nil {
		lc = &loopConn{c: c, l: l, fd4: -1, fd6: -1, pending: map[string]*request{}}
		c.conns[l] = lc
		l.OnClose(lc.close)
	}
	c.mu.Unlock()
	if lc.closed {
		return nil, ErrClosed
	}
	if l.Manual() {
		return nil, fmt.Errorf("rtpengine: %w (use rtpenginetest's fake in siptest)", reactor.ErrManual)
	}
	return lc, nil
}

// socket returns the loop's socket for the family of to, opening and
// watching it on first use.
func (lc *loopConn) socket(to netip.AddrPort) (int, error) {
	fdp, fam := &lc.fd4, unix.AF_INET
	if to.Addr().Is6() {
		fdp, fam = &lc.fd6, unix.AF_INET6
	}
	if *fdp >= 0 {
		return *fdp, nil
	}
	fd, err := unix.Socket(fam, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("rtpengine: socket: %w", err)
	}
	if err := lc.l.Watch(fd, reactor.Readable, lc.readable); err != nil {
		_ = unix.Close(fd)
		return -1, err
	}
	if lc.buf == nil {
		lc.buf = make([]byte, maxReply)
	}
	*fdp = fd
	return fd, nil
}

func (lc *loopConn) nextCookie() string {
	lc.seq++
	lc.cookie = append(append(lc.cookie[:0], lc.c.prefix...), '.')
	lc.cookie = strconv.AppendInt(lc.cookie, int64(lc.l.ID()), 36)
	lc.cookie = append(lc.cookie, '.')
	lc.cookie = strconv.AppendUint(lc.cookie, lc.seq, 36)
	return string(lc.cookie)
}

// send writes one datagram. A failed send (socket buffer full, no route)
// is left to the retransmission timer, as a lost datagram would be.
func (lc *loopConn) send(in *instance, msg []byte) {
	fd, err := lc.socket(in.addr)
	if err != nil {
		in.stats.sendErrors.Add(1)
		return
	}
	if err := unix.Sendto(fd, msg, 0, sockaddr(in.addr)); err != nil {
		in.stats.sendErrors.Add(1)
	}
}

func sockaddr(ap netip.AddrPort) unix.Sockaddr {
	if ap.Addr().Is4() {
		return &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}
	}
	return &unix.SockaddrInet6{Port: int(ap.Port()), Addr: ap.Addr().As16()}
}

func fromSockaddr(sa unix.Sockaddr) netip.AddrPort {
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4(a.Addr), uint16(a.Port))
	case *unix.SockaddrInet6:
		return netip.AddrPortFrom(netip.AddrFrom16(a.Addr).Unmap(), uint16(a.Port))
	}
	return netip.AddrPort{}
}

// readable reads replies and hands each to the request it answers.
func (lc *loopConn) readable(fd int, _ reactor.Events) {
	for range repliesPerWake {
		n, from, err := unix.Recvfrom(fd, lc.buf, 0)
		if err != nil {
			if !errors.Is(err, unix.EAGAIN) && !errors.Is(err, unix.EINTR) {
				// ECONNREFUSED from an ICMP port unreachable: the
				// retransmission timer notices the silence.
				continue
			}
			return
		}
		lc.deliver(lc.buf[:n], fromSockaddr(from))
	}
}

func (lc *loopConn) deliver(b []byte, from netip.AddrPort) {
	cookie, dict, err := parseReply(b)
	r := lc.pending[cookie]
	if r == nil || r.over {
		lc.c.stray.Add(1) // a late answer to a retransmission or a finished try
		return
	}
	in := lc.c.inst[r.inst]
	if from != in.addr {
		lc.c.stray.Add(1) // a cookie echoed from elsewhere: not an answer
		return
	}
	if err != nil {
		delete(lc.pending, cookie)
		in.stats.badReplies.Add(1)
		r.finish(nil, fmt.Errorf("%s from %s: %w", r.cmd.name, in.name, err))
		return
	}
	r.reply(dict)
}

// close closes the sockets and fails the requests still in flight. It
// runs on the loop (Client.Close posts it; the loop runs it on exit).
func (lc *loopConn) close() {
	if lc.closed {
		return
	}
	lc.closed = true
	for _, fd := range []int{lc.fd4, lc.fd6} {
		if fd >= 0 {
			_ = lc.l.Unwatch(fd)
			_ = unix.Close(fd)
		}
	}
	lc.fd4, lc.fd6 = -1, -1
	for _, r := range lc.pending {
		r.finish(nil, ErrClosed)
	}
	lc.c.mu.Lock()
	if lc.c.conns[lc.l] == lc {
		delete(lc.c.conns, lc.l)
	}
	lc.c.mu.Unlock()
}
