package reactor

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// quiet discards the logs of tests that panic on purpose.
var quiet = slog.New(slog.DiscardHandler)

// echo is a packet handler that sends every datagram back.
func echo(l *Loop, p *Packet) { _ = p.Socket.Send(l, p.Data, p.From) }

func listen(t *testing.T, g *Group, cfg UDPConfig, h func(*Loop, *Packet)) *UDPSocket {
	t.Helper()
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:0"
	}
	s, err := ListenUDP(g, cfg, h)
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func dial(t *testing.T, s *UDPSocket) *net.UDPConn {
	t.Helper()
	c, err := net.DialUDP(s.Network(), nil, net.UDPAddrFromAddrPort(s.LocalAddr()))
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// roundTrip sends msg and waits (bounded) for the same bytes back, skipping
// late echoes of earlier datagrams.
func roundTrip(t *testing.T, c *net.UDPConn, msg []byte) {
	t.Helper()
	buf := make([]byte, 70000)
	for try := 0; try < 50; try++ {
		_, err := c.Write(msg)
		require.NoError(t, err)
		require.NoError(t, c.SetReadDeadline(time.Now().Add(200*time.Millisecond)))
		for {
			n, err := c.Read(buf)
			if err == nil {
				if bytes.Equal(msg, buf[:n]) {
					return
				}
				continue
			}
			var ne net.Error
			require.True(t, errors.As(err, &ne) && ne.Timeout(), "read: %v", err)
			break
		}
	}
	t.Fatalf("no echo for %q", msg)
}

// TestUDPEchoEveryLoopOnePeer: one peer, every loop handles some of its
// datagrams. Each loop's first packet blocks its handler until every loop
// has had one, so a loop that is busy cannot take them all: the next
// datagram wakes another idle loop (EPOLLEXCLUSIVE). The client re-sends
// when an echo is slow, which is what gives the idle loops new input.
func TestUDPEchoEveryLoopOnePeer(t *testing.T) {
	checkFDs(t)
	const loops = 4
	g := startGroup(t, loops, Config{})
	var seen [loops]atomic.Bool
	var nseen atomic.Int32
	all := make(chan struct{})
	var perLoop [loops]atomic.Int64
	s := listen(t, g, UDPConfig{Batch: 1}, func(l *Loop, p *Packet) {
		perLoop[l.ID()].Add(1)
		if !seen[l.ID()].Swap(true) {
			if nseen.Add(1) == loops {
				close(all)
			}
			select {
			case <-all:
			case <-time.After(waitTimeout):
			}
		}
		echo(l, p)
	})
	c := dial(t, s)
	buf := make([]byte, 1500)
	got := map[string]bool{}
	deadline := time.Now().Add(waitTimeout)
	for i := 0; ; i++ {
		if nseen.Load() == loops {
			break
		}
		require.True(t, time.Now().Before(deadline), "only %d of %d loops got packets", nseen.Load(), loops)
		_, err := c.Write([]byte("ping-" + strconv.Itoa(i)))
		require.NoError(t, err)
		require.NoError(t, c.SetReadDeadline(time.Now().Add(20*time.Millisecond)))
		if n, err := c.Read(buf); err == nil {
			got[string(buf[:n])] = true
		}
	}
	// Every loop is free again; the peer still gets its echoes.
	for i := 0; i < 200; i++ {
		roundTrip(t, c, []byte(fmt.Sprintf("after-%d", i)))
	}
	for i := range perLoop {
		require.Positive(t, perLoop[i].Load(), "loop %d handled nothing", i)
	}
}

// TestUDPEchoManyPeers: many peers with windows of outstanding datagrams,
// every datagram echoed exactly once, and counters add up.
func TestUDPEchoManyPeers(t *testing.T) {
	checkFDs(t)
	g := startGroup(t, 3, Config{})
	s := listen(t, g, UDPConfig{ReadBuffer: 1 << 20}, echo)
	const peers, perPeer, window = 8, 300, 16
	var wg sync.WaitGroup
	errs := make(chan error, peers)
	for p := 0; p < peers; p++ {
		c := dial(t, s)
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- peerEcho(c, p, perPeer, window)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	// The counters are bumped right after the syscalls: wait for them.
	eventually(t, func() bool { st := s.Stats(); return st.Received == st.Sent }, "every datagram answered")
	st := s.Stats()
	require.GreaterOrEqual(t, st.Received, uint64(peers*perPeer))
	require.Zero(t, st.Oversize)
	require.Zero(t, st.SendDropped)
}

// peerEcho sends n distinct datagrams with up to window outstanding and
// checks each comes back; lost ones (rare on loopback) are re-sent.
func peerEcho(c *net.UDPConn, peer, n, window int) error {
	pending := map[string]bool{}
	next := 0
	buf := make([]byte, 1500)
	deadline := time.Now().Add(waitTimeout)
	for next < n || len(pending) > 0 {
		for next < n && len(pending) < window {
			m := fmt.Sprintf("peer%d-%d", peer, next)
			pending[m] = true
			next++
			if _, err := c.Write([]byte(m)); err != nil {
				return err
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("peer %d: %d echoes missing", peer, len(pending))
		}
		_ = c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		k, err := c.Read(buf)
		if err != nil {
			for m := range pending { // timeout: re-send what is missing
				if _, err := c.Write([]byte(m)); err != nil {
					return err
				}
			}
			continue
		}
		delete(pending, string(buf[:k]))
	}
	return nil
}

func TestUDPIPv6Echo(t *testing.T) {
	checkFDs(t)
	g := startGroup(t, 2, Config{})
	s, err := ListenUDP(g, UDPConfig{Addr: "[::1]:0"}, echo)
	if err != nil {
		t.Skipf("no IPv6 loopback on this machine: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	require.Equal(t, "udp6", s.Network())
	require.True(t, s.LocalAddr().Addr().Is6())
	c := dial(t, s)
	for i := 0; i < 20; i++ {
		roundTrip(t, c, []byte("v6-"+strconv.Itoa(i)))
	}
	// An IPv4 destination cannot be used on an IPv6-only socket.
	errc := make(chan error, 1)
	require.NoError(t, g.Loop(0).Post(func() {
		errc <- s.Send(g.Loop(0), []byte("x"), netip.MustParseAddrPort("127.0.0.1:9"))
	}))
	require.ErrorIs(t, recv(t, errc), errAddrFamily)
}

func TestUDPOversizeDropped(t *testing.T) {
	checkFDs(t)
	g := startGroup(t, 2, Config{})
	var mu sync.Mutex
	var sizes []int
	s := listen(t, g, UDPConfig{MaxDatagram: 100}, func(l *Loop, p *Packet) {
		mu.Lock()
		sizes = append(sizes, len(p.Data))
		mu.Unlock()
		echo(l, p)
	})
	c := dial(t, s)
	roundTrip(t, c, bytes.Repeat([]byte("a"), 100)) // exactly the maximum: accepted
	for _, n := range []int{101, 5000, 65000} {     // one byte over, and far over
		_, err := c.Write(bytes.Repeat([]byte("b"), n))
		require.NoError(t, err)
	}
	eventually(t, func() bool { return s.Stats().Oversize == 3 }, "3 oversize datagrams counted")
	roundTrip(t, c, []byte("small"))
	mu.Lock()
	defer mu.Unlock()
	for _, n := range sizes {
		require.LessOrEqual(t, n, 100, "an oversize datagram reached the handler")
	}
	require.Equal(t, uint64(3), s.Stats().Oversize)
}

// TestUDPSendQueueOverflow injects EAGAIN (see sendFault: loopback never
// pushes back) and checks that sends are queued up to the bound, the rest
// dropped and counted, and the queue flushed once the socket is writable.
func TestUDPSendQueueOverflow(t *testing.T) {
	checkFDs(t)
	var full atomic.Bool
	sendFault = full.Load
	g, err := NewGroup(1, Config{})
	require.NoError(t, err)
	t.Cleanup(func() { sendFault = nil }) // after the group has stopped
	g.Start()
	t.Cleanup(func() { stopGroup(t, g) })
	const bound = 8
	s := listen(t, g, UDPConfig{SendQueue: bound, WriteBuffer: 4096}, func(l *Loop, p *Packet) {
		// Replies from the handler are batched (sendmmsg) and overflow
		// silently into the counters.
		for i := 0; i < 20; i++ {
			_ = p.Socket.Send(l, []byte("batched"), p.From)
		}
	})
	c := dial(t, s)
	to := netip.MustParseAddrPort(c.LocalAddr().String())
	l := g.Loop(0)
	u := s.per[0]

	full.Store(true)
	var errs []error
	onLoop(t, l, func() {
		for i := 0; i < 20; i++ {
			errs = append(errs, s.Send(l, []byte("direct-"+strconv.Itoa(i)), to))
		}
	})
	for i, err := range errs {
		if i < bound {
			require.NoError(t, err, "send %d", i)
		} else {
			require.ErrorIs(t, err, ErrSendQueueFull, "send %d", i)
		}
	}
	st := s.Stats()
	require.Equal(t, uint64(bound), st.SendQueued)
	require.Equal(t, uint64(20-bound), st.SendDropped)
	require.Zero(t, st.Sent)

	full.Store(false)
	onLoop(t, l, func() {}) // the writable watcher flushes on the next poll
	buf := make([]byte, 100)
	for i := 0; i < bound; i++ {
		require.NoError(t, c.SetReadDeadline(time.Now().Add(waitTimeout)))
		n, err := c.Read(buf)
		require.NoError(t, err)
		require.Equal(t, "direct-"+strconv.Itoa(i), string(buf[:n]), "queued datagrams keep their order")
	}
	eventually(t, func() bool { return s.Stats().Sent == bound }, "queue flushed")
	var watched bool
	onLoop(t, l, func() { watched = u.dupWatched || l.Watching(u.dup) })
	require.False(t, watched, "writable watcher removed once drained")

	// Batched replies overflow the same way.
	full.Store(true)
	_, err = c.Write([]byte("go"))
	require.NoError(t, err)
	eventually(t, func() bool { return s.Stats().SendDropped == 2*(20-bound) }, "batched overflow counted")
	require.Equal(t, uint64(2*bound), s.Stats().SendQueued)
	full.Store(false)
	eventually(t, func() bool { return s.Stats().Sent == 2*bound }, "batched queue flushed")
}

func TestUDPHandlerPanicKeepsReading(t *testing.T) {
	checkFDs(t)
	g := startGroup(t, 1, Config{Logger: quiet})
	s := listen(t, g, UDPConfig{}, func(l *Loop, p *Packet) {
		if string(p.Data) == "boom" {
			panic("bad packet")
		}
		echo(l, p)
	})
	c := dial(t, s)
	_, err := c.Write([]byte("boom"))
	require.NoError(t, err)
	eventually(t, func() bool { return g.Loop(0).Stats().Panics == 1 }, "panic counted")
	roundTrip(t, c, []byte("still here"))
}

// TestUDPReadPathNoAlloc drives one loop's read path by hand (the group is
// not started) and checks a batch of datagrams costs no allocation,
// including the echo reply through the sendmmsg batch.
func TestUDPReadPathNoAlloc(t *testing.T) {
	checkFDs(t)
	g, err := NewGroup(1, Config{})
	require.NoError(t, err)
	t.Cleanup(func() { stopGroup(t, g) })
	var got atomic.Int64
	s := listen(t, g, UDPConfig{}, func(l *Loop, p *Packet) {
		got.Add(1)
		echo(l, p)
	})
	cfd := rawClient(t, s.LocalAddr())
	u := s.per[0]
	msg := bytes.Repeat([]byte("x"), 512)
	rbuf := make([]byte, 2048)
	allocs := testing.AllocsPerRun(200, func() {
		for i := 0; i < 16; i++ {
			_, _ = unix.Write(cfd, msg)
		}
		u.onReadable(s.fd, Readable)
		for i := 0; i < 16; i++ {
			if _, err := unix.Read(cfd, rbuf); err != nil {
				break
			}
		}
	})
	require.Zero(t, allocs)
	require.Positive(t, got.Load())
	require.Equal(t, s.Stats().Received, s.Stats().Sent)
}

// rawClient returns a non-blocking UDP socket connected to to.
func rawClient(t testing.TB, to netip.AddrPort) int {
	t.Helper()
	sa, fam := sockaddrFor(to)
	fd, err := unix.Socket(fam, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	require.NoError(t, err)
	t.Cleanup(func() { unix.Close(fd) })
	require.NoError(t, unix.Connect(fd, sa))
	return fd
}
