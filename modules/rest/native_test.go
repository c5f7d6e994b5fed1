package rest_test

// A minimal reactor-native HTTP/1.1 GET, written only to measure the
// alternative design (see README, Design): what a client that speaks HTTP
// on the loop's own fds would save over net/http on a worker pool. It is
// not a client: plain HTTP, Content-Length bodies, no timeouts of its own.

import (
	"bytes"
	"errors"
	"fmt"
	"github.com/asyncsip/asyncsip/internal/testenv"
	"os"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/asyncsip/asyncsip/async"
	"github.com/asyncsip/asyncsip/reactor"
)

// nativeGet sends one fixed GET over keep-alive connections owned by one
// loop.
type nativeGet struct {
	sa   unix.SockaddrInet4
	req  []byte
	idle []int // connected sockets, not watched; used on the loop only
}

func newNativeGet(t testing.TB, base, path string) *nativeGet {
	host, ok := bytes.CutPrefix([]byte(base), []byte("http://127.0.0.1:"))
	port, err := strconv.Atoi(string(host))
	if !ok || err != nil {
		t.Fatalf("native: want http://127.0.0.1:PORT, got %q", base)
	}
	n := &nativeGet{sa: unix.SockaddrInet4{Port: port, Addr: [4]byte{127, 0, 0, 1}}}
	n.req = []byte("GET " + path + " HTTP/1.1\r\nHost: 127.0.0.1:" + string(host) + "\r\n\r\n")
	t.Cleanup(func() {
		for _, fd := range n.idle {
			unix.Close(fd)
		}
	})
	return n
}

func (n *nativeGet) op() async.Op[[]byte] {
	return async.OpFunc[[]byte](func(l *reactor.Loop, done func([]byte, error)) func() {
		x := &nativeReq{n: n, l: l, done: done, fd: -1}
		x.start()
		return x.close
	})
}

type nativeReq struct {
	n          *nativeGet
	l          *reactor.Loop
	done       func([]byte, error)
	fd         int
	connecting bool
	buf        []byte
}

func (x *nativeReq) start() {
	if k := len(x.n.idle); k > 0 {
		x.fd = x.n.idle[k-1]
		x.n.idle = x.n.idle[:k-1]
		x.send(false)
		return
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		x.fail(err)
		return
	}
	x.fd = fd
	_ = unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
	if err := unix.Connect(fd, &x.n.sa); err != nil && !errors.Is(err, unix.EINPROGRESS) {
		x.fail(err)
		return
	}
	x.connecting = true
	if err := x.l.Watch(fd, reactor.Writable, x.onEvent); err != nil {
		x.fail(err)
	}
}

func (x *nativeReq) send(watched bool) {
	if _, err := unix.Write(x.fd, x.n.req); err != nil { // a small request fits the socket buffer
		x.fail(err)
		return
	}
	var err error
	if watched {
		err = x.l.Modify(x.fd, reactor.Readable)
	} else {
		err = x.l.Watch(x.fd, reactor.Readable, x.onEvent)
	}
	if err != nil {
		x.fail(err)
	}
}

func (x *nativeReq) onEvent(fd int, _ reactor.Events) {
	if x.connecting {
		x.connecting = false
		if e, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR); err != nil || e != 0 {
			x.fail(fmt.Errorf("connect: %v %v", err, unix.Errno(e)))
			return
		}
		x.send(true)
		return
	}
	var b [4096]byte
	m, err := unix.Read(fd, b[:])
	if err != nil || m == 0 {
		if errors.Is(err, unix.EAGAIN) {
			return
		}
		x.fail(fmt.Errorf("read: %v (%d bytes)", err, m))
		return
	}
	x.buf = append(x.buf, b[:m]...)
	end := bytes.Index(x.buf, []byte("\r\n\r\n"))
	if end < 0 {
		return
	}
	head := bytes.ToLower(x.buf[:end])
	i := bytes.Index(head, []byte("\r\ncontent-length:"))
	if i < 0 {
		x.fail(errors.New("native: no Content-Length"))
		return
	}
	line := head[i+len("\r\ncontent-length:"):]
	if j := bytes.IndexByte(line, '\r'); j >= 0 {
		line = line[:j]
	}
	size, err := strconv.Atoi(string(bytes.TrimSpace(line)))
	if err != nil || len(x.buf) < end+4+size {
		return
	}
	body := x.buf[end+4 : end+4+size]
	_ = x.l.Unwatch(fd)
	x.n.idle = append(x.n.idle, fd)
	x.fd = -1
	x.done(body, nil)
}

func (x *nativeReq) fail(err error) {
	x.close()
	x.done(nil, err)
}

// close is the op's cancel: the connection is dropped.
func (x *nativeReq) close() {
	if x.fd >= 0 {
		_ = x.l.Unwatch(x.fd)
		unix.Close(x.fd)
		x.fd = -1
	}
}

// TestNativeGet checks the measuring tool itself against a real server.
func TestNativeGet(t *testing.T) {
	testenv.CheckFDs(t)
	ts := benchServerT(t)
	l := testenv.StartLoop(t)
	n := newNativeGet(t, ts.URL, "/target?user=bob")
	for range 3 { // the second and third reuse the connection
		o := run(t, l, n.op())
		if o.err != nil || string(o.v) != "127.0.0.1:5060" {
			t.Fatalf("native GET: %q, %v", o.v, o.err)
		}
	}
	if len(n.idle) != 1 {
		t.Fatalf("%d idle connections, want 1 (reused)", len(n.idle))
	}
}

// TestMeasureNativeCPU is TestMeasureClientCPU for the native GET.
func TestMeasureNativeCPU(t *testing.T) {
	if os.Getenv("ASYNCSIP_MEASURE") != "1" {
		t.Skip("a measurement: set ASYNCSIP_MEASURE=1 to run it")
	}
	const n, inFlight = 20000, 64
	base := startDelayServer(t, 0, "127.0.0.1:5060")
	l := testenv.StartLoop(t)
	ng := newNativeGet(t, base, "/target?user=bob")
	op := ng.op()
	run := func() {
		done := make(chan error, 1)
		left, pending := n, 0
		var next func()
		report := func(_ []byte, err error) {
			pending--
			if err != nil {
				done <- err
				return
			}
			next()
			if pending == 0 {
				done <- nil
			}
		}
		next = func() {
			if left > 0 {
				left--
				pending++
				async.Launch(l, op, report, async.Timeout(10*time.Second))
			}
		}
		l.Post(func() {
			for range inFlight {
				next()
			}
		})
		if err := testenv.Wait(t, 15*time.Second, done, "requests"); err != nil {
			t.Fatal(err)
		}
	}
	run()
	cpu0, t0 := cpuTime(), time.Now()
	run()
	cpu, wall := cpuTime()-cpu0, time.Since(t0)
	t.Logf("%-28s %6.1f µs CPU/request, %7.0f requests/s, load %s", "native GET on the loop",
		float64(cpu.Nanoseconds())/1e3/n, n/wall.Seconds(), loadAverage())
}
