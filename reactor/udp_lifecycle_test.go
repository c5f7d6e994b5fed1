package reactor

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// Group.Stop alone (no Close) releases the socket on every loop and closes
// the fd; Close and Send afterwards are harmless.
func TestUDPGroupStopClosesSocket(t *testing.T) {
	for _, started := range []bool{true, false} {
		t.Run(map[bool]string{true: "listen after Start", false: "listen before Start"}[started], func(t *testing.T) {
			checkFDs(t)
			g, err := NewGroup(3, Config{})
			require.NoError(t, err)
			if started {
				g.Start()
			}
			s, err := ListenUDP(g, UDPConfig{Addr: "127.0.0.1:0"}, echo)
			require.NoError(t, err)
			if !started {
				g.Start()
			}
			c := dial(t, s)
			roundTrip(t, c, []byte("hello"))
			stopGroup(t, g)
			select {
			case <-s.fdClosed:
			default:
				t.Fatal("fd still open after Group.Stop")
			}
			require.NoError(t, s.Close())
			require.NoError(t, s.Close(), "idempotent")
			require.ErrorIs(t, s.Send(g.Loop(0), []byte("x"), s.LocalAddr()), ErrClosed)
		})
	}
}

func TestUDPCloseFromHandlerAndFromOutside(t *testing.T) {
	checkFDs(t)
	g := startGroup(t, 2, Config{})
	closed := make(chan error, 1)
	s := listen(t, g, UDPConfig{}, func(l *Loop, p *Packet) {
		if string(p.Data) == "close" {
			closed <- p.Socket.Close() // on the loop: must not wait for itself
			return
		}
		echo(l, p)
	})
	c := dial(t, s)
	roundTrip(t, c, []byte("ping"))
	_, err := c.Write([]byte("close"))
	require.NoError(t, err)
	require.NoError(t, recv(t, closed))
	select {
	case <-s.fdClosed:
	case <-time.After(waitTimeout):
		t.Fatal("fd not closed after Close on a loop")
	}
	require.NoError(t, s.Close(), "Close from outside after the loop closed it")

	// The port is free again.
	s2, err := ListenUDP(g, UDPConfig{Addr: s.LocalAddr().String()}, echo)
	require.NoError(t, err)
	require.NoError(t, s2.Close())
}

// A graceful stop stops reading at once, but replies to work in flight can
// still be sent until the loop exits.
func TestUDPGracefulStopStopsReadingKeepsSending(t *testing.T) {
	checkFDs(t)
	g, err := NewGroup(1, Config{})
	require.NoError(t, err)
	g.Start()
	l := g.Loop(0)
	var received atomic.Int64
	s, err := ListenUDP(g, UDPConfig{Addr: "127.0.0.1:0"}, func(l *Loop, p *Packet) {
		received.Add(1)
		echo(l, p)
	})
	require.NoError(t, err)
	c := dial(t, s)
	roundTrip(t, c, []byte("before"))
	to := netip.MustParseAddrPort(c.LocalAddr().String())

	// In-flight work: a timer that replies late keeps the loop draining.
	release := make(chan struct{})
	onLoop(t, l, func() {
		var tm *Timer
		tm = l.AfterFunc(time.Millisecond, func() {
			select {
			case <-release:
				assert.NoError(t, s.Send(l, []byte("late reply"), to))
			default:
				tm.Reset(time.Millisecond)
			}
		})
	})
	stopped := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()
		stopped <- g.Stop(ctx)
	}()
	eventually(t, func() bool {
		watching := make(chan bool, 1)
		if l.Post(func() { watching <- l.Watching(s.fd) }) != nil {
			return false
		}
		return !recv(t, watching)
	}, "socket unwatched when the stop begins")
	before := received.Load()
	_, err = c.Write([]byte("during drain"))
	require.NoError(t, err)
	close(release)
	buf := make([]byte, 100)
	require.NoError(t, c.SetReadDeadline(time.Now().Add(waitTimeout)))
	n, err := c.Read(buf)
	require.NoError(t, err)
	require.Equal(t, "late reply", string(buf[:n]))
	require.NoError(t, recv(t, stopped))
	require.Equal(t, before, received.Load(), "nothing read after the stop began")
}

