package reactor

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// UDP request/response: the same load generator against a reactor Group and
// against goroutines doing net.UDPConn ReadFrom/WriteTo (what sipgo does),
// in one run. Each peer is a client socket with a window of outstanding
// datagrams; "peers=1" is one source address, as SIPp sends.

const benchPayload = 512 // a typical SIP request is 400-1200 bytes

var benchLoads = []struct{ peers, window int }{{1, 64}, {4, 16}}

func BenchmarkUDPEcho(b *testing.B) {
	servers := []struct {
		name  string
		start func(b *testing.B) (netip.AddrPort, func())
	}{
		{"reactor", func(b *testing.B) (netip.AddrPort, func()) { return startReactorEcho(b, 0) }},
		// One loop: the same parallelism as the baseline's reads, which
		// net.UDPConn serialises on the fd's read lock.
		{"reactor1loop", func(b *testing.B) (netip.AddrPort, func()) { return startReactorEcho(b, 1) }},
		{"netUDPConn", func(b *testing.B) (netip.AddrPort, func()) { return startNetEcho(b, false) }},
		{"netUDPConnAddrPort", func(b *testing.B) (netip.AddrPort, func()) { return startNetEcho(b, true) }},
	}
	for _, load := range benchLoads {
		for _, srv := range servers {
			b.Run(fmt.Sprintf("%s/peers=%d", srv.name, load.peers), func(b *testing.B) {
				addr, stop := srv.start(b)
				defer stop()
				runLoad(b, addr, load.peers, load.window)
			})
		}
	}
}

// startReactorEcho runs an echo socket on a Group of n loops (0 means
// GOMAXPROCS).
func startReactorEcho(b *testing.B, n int) (netip.AddrPort, func()) {
	g, err := NewGroup(n, Config{})
	if err != nil {
		b.Fatal(err)
	}
	g.Start()
	s, err := ListenUDP(g, UDPConfig{Addr: "127.0.0.1:0", ReadBuffer: 4 << 20, WriteBuffer: 4 << 20}, echo)
	if err != nil {
		b.Fatal(err)
	}
	return s.LocalAddr(), func() {
		_ = s.Close()
		_ = g.Stop(context.Background())
	}
}

// startNetEcho runs GOMAXPROCS goroutines on one net.UDPConn, like the
// loops of a Group. addrPort selects the allocation-free
// ReadFromUDPAddrPort/WriteToUDPAddrPort instead of ReadFrom/WriteTo.
func startNetEcho(b *testing.B, addrPort bool) (netip.AddrPort, func()) {
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		b.Fatal(err)
	}
	_ = c.SetReadBuffer(4 << 20)
	_ = c.SetWriteBuffer(4 << 20)
	var wg sync.WaitGroup
	for i := 0; i < runtime.GOMAXPROCS(0); i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 65536)
			for {
				if addrPort {
					n, from, err := c.ReadFromUDPAddrPort(buf)
					if err != nil {
						return
					}
					_, _ = c.WriteToUDPAddrPort(buf[:n], from)
					continue
				}
				n, from, err := c.ReadFrom(buf)
				if err != nil {
					return
				}
				_, _ = c.WriteTo(buf[:n], from)
			}
		}()
	}
	return netip.MustParseAddrPort(c.LocalAddr().String()), func() {
		_ = c.Close()
		wg.Wait()
	}
}

// runLoad sends b.N requests from peers client sockets, each keeping window
// requests outstanding, and reports packets/s (requests answered per
// second). Clients use blocking recvmmsg/sendmmsg so that the load generator
// costs as little CPU as possible and the same for every server.
func runLoad(b *testing.B, to netip.AddrPort, peers, window int) {
	b.ReportAllocs()
	fds := make([]int, peers)
	for i := range fds {
		fds[i] = benchClient(b, to)
	}
	defer func() {
		for _, fd := range fds {
			unix.Close(fd)
		}
	}()
	var lost atomic.Int64
	var wg sync.WaitGroup
	cpu0 := cpuTime()
	b.ResetTimer()
	start := time.Now()
	for i, fd := range fds {
		quota := b.N / peers
		if i < b.N%peers {
			quota++
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			lost.Add(int64(clientLoop(fd, quota, window)))
		}()
	}
	wg.Wait()
	el := time.Since(start)
	b.StopTimer()
	cpu := cpuTime() - cpu0
	b.ReportMetric(float64(b.N)/el.Seconds(), "pkts/s")
	// CPU time of the whole process (server and clients) per exchange:
	// less sensitive to other load on a shared machine than pkts/s.
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/pkt")
	b.ReportMetric(float64(lost.Load())/float64(b.N), "lost/op")
}

