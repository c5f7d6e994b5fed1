package rtpengine

// Sockets: ONE unconnected UDP socket per loop (and address family), for
// every instance and every command of the client, watched by the loop with
// reactor.Loop.Watch for as long as the loop lives. A command is a
// datagram sent with sendto and an entry in the loop's cookie table; its
// answer is read by the loop's watcher, looked up by cookie and checked to
// come from the instance it was sent to. No goroutine, no socket and no
// epoll_ctl per command. The alternative, async.FDOp with a socket per
// command (as OpenSIPS 3.6's async rtpengine does), would cost a socket,
// bind and two epoll_ctl calls per command and hold an fd per command in
// flight; FDOp closes its fds when its op ends, which is right for a
// command's own pipes and wrong for a socket shared by commands.

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"time"

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
	id      uint64 // unique per client: loop IDs repeat across groups
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
	if l.Manual() {
		return nil, fmt.Errorf("rtpengine: %w (use rtpenginetest's fake in siptest)", reactor.ErrManual)
	}
	// Only l stores l's entry, and this runs on l: a lock-free load, and
	// no race between two stores for one loop.
	v, ok := c.conns.Load(l)
	if !ok {
		lc := &loopConn{c: c, l: l, id: c.connSeq.Add(1), fd4: -1, fd6: -1, pending: map[string]*request{}}
		c.conns.Store(l, lc)
		l.OnClose(lc.close)
		v = lc
	}
	lc := v.(*loopConn)
	if lc.closed {
		return nil, ErrClosed
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
	lc.cookie = strconv.AppendUint(lc.cookie, lc.id, 36)
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
		if o := lc.c.cfg.Observer; o != nil {
			o.CommandFinished(in.name, r.cmd.name, KindBadReply, time.Since(r.sentAt))
		}
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
	lc.c.conns.CompareAndDelete(lc.l, lc)
}

// Close closes the client's sockets on every loop; commands in flight
// fail with ErrClosed, later ones at once. It does not wait.
func (c *Client) Close() error {
	if c.closed.Swap(true) {
		return nil
	}
	c.conns.Range(func(_, v any) bool {
		lc := v.(*loopConn)
		_ = lc.l.Post(lc.close)
		return true
	})
	return nil
}