func TestUDPListenErrors(t *testing.T) {
	checkFDs(t)
	g := startGroup(t, 1, Config{})
	taken := listen(t, g, UDPConfig{}, echo)
	tests := []struct {
		name string
		g    *Group
		cfg  UDPConfig
		h    func(*Loop, *Packet)
		is   error
		msg  string
	}{
		{"nil handler", g, UDPConfig{Addr: "127.0.0.1:0"}, nil, nil, "nil group or handler"},
		{"nil group", nil, UDPConfig{Addr: "127.0.0.1:0"}, echo, nil, "nil group or handler"},
		{"manual group", NewManualGroup(1, nil), UDPConfig{Addr: "127.0.0.1:0"}, echo, ErrManual, ""},
		{"bad address", g, UDPConfig{Addr: "not an address"}, echo, nil, "bad address"},
		{"unknown host", g, UDPConfig{Addr: "no-such-host.invalid:5060"}, echo, nil, "ListenUDP"},
		{"MaxDatagram too big", g, UDPConfig{Addr: "127.0.0.1:0", MaxDatagram: 70000}, echo, nil, "exceeds 65535"},
		{"port in use", g, UDPConfig{Addr: taken.LocalAddr().String()}, echo, unix.EADDRINUSE, ""},
		{"address not local", g, UDPConfig{Addr: "192.0.2.1:0"}, echo, unix.EADDRNOTAVAIL, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := ListenUDP(tt.g, tt.cfg, tt.h)
			require.Error(t, err)
			require.Nil(t, s)
			if tt.is != nil {
				require.ErrorIs(t, err, tt.is)
			}
			require.True(t, strings.Contains(err.Error(), tt.msg), err.Error())
		})
	}
	// Defaults and host names.
	s := listen(t, g, UDPConfig{Addr: "localhost:0", Batch: 5000}, echo)
	require.True(t, s.LocalAddr().Addr().IsLoopback())
	require.Equal(t, maxUDPBatch, s.batch)
	require.Equal(t, defaultMaxDatagram, s.max)
	require.Equal(t, defaultSendQueue, s.sendQ)
}

func TestUDPSendErrors(t *testing.T) {
	checkFDs(t)
	g := startGroup(t, 1, Config{})
	other := startGroup(t, 1, Config{})
	s := listen(t, g, UDPConfig{}, echo)
	l := g.Loop(0)
	var errs []error
	onLoop(t, l, func() {
		errs = append(errs,
			s.Send(other.Loop(0), []byte("x"), s.LocalAddr()),
			s.Send(nil, []byte("x"), s.LocalAddr()),
			s.Send(l, []byte("x"), netip.MustParseAddrPort("[::1]:5060")),
			s.Send(l, []byte("x"), netip.AddrPort{}),
			s.Send(l, make([]byte, 70000), s.LocalAddr()),
			s.Send(l, []byte("x"), netip.MustParseAddrPort("127.0.0.1:0")), // port 0: EINVAL from the kernel
			s.Send(l, nil, s.LocalAddr()),                                  // an empty datagram is valid
		)
	})
	require.ErrorIs(t, errs[0], ErrNotInGroup)
	require.ErrorIs(t, errs[1], ErrNotInGroup)
	require.ErrorIs(t, errs[2], errAddrFamily)
	require.ErrorIs(t, errs[3], errAddrFamily)
	require.ErrorIs(t, errs[4], unix.EMSGSIZE)
	var errno unix.Errno
	require.True(t, errors.As(errs[5], &errno), "%v", errs[5])
	require.NoError(t, errs[6])
	require.Contains(t, errs[5].Error(), "127.0.0.1:0")
}

func TestSockaddrRoundTrip(t *testing.T) {
	tests := []struct {
		fam int
		ap  string
		err bool
	}{
		{unix.AF_INET, "127.0.0.1:5060", false},
		{unix.AF_INET, "255.255.255.255:65535", false},
		{unix.AF_INET, "[::ffff:10.0.0.1]:5060", false}, // v4-mapped goes out as IPv4
		{unix.AF_INET, "[::1]:5060", true},
		{unix.AF_INET6, "[::1]:5060", false},
		{unix.AF_INET6, "[fe80::1%7]:5060", false},
		{unix.AF_INET6, "[2001:db8::1]:1", false},
		{unix.AF_INET6, "10.0.0.1:5060", true},
	}
	for _, tt := range tests {
		t.Run(tt.ap, func(t *testing.T) {
			ap := netip.MustParseAddrPort(tt.ap)
			var sa rawSockaddr
			_, err := encodeSockaddr(&sa, tt.fam, ap)
			if tt.err {
				require.ErrorIs(t, err, errAddrFamily)
				return
			}
			require.NoError(t, err)
			got := decodeSockaddr(&sa)
			want := ap
			if tt.fam == unix.AF_INET {
				want = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
			}
			require.Equal(t, want, got)
		})
	}
	var zero rawSockaddr
	require.False(t, decodeSockaddr(&zero).IsValid(), "unknown family")
	allocs := testing.AllocsPerRun(100, func() {
		var sa rawSockaddr
		_, _ = encodeSockaddr(&sa, unix.AF_INET6, netip.MustParseAddrPort("[::1]:5060"))
		_ = decodeSockaddr(&sa)
	})
	require.Zero(t, allocs)
}