// cpuTime returns the user+system CPU time used by the process.
func cpuTime() time.Duration {
	var ru unix.Rusage
	_ = unix.Getrusage(unix.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func benchClient(b *testing.B, to netip.AddrPort) int {
	sa, fam := sockaddrFor(to)
	fd, err := unix.Socket(fam, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		b.Fatal(err)
	}
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 1<<20)
	tv := unix.NsecToTimeval(int64(100 * time.Millisecond))
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		b.Fatal(err)
	}
	if err := unix.Connect(fd, sa); err != nil {
		b.Fatal(err)
	}
	return fd
}

// clientLoop completes quota request/response exchanges and returns how
// many requests were lost (not answered within the receive timeout).
func clientLoop(fd, quota, window int) (lost int) {
	out := make([]byte, benchPayload)
	in := make([]byte, window*2048)
	shdr := make([]mmsghdr, window)
	rhdr := make([]mmsghdr, window)
	siov := unix.Iovec{Base: &out[0]}
	siov.SetLen(len(out))
	riov := make([]unix.Iovec, window)
	for i := 0; i < window; i++ {
		shdr[i].Hdr.Iov = &siov
		shdr[i].Hdr.SetIovlen(1)
		riov[i].Base = &in[i*2048]
		riov[i].SetLen(2048)
		rhdr[i].Hdr.Iov = &riov[i]
		rhdr[i].Hdr.SetIovlen(1)
	}
	sent, done, outstanding := 0, 0, 0
	send := func(k int) {
		for k > 0 {
			n, _, e := unix.Syscall6(unix.SYS_SENDMMSG, uintptr(fd), uintptr(unsafe.Pointer(&shdr[0])), uintptr(k), 0, 0, 0)
			if e != 0 {
				if e == unix.EINTR || e == unix.ENOBUFS || e == unix.EAGAIN {
					continue
				}
				panic(e)
			}
			k -= int(n)
			sent += int(n)
			outstanding += int(n)
		}
	}
	send(min(window, quota))
	for done+lost < quota {
		n, _, e := unix.Syscall6(unix.SYS_RECVMMSG, uintptr(fd), uintptr(unsafe.Pointer(&rhdr[0])), uintptr(window), unix.MSG_WAITFORONE, 0, 0)
		switch {
		case e == unix.EAGAIN: // receive timeout: what is outstanding is lost
			lost += outstanding
			outstanding = 0
		case e == unix.EINTR:
			continue
		case e != 0:
			panic(e)
		default:
			done += int(n)
			outstanding -= int(n)
		}
		send(min(window-outstanding, quota-sent))
	}
	return lost
}

// BenchmarkUDPReadPath measures the read path of one loop alone, driven by
// hand (no epoll): recvmmsg, oversize check, address decoding and handler
// call, with the echo batched into one sendmmsg ("echo") or no reply
// ("drop"). One op is one datagram; allocs/op must be 0. ns/op includes the
// client's write and read; loop-ns/pkt is the loop's share.
func BenchmarkUDPReadPath(b *testing.B) {
	for _, reply := range []bool{true, false} {
		name := map[bool]string{true: "echo", false: "drop"}[reply]
		b.Run(name, func(b *testing.B) { benchReadPath(b, reply) })
	}
}

