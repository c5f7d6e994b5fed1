package reactor

// UDP sockets on the loops.
//
// Design: ONE non-blocking socket per listen address, shared by every loop of
// the group. Each loop watches it with Readable|Exclusive (EPOLLEXCLUSIVE,
// level-triggered) and reads it with recvmmsg into its own pre-allocated
// batch buffers. A new datagram wakes one idle loop, not all of them; a busy
// loop still finds the socket ready on its next epoll_wait; whichever loop
// is free takes the next batch. So traffic from a single peer (one source
// address and port, as SIPp sends it) spreads over all loops. One
// SO_REUSEPORT socket per loop would hash that peer to one socket, i.e. one
// loop, and leave the others idle.
//
// The price is that two datagrams of one peer may be handled on two loops at
// once and out of order; SIP over UDP tolerates reordering, and tm hands a
// message to the loop that owns its transaction (Group.Owner), so per-
// transaction state is still touched by one loop only.
//
// Writes: Send writes with sendto from the calling loop. A reply sent from
// inside the packet handler is copied to a per-loop batch that is flushed
// with one sendmmsg after the read batch. When the kernel says EAGAIN the
// datagram is copied to the loop's bounded send queue, flushed when a dup()
// of the fd (one per loop: EPOLL_CTL_MOD is refused on EPOLLEXCLUSIVE
// registrations, and an fd can only be registered once per epoll instance)
// becomes writable; beyond the bound datagrams are dropped and counted.
//
// Lifetime: every loop holds a reference to the fd. A loop drops it when it
// closes (OnClose) or when Close asks it to; the last one closes the fd. A
// graceful Group.Stop first stops reading (OnStop) and keeps sending, so
// replies to work in flight still go out.

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// Errors returned by UDP sockets.
var (
	// ErrSendQueueFull is returned by Send when the socket buffer is full
	// and the loop's send queue holds UDPConfig.SendQueue datagrams already;
	// the datagram is dropped and counted in UDPStats.SendDropped.
	ErrSendQueueFull = errors.New("reactor: UDP send queue full")
	// ErrNotInGroup is returned by Send for a loop of another group.
	ErrNotInGroup = errors.New("reactor: loop does not belong to the socket's group")

	errAddrFamily = errors.New("reactor: destination address family does not match the socket")
)

const (
	defaultMaxDatagram = 65507
	defaultUDPBatch    = 32
	defaultSendQueue   = 1024
	maxUDPBatch        = 1024 // UIO_MAXIOV: the kernel caps recvmmsg/sendmmsg there
	udpSetupTimeout    = 5 * time.Second
)

// Packet is one received datagram. Data aliases a loop-owned buffer valid
// only during the handler call: copy it to keep it or to hand it to another
// loop.
type Packet struct {
	Data   []byte
	From   netip.AddrPort
	Socket *UDPSocket
}

// UDPConfig configures ListenUDP. Zero values select the defaults.
type UDPConfig struct {
	// Addr is the local address: "127.0.0.1:5060", "[::1]:5060", ":5060"
	// (IPv4 any); port 0 picks an ephemeral port.
	Addr string
	// MaxDatagram is the largest datagram accepted (default 65507). Larger
	// ones are dropped and counted, never truncated into a parse.
	MaxDatagram int
	// Batch is the number of datagrams per recvmmsg (default 32).
	Batch int
	// ReadBuffer and WriteBuffer set SO_RCVBUF and SO_SNDBUF when > 0.
	ReadBuffer, WriteBuffer int
	// SendQueue bounds, per loop, the datagrams queued while the socket
	// buffer is full (default 1024); beyond it datagrams are dropped and
	// counted.
	SendQueue int
}

// UDPStats is a snapshot of a socket's counters, summed over its loops.
type UDPStats struct {
	Received    uint64 // datagrams delivered to the handler
	Sent        uint64 // datagrams handed to the kernel
	Oversize    uint64 // datagrams dropped for exceeding MaxDatagram
	SendQueued  uint64 // datagrams that had to wait in a send queue
	SendDropped uint64 // datagrams dropped: queue full, send error, or closed with the queue non-empty
	ReadErrors  uint64 // recvmmsg errors other than EAGAIN
}

