package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/asyncsip/asyncsip"
	"github.com/asyncsip/asyncsip/internal/e2e/e2etest"
	"github.com/asyncsip/asyncsip/tm"
	"github.com/asyncsip/asyncsip/transport"
)

// benchServer starts a 2-worker server whose route answers every OPTIONS
// 200, with one listener per transport.
func benchServer(b *testing.B, stream transport.StreamConfig) *asyncsip.Server {
	b.Helper()
	srv, err := asyncsip.New(asyncsip.Config{
		Listen:  []string{"udp:127.0.0.1:0", "tcp:127.0.0.1:0", "ws:127.0.0.1:0"},
		Workers: 2, Stream: stream, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		b.Fatal(err)
	}
	srv.Request(func(c *tm.Context) { _ = c.Reply(200, "OK") })
	if err := srv.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	})
	return srv
}

// state describes the server's counters when a benchmark client fails.
func state(srv *asyncsip.Server) func() string {
	return func() string { return fmt.Sprintf("%+v %+v", srv.StreamStats(), srv.Stats()) }
}

// window is how many requests a benchmark client keeps outstanding.
const window = 32

// BenchmarkTransportOptions measures OPTIONS answered 200 through the real
// server, one op per request and its response, each client keeping
// `window` requests in flight: over UDP, over TCP with 1 and 64
// connections (goroutine per connection posting to the loops), and over
// one WebSocket connection.
func BenchmarkTransportOptions(b *testing.B) {
	b.Run("udp", func(b *testing.B) {
		srv := benchServer(b, transport.StreamConfig{})
		c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(srv.Addrs()[0]))
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		port := c.LocalAddr().(*net.UDPAddr).Port
		buf := make([]byte, 4096)
		b.ResetTimer()
		for sent, got := 0, 0; got < b.N; {
			for sent < b.N && sent-got < window {
				_, _ = c.Write([]byte(e2etest.Request("OPTIONS", "sip:127.0.0.1", "UDP", port, "bu-"+strconv.Itoa(sent), "")))
				sent++
			}
			_ = c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
			if _, err := c.Read(buf); err != nil {
				sent = got // lost: send again
				continue
			}
			got++
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
	})
	for _, conns := range []int{1, 64} {
		b.Run("tcp/conns="+strconv.Itoa(conns), func(b *testing.B) {
			srv := benchServer(b, transport.StreamConfig{MaxConnsPerIP: 1000})
			var wg sync.WaitGroup
			per := (b.N + conns - 1) / conns
			b.ResetTimer()
			for k := 0; k < conns; k++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					streamClientRun(b, "tcp", srv.Addrs()[1].String(), k, per, state(srv))
				}()
			}
			wg.Wait()
			b.ReportMetric(float64(per*conns)/b.Elapsed().Seconds(), "req/s")
		})
	}
	b.Run("ws", func(b *testing.B) {
		srv := benchServer(b, transport.StreamConfig{})
		b.ResetTimer()
		streamClientRun(b, "ws", srv.Addrs()[2].String(), 0, b.N, state(srv))
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
	})
}

// streamClientRun sends n OPTIONS on one connection, window at a time,
// and reads their responses.
func streamClientRun(b *testing.B, kind, addr string, id, n int, state func() string) {
	nc, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		b.Error(err)
		return
	}
	defer nc.Close()
	_ = nc.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(nc)
	port := nc.LocalAddr().(*net.TCPAddr).Port
	ws := kind == "ws"
	if ws {
		_, _ = io.WriteString(nc, "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
			"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: sip\r\n\r\n")
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				b.Error(err)
				return
			}
			if line == "\r\n" {
				break
			}
		}
	}
	var out []byte
	for sent := 0; sent < n; {
		out = out[:0]
		w := min(window, n-sent)
		for i := 0; i < w; i++ {
			m := e2etest.Request("OPTIONS", "sip:127.0.0.1", "TCP", port, "bt-"+strconv.Itoa(id)+"-"+strconv.Itoa(sent+i), "")
			if ws {
				out = append(out, maskedFrame([]byte(m))...)
			} else {
				out = append(out, m...)
			}
		}
		if _, err := nc.Write(out); err != nil {
			b.Error(err)
			return
		}
		for i := 0; i < w; i++ {
			if err := skipMessage(br, ws); err != nil {
				b.Errorf("%v after %d requests; server: %s", err, sent+i, state())
				return
			}
		}
		sent += w
	}
}

// maskedFrame is one final masked text frame (mask 0: the XOR is a no-op,
// which is valid and keeps the client cheap).
func maskedFrame(p []byte) []byte {
	f := []byte{0x81}
	if len(p) < 126 {
		f = append(f, 0x80|byte(len(p)))
	} else {
		f = append(f, 0x80|126, byte(len(p)>>8), byte(len(p)))
	}
	f = append(f, 0, 0, 0, 0)
	return append(f, p...)
}

// skipMessage reads one response: a WebSocket frame, or a header section
// and its Content-Length body.
func skipMessage(br *bufio.Reader, ws bool) error {
	if ws {
		var h [2]byte
		if _, err := io.ReadFull(br, h[:]); err != nil {
			return err
		}
		n := int(h[1] & 0x7f)
		if n == 126 {
			var l [2]byte
			if _, err := io.ReadFull(br, l[:]); err != nil {
				return err
			}
			n = int(l[0])<<8 | int(l[1])
		}
		_, err := br.Discard(n)
		return err
	}
	cl := 0
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return err
		}
		if line == "\r\n" {
			break
		}
		if len(line) > 15 && (line[:15] == "Content-Length:") {
			cl, _ = strconv.Atoi(string(trimSpace(line[15:])))
		}
	}
	_, err := br.Discard(cl)
	return err
}

func trimSpace(s string) string {
	for len(s) > 0 && (s[0] == ' ' || s[0] == '\t') {
		s = s[1:]
	}
	for len(s) > 0 && (s[len(s)-1] == '\n' || s[len(s)-1] == '\r' || s[len(s)-1] == ' ') {
		s = s[:len(s)-1]
	}
	return s
}

// BenchmarkIdleConnections opens 1000 idle TCP connections and reports
// what each costs the process (heap + goroutine stacks) and in goroutines.
func BenchmarkIdleConnections(b *testing.B) {
	const n = 1000
	for i := 0; i < b.N; i++ {
		srv := benchServer(b, transport.StreamConfig{MaxConnsPerIP: 2 * n})
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		g0 := runtime.NumGoroutine()
		conns := make([]net.Conn, 0, n)
		for k := 0; k < n; k++ {
			c, err := net.Dial("tcp", srv.Addrs()[1].String())
			if err != nil {
				b.Fatal(err)
			}
			conns = append(conns, c)
		}
		deadline := time.Now().Add(5 * time.Second)
		for srv.StreamStats().Open < n && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		g1 := runtime.NumGoroutine()
		mem := (after.HeapInuse + after.StackInuse) - (before.HeapInuse + before.StackInuse)
		b.ReportMetric(float64(mem)/n, "B/conn")
		b.ReportMetric(float64(g1-g0)/n, "goroutines/conn")
		for _, c := range conns {
			_ = c.Close()
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = srv.Shutdown(ctx)
		cancel()
	}
}
