package reactor

import (
	"net/netip"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// udpCounters are written by one loop and read by Stats from anywhere. The
// padding keeps two loops' counters off one cache line.
type udpCounters struct {
	received, sent, oversize atomic.Uint64
	sendQueued, sendDropped  atomic.Uint64
	readErrors               atomic.Uint64
	_                        [16]byte
}

// queuedDatagram is a datagram waiting in a send queue.
type queuedDatagram struct {
	data []byte
	to   netip.AddrPort
}

// udpLoop is a socket's state on one loop; only that loop touches it (or
// the caller of ListenUDP/Close while the loop is not running).
type udpLoop struct {
	s         *UDPSocket
	l         *Loop
	reading   bool // read watcher registered
	released  bool // reference dropped; the fd may be closed
	stopHook  *hook
	closeHook *hook

	// read path: batch buffers of MaxDatagram+1 bytes each, so that a
	// datagram one byte too long is seen as too long.
	hdrs    []mmsghdr
	iovs    []unix.Iovec
	names   []rawSockaddr
	buf     []byte
	lastN   int
	pkt     Packet
	inBatch bool // a read batch is being delivered: Send batches its writes

	// replies batched during a read batch, flushed with sendmmsg.
	outHdrs  []mmsghdr
	outIovs  []unix.Iovec
	outNames []rawSockaddr
	outEnd   []int // end offset of each datagram in outArena
	outArena []byte
	nout     int

	// send queue, a ring, used while the kernel says EAGAIN.
	q          []queuedDatagram
	qHead      int
	qLen       int
	dup        int // dup of the fd, watched for Writable while q is not empty
	dupWatched bool
	sa         rawSockaddr // sendto scratch address

	stats udpCounters
}

func newUDPLoop(s *UDPSocket, l *Loop) *udpLoop {
	u := &udpLoop{s: s, l: l, dup: -1}
	u.pkt.Socket = s
	stride := s.max + 1
	u.buf = make([]byte, s.batch*stride)
	u.hdrs = make([]mmsghdr, s.batch)
	u.iovs = make([]unix.Iovec, s.batch)
	u.names = make([]rawSockaddr, s.batch)
	for i := range u.hdrs {
		u.iovs[i].Base = &u.buf[i*stride]
		u.iovs[i].SetLen(stride)
		h := &u.hdrs[i].Hdr
		h.Name = (*byte)(unsafe.Pointer(&u.names[i]))
		h.Namelen = sizeofSockaddrInet6
		h.Iov = &u.iovs[i]
		h.SetIovlen(1)
	}
	u.outHdrs = make([]mmsghdr, s.batch)
	u.outIovs = make([]unix.Iovec, s.batch)
	u.outNames = make([]rawSockaddr, s.batch)
	u.outEnd = make([]int, s.batch)
	return u
}

// register watches the socket on the loop; it runs on the loop (or before
// the loop runs).
func (u *udpLoop) register() error {
	l := u.l
	switch {
	case u.released || u.s.closing.Load():
		u.release()
		return ErrClosed
	case l.stopping:
		u.release()
		return ErrClosed
	}
	if err := l.Watch(u.s.fd, Readable|Exclusive, u.onReadable); err != nil {
		u.release()
		return err
	}
	u.reading = true
	u.stopHook = l.addStopHook(u.stopReading)
	u.closeHook = l.addCloseHook(u.release)
	return nil
}

// stopReading is the OnStop hook: no new input, sends still allowed.
func (u *udpLoop) stopReading() {
	if u.reading {
		_ = u.l.Unwatch(u.s.fd)
		u.reading = false
	}
}

// release drops everything the socket holds on this loop and its reference
// to the fd. It is idempotent.
func (u *udpLoop) release() {
	if u.released {
		return
	}
	u.released = true
	u.stopReading()
	if u.dupWatched {
		_ = u.l.Unwatch(u.dup)
		u.dupWatched = false
	}
	if u.dup >= 0 {
		unix.Close(u.dup)
		u.dup = -1
	}
	if u.qLen > 0 {
		u.stats.sendDropped.Add(uint64(u.qLen))
	}
	u.q, u.qLen, u.qHead = nil, 0, 0
	u.hdrs, u.iovs, u.names, u.buf = nil, nil, nil, nil
	u.outHdrs, u.outIovs, u.outNames, u.outEnd, u.outArena = nil, nil, nil, nil, nil
	u.pkt.Data = nil
	u.l.removeHook(u.stopHook)
	u.l.removeHook(u.closeHook)
	u.stopHook, u.closeHook = nil, nil
	u.s.unref()
}

// onReadable reads one batch and delivers it. One batch per readiness
// event keeps the loop fair; level triggering brings us back for the rest.
func (u *udpLoop) onReadable(fd int, _ Events) {
	for i := 0; i < u.lastN; i++ {
		u.hdrs[i].Hdr.Namelen = sizeofSockaddrInet6
	}
	u.lastN = 0
	n, errno := recvmmsg(fd, u.hdrs)
	if errno != 0 {
		if errno != unix.EAGAIN && errno != unix.EINTR {
			u.stats.readErrors.Add(1)
		}
		return
	}
	u.lastN = n
	s := u.s
	stride := s.max + 1
	delivered, oversize := 0, 0
	u.inBatch = true
	for i := 0; i < n && !u.released; i++ {
		h := &u.hdrs[i]
		size := int(h.Len)
		if h.Hdr.Flags&unix.MSG_TRUNC != 0 || size > s.max {
			oversize++
			continue
		}
		off := i * stride
		u.pkt.Data = u.buf[off : off+size : off+size]
		u.pkt.From = decodeSockaddr(&u.names[i])
		delivered++
		u.deliver()
	}
	u.inBatch = false
	u.pkt.Data = nil
	if delivered > 0 {
		u.stats.received.Add(uint64(delivered))
	}
	if oversize > 0 {
		u.stats.oversize.Add(uint64(oversize))
	}
	u.flushOut()
	if u.qLen > 0 && !u.dupWatched {
		u.flushQueue() // no writable watcher (dup failed): retry here
	}
}

// deliver runs the handler, recovering a panic so that one bad packet costs
// only itself: the loop and the socket's watcher carry on.
func (u *udpLoop) deliver() {
	defer func() {
		if r := recover(); r != nil {
			u.l.panicked(r)
		}
	}()
	u.s.h(u.l, &u.pkt)
}

// send is Send on the loop.
func (u *udpLoop) send(b []byte, to netip.AddrPort) error {
	if u.qLen > 0 {
		// Keep order behind what is already waiting.
		if _, err := encodeSockaddr(&u.sa, u.s.family, to); err != nil {
			return err
		}
		return u.enqueue(b, to)
	}
	if u.inBatch {
		return u.appendOut(b, to)
	}
	salen, err := encodeSockaddr(&u.sa, u.s.family, to)
	if err != nil {
		return err
	}
	for {
		switch errno := sendto(u.s.fd, b, &u.sa, salen); errno {
		case 0:
			u.stats.sent.Add(1)
			return nil
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return u.enqueue(b, to)
		default:
			return &sendError{to: to, errno: errno}
		}
	}
}

// sendError reports a failed sendto; building it allocates, but only on the
// error path.
type sendError struct {
	to    netip.AddrPort
	errno unix.Errno
}

func (e *sendError) Error() string {
	return "reactor: UDP send to " + e.to.String() + ": " + e.errno.Error()
}
func (e *sendError) Unwrap() error { return e.errno }

// appendOut copies a reply into the sendmmsg batch.
func (u *udpLoop) appendOut(b []byte, to netip.AddrPort) error {
	i := u.nout
	salen, err := encodeSockaddr(&u.outNames[i], u.s.family, to)
	if err != nil {
		return err
	}
	u.outArena = append(u.outArena, b...)
	u.outEnd[i] = len(u.outArena)
	h := &u.outHdrs[i].Hdr
	h.Namelen = salen
	u.nout++
	if u.nout == len(u.outHdrs) {
		u.flushOut()
	}
	return nil
}

// flushOut sends the batched replies with sendmmsg; what the kernel refuses
// with EAGAIN goes to the send queue.
func (u *udpLoop) flushOut() {
	n := u.nout
	if n == 0 || u.released {
		u.nout = 0
		return
	}
	start := 0
	for i := 0; i < n; i++ {
		end := u.outEnd[i]
		iov := &u.outIovs[i]
		iov.Base = nil
		if end > start {
			iov.Base = &u.outArena[start]
		}
		iov.SetLen(end - start)
		h := &u.outHdrs[i].Hdr
		h.Name = (*byte)(unsafe.Pointer(&u.outNames[i]))
		h.Iov = iov
		h.SetIovlen(1)
		start = end
	}
	sent, dropped := 0, 0
	for i := 0; i < n; {
		m, errno := sendmmsg(u.s.fd, u.outHdrs[i:n])
		switch {
		case errno == 0 && m > 0:
			sent += m
			i += m
		case errno == unix.EINTR:
		case errno == unix.EAGAIN:
			for ; i < n; i++ {
				_ = u.enqueue(u.outDatagram(i), decodeSockaddr(&u.outNames[i]))
			}
		default:
			dropped++ // this datagram failed; go on with the next
			i++
		}
	}
	if sent > 0 {
		u.stats.sent.Add(uint64(sent))
	}
	if dropped > 0 {
		u.stats.sendDropped.Add(uint64(dropped))
	}
	u.nout = 0
	u.outArena = u.outArena[:0]
}

func (u *udpLoop) outDatagram(i int) []byte {
	start := 0
	if i > 0 {
		start = u.outEnd[i-1]
	}
	return u.outArena[start:u.outEnd[i]]
}

// enqueue copies a datagram into the bounded send queue and makes sure a
// writable watcher will flush it.
func (u *udpLoop) enqueue(b []byte, to netip.AddrPort) error {
	if u.q == nil {
		u.q = make([]queuedDatagram, u.s.sendQ)
	}
	if u.qLen == len(u.q) {
		u.stats.sendDropped.Add(1)
		return ErrSendQueueFull
	}
	e := &u.q[(u.qHead+u.qLen)%len(u.q)]
	e.data = append(e.data[:0], b...)
	e.to = to
	u.qLen++
	u.stats.sendQueued.Add(1)
	u.armFlush()
	return nil
}

// armFlush watches the loop's dup of the fd for Writable.
func (u *udpLoop) armFlush() {
	if u.dupWatched {
		return
	}
	if u.dup < 0 {
		d, err := unix.FcntlInt(uintptr(u.s.fd), unix.F_DUPFD_CLOEXEC, 0)
		if err != nil {
			u.l.log.Warn("reactor: UDP send queue: dup failed, flushing after reads instead", "err", err)
			return
		}
		u.dup = d
	}
	if err := u.l.Watch(u.dup, Writable, u.onWritable); err != nil {
		u.l.log.Warn("reactor: UDP send queue: watch failed, flushing after reads instead", "err", err)
		return
	}
	u.dupWatched = true
}

func (u *udpLoop) onWritable(int, Events) { u.flushQueue() }

// flushQueue sends queued datagrams until the kernel pushes back again or
// the queue is empty; then it stops watching for Writable.
func (u *udpLoop) flushQueue() {
	sent, dropped := 0, 0
	for u.qLen > 0 {
		e := &u.q[u.qHead]
		salen, err := encodeSockaddr(&u.sa, u.s.family, e.to)
		if err == nil {
			errno := sendto(u.s.fd, e.data, &u.sa, salen)
			if errno == unix.EINTR {
				continue
			}
			if errno == unix.EAGAIN {
				break
			}
			if errno == 0 {
				sent++
			} else {
				dropped++
			}
		} else {
			dropped++
		}
		if cap(e.data) > 8<<10 {
			e.data = nil // do not keep big buffers around
		}
		u.qHead = (u.qHead + 1) % len(u.q)
		u.qLen--
	}
	if sent > 0 {
		u.stats.sent.Add(uint64(sent))
	}
	if dropped > 0 {
		u.stats.sendDropped.Add(uint64(dropped))
	}
	if u.qLen == 0 && u.dupWatched {
		_ = u.l.Unwatch(u.dup)
		u.dupWatched = false
	}
}