// UDPSocket is a UDP socket read and written by every loop of a Group.
type UDPSocket struct {
	g       *Group
	fd      int
	family  int
	network string
	local   netip.AddrPort
	max     int
	batch   int
	sendQ   int
	h       func(l *Loop, p *Packet)
	per     []*udpLoop // indexed by loop ID

	refs     atomic.Int32 // loops still holding the fd
	closing  atomic.Bool
	fdClosed chan struct{}
}

// ListenUDP opens a UDP socket on cfg.Addr and has every loop of g read it,
// calling h on the loop for each datagram. It may be called before or after
// g.Start (not concurrently with it); on running loops it waits (up to 5 s)
// until each has registered the socket (called on one of the loops, it
// registers that loop directly). Manual groups have no poller and are
// refused.
func ListenUDP(g *Group, cfg UDPConfig, h func(l *Loop, p *Packet)) (*UDPSocket, error) {
	if g == nil || len(g.loops) == 0 || h == nil {
		return nil, errors.New("reactor: ListenUDP: nil group or handler")
	}
	if g.loops[0].manual {
		return nil, fmt.Errorf("reactor: ListenUDP: %w", ErrManual)
	}
	if err := cfg.normalize(); err != nil {
		return nil, err
	}
	ap, err := resolveUDP(cfg.Addr)
	if err != nil {
		return nil, err
	}
	fd, fam, local, err := openUDP(ap, cfg)
	if err != nil {
		return nil, err
	}
	s := &UDPSocket{
		g: g, fd: fd, family: fam, network: "udp4", local: local,
		max: cfg.MaxDatagram, batch: cfg.Batch, sendQ: cfg.SendQueue, h: h,
		fdClosed: make(chan struct{}),
	}
	if fam == unix.AF_INET6 {
		s.network = "udp6"
	}
	s.refs.Store(int32(len(g.loops)))
	s.per = make([]*udpLoop, len(g.loops))
	for i, l := range g.loops {
		s.per[i] = newUDPLoop(s, l)
	}
	if err := s.register(); err != nil {
		_ = s.Close()
		return nil, err
	}
	return s, nil
}

func (c *UDPConfig) normalize() error {
	if c.MaxDatagram <= 0 {
		c.MaxDatagram = defaultMaxDatagram
	}
	if c.MaxDatagram > 65535 {
		return fmt.Errorf("reactor: ListenUDP: MaxDatagram %d exceeds 65535", c.MaxDatagram)
	}
	if c.Batch <= 0 {
		c.Batch = defaultUDPBatch
	}
	c.Batch = min(c.Batch, maxUDPBatch)
	if c.SendQueue <= 0 {
		c.SendQueue = defaultSendQueue
	}
	return nil
}

// resolveUDP parses an IP literal, or resolves a host name (from
// /etc/hosts or DNS) when it is not one. An empty host means IPv4 any.
func resolveUDP(addr string) (netip.AddrPort, error) {
	if ap, err := netip.ParseAddrPort(addr); err == nil {
		return ap, nil
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("reactor: ListenUDP: bad address %q: %w", addr, err)
	}
	if host == "" {
		host = "0.0.0.0"
	}
	ua, err := net.ResolveUDPAddr("udp", net.JoinHostPort(host, port))
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("reactor: ListenUDP: %w", err)
	}
	return ua.AddrPort(), nil
}

// openUDP creates, configures and binds the shared non-blocking socket.
func openUDP(ap netip.AddrPort, cfg UDPConfig) (fd, fam int, local netip.AddrPort, err error) {
	sa, fam := sockaddrFor(ap)
	fd, err = unix.Socket(fam, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, unix.IPPROTO_UDP)
	if err != nil {
		return -1, 0, local, fmt.Errorf("reactor: ListenUDP %s: socket: %w", ap, err)
	}
	fail := func(what string, err error) (int, int, netip.AddrPort, error) {
		unix.Close(fd)
		return -1, 0, netip.AddrPort{}, fmt.Errorf("reactor: ListenUDP %s: %s: %w", ap, what, err)
	}
	if fam == unix.AF_INET6 {
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 1); err != nil {
			return fail("IPV6_V6ONLY", err)
		}
	}
	if cfg.ReadBuffer > 0 {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, cfg.ReadBuffer); err != nil {
			return fail("SO_RCVBUF", err)
		}
	}
	if cfg.WriteBuffer > 0 {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, cfg.WriteBuffer); err != nil {
			return fail("SO_SNDBUF", err)
		}
	}
	if err := unix.Bind(fd, sa); err != nil {
		return fail("bind", err)
	}
	got, err := unix.Getsockname(fd)
	if err != nil {
		return fail("getsockname", err)
	}
	return fd, fam, addrPortOf(got), nil
}