func benchReadPath(b *testing.B, reply bool) {
	g, err := NewGroup(1, Config{})
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = g.Stop(context.Background()) }()
	h := echo
	if !reply {
		h = func(*Loop, *Packet) {}
	}
	s, err := ListenUDP(g, UDPConfig{Addr: "127.0.0.1:0", ReadBuffer: 4 << 20}, h)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	cfd := rawClient(b, s.LocalAddr())
	_ = unix.SetsockoptInt(cfd, unix.SOL_SOCKET, unix.SO_RCVBUF, 4<<20)
	u := s.per[0]
	msg := make([]byte, benchPayload)
	rbuf := make([]byte, 2048)
	const batch = 32
	var inRead time.Duration
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i += batch {
		k := min(batch, b.N-i)
		for j := 0; j < k; j++ {
			_, _ = unix.Write(cfd, msg)
		}
		t0 := time.Now()
		u.onReadable(s.fd, Readable)
		inRead += time.Since(t0)
		for j := 0; reply && j < k; j++ {
			if _, err := unix.Read(cfd, rbuf); err != nil {
				break
			}
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(inRead.Nanoseconds())/float64(b.N), "loop-ns/pkt")
}

// BenchmarkPost: GOMAXPROCS goroutines post to one loop; tasks/s counts
// tasks run (the benchmark waits for the last one).
func BenchmarkPost(b *testing.B) {
	for _, urgent := range []bool{false, true} {
		b.Run(fmt.Sprintf("urgent=%v", urgent), func(b *testing.B) {
			l, err := New(Config{})
			if err != nil {
				b.Fatal(err)
			}
			l.Start()
			defer func() { _ = l.Stop(context.Background()) }()
			var ran atomic.Int64
			task := func() { ran.Add(1) }
			post := l.Post
			if urgent {
				post = l.PostUrgent
			}
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := post(task); err != nil {
						b.Error(err)
						return
					}
				}
			})
			for ran.Load() < int64(b.N) {
				runtime.Gosched()
			}
			el := time.Since(start)
			b.StopTimer()
			b.ReportMetric(float64(b.N)/el.Seconds(), "tasks/s")
			st := l.Stats()
			b.ReportMetric(float64(st.Wakeups)/float64(st.Posted), "wakeups/post")
		})
	}
}

// BenchmarkPostLatency: one post at a time to an idle loop (asleep in
// epoll_wait), so the figure includes the eventfd wake-up; reports the
// post-to-run latency percentiles. "chan" is the same hand-off to a
// goroutine blocked on a channel, for scale.
func BenchmarkPostLatency(b *testing.B) {
	b.Run("loop", func(b *testing.B) {
		l, err := New(Config{})
		if err != nil {
			b.Fatal(err)
		}
		l.Start()
		defer func() { _ = l.Stop(context.Background()) }()
		measureHandOff(b, func(task func()) { _ = l.Post(task) })
	})
	b.Run("chan", func(b *testing.B) {
		ch := make(chan func())
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			for f := range ch {
				f()
			}
		}()
		defer wg.Wait()
		defer close(ch)
		measureHandOff(b, func(task func()) { ch <- task })
	})
}

func measureHandOff(b *testing.B, post func(func())) {
	lat := make([]time.Duration, 0, b.N)
	var t0 time.Time
	var done atomic.Bool
	task := func() {
		lat = append(lat, time.Since(t0))
		done.Store(true)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		done.Store(false)
		t0 = time.Now()
		post(task)
		for !done.Load() {
			runtime.Gosched()
		}
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Nanoseconds()), "p50-ns")
	b.ReportMetric(float64(lat[len(lat)*99/100].Nanoseconds()), "p99-ns")
}

// BenchmarkTimer: arming and stopping a timer (what a SIP transaction does
// with most of its timers), with a heap already holding some timers.
func BenchmarkTimer(b *testing.B) {
	for _, existing := range []int{0, 10000} {
		b.Run(fmt.Sprintf("AfterFuncStop/heap=%d", existing), func(b *testing.B) {
			l, _ := manualB()
			for i := 0; i < existing; i++ {
				l.AfterFunc(time.Duration(i+1)*time.Millisecond, func() {})
			}
			fn := func() {}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				t := l.AfterFunc(time.Duration(i%5000)*time.Millisecond, fn)
				t.Stop()
			}
		})
	}
	b.Run("AfterFuncFire", func(b *testing.B) {
		l, clk := manualB()
		var n int
		fn := func() { n++ }
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			l.AfterFunc(time.Millisecond, fn)
			clk.Add(time.Millisecond)
			l.RunPending()
		}
		if n != b.N {
			b.Fatal(errors.New("timers lost"))
		}
	})
}

func manualB() (*Loop, *FakeClock) {
	clk := NewFakeClock(epoch)
	return NewManual(clk), clk
}