// register has every loop watch the socket: directly when the loop is not
// running (or when we are on it), else through a posted task we wait for.
func (s *UDPSocket) register() error {
	done := make(chan error, len(s.per))
	waiting := 0
	var errs []error
	for _, u := range s.per {
		l := u.l
		if l.onLoopThread() || !l.started.Load() {
			if err := u.register(); err != nil {
				errs = append(errs, err)
			}
			continue
		}
		if err := l.Post(func() { done <- u.register() }); err != nil {
			// The loop has exited: nothing runs on it any more.
			u.release()
			errs = append(errs, fmt.Errorf("reactor: ListenUDP: loop %d: %w", l.id, err))
			continue
		}
		waiting++
	}
	if waiting > 0 {
		t := time.NewTimer(udpSetupTimeout)
		defer t.Stop()
		for ; waiting > 0; waiting-- {
			select {
			case err := <-done:
				if err != nil {
					errs = append(errs, err)
				}
			case <-t.C:
				return errors.Join(append(errs, fmt.Errorf(
					"reactor: ListenUDP: %d loop(s) did not register the socket within %v", waiting, udpSetupTimeout))...)
			}
		}
	}
	return errors.Join(errs...)
}

// LocalAddr returns the address the socket is bound to.
func (s *UDPSocket) LocalAddr() netip.AddrPort { return s.local }

// Network returns "udp4" or "udp6".
func (s *UDPSocket) Network() string { return s.network }

// Send writes b to `to`. It must be called on loop l, which may be any loop
// of the socket's group, and it never blocks: when the socket buffer is full
// the datagram is copied to l's bounded queue and flushed when the fd is
// writable (ErrSendQueueFull when the queue is full). b may be reused as soon
// as Send returns. Called from the packet handler, the datagram is batched
// with the other replies of the read batch into one sendmmsg; errors from
// that flush are counted in SendDropped rather than returned.
func (s *UDPSocket) Send(l *Loop, b []byte, to netip.AddrPort) error {
	if l == nil || l.id < 0 || l.id >= len(s.per) || s.per[l.id].l != l {
		return ErrNotInGroup
	}
	u := s.per[l.id]
	if u.released {
		return fmt.Errorf("reactor: UDP send: %w", ErrClosed)
	}
	if len(b) > 65535 {
		return fmt.Errorf("reactor: UDP send of %d bytes: %w", len(b), unix.EMSGSIZE)
	}
	return u.send(b, to)
}

// Stats returns the socket's counters. It is safe from any goroutine.
func (s *UDPSocket) Stats() UDPStats {
	var st UDPStats
	for _, u := range s.per {
		c := &u.stats
		st.Received += c.received.Load()
		st.Sent += c.sent.Load()
		st.Oversize += c.oversize.Load()
		st.SendQueued += c.sendQueued.Load()
		st.SendDropped += c.sendDropped.Load()
		st.ReadErrors += c.readErrors.Load()
	}
	return st
}

// Close stops reading on all loops and closes the fd. It is safe to call
// from any goroutine and idempotent. Each loop lets go of the socket on its
// own goroutine (datagrams queued for sending are dropped and counted);
// Close waits up to 5 s for the last one to close the fd, except when called
// on one of the group's loops, where it returns at once and the fd is closed
// right after the current task. (A loop is recognised by its OS thread: with
// Config.NoLockThread, call Close from outside the loops.)
func (s *UDPSocket) Close() error {
	if s.closing.CompareAndSwap(false, true) {
		for _, u := range s.per {
			l := u.l
			if !l.started.Load() {
				u.release()
				continue
			}
			// If the loop has already exited, its OnClose hook released u.
			_ = l.Post(u.release)
		}
	}
	for _, l := range s.g.loops {
		if l.onLoopThread() {
			return nil
		}
	}
	t := time.NewTimer(udpSetupTimeout)
	defer t.Stop()
	select {
	case <-s.fdClosed:
		return nil
	case <-t.C:
		return fmt.Errorf("reactor: UDP close %s: loops did not release the socket within %v", s.local, udpSetupTimeout)
	}
}

// unref drops one loop's reference; the last one closes the fd.
func (s *UDPSocket) unref() {
	if s.refs.Add(-1) == 0 {
		unix.Close(s.fd)
		close(s.fdClosed)
	}
}
