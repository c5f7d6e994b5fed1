package rtpenginetest

import (
	"bytes"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asyncsip/asyncsip/modules/rtpengine"
)

// Server is a fake rtpengine ng server on 127.0.0.1 (UDP), for tests of
// rtpengine.Client: it keeps calls as Fake does, answers a retransmitted
// cookie from its cache as rtpengine does, and can be told to stay silent,
// to ignore the first datagrams, to answer late, or with garbage. One
// goroutine reads its socket; Close (also run at test cleanup) stops it.
type Server struct {
	*calls
	// Addr is the ng address, "udp:127.0.0.1:port", for rtpengine.Instance.
	Addr string

	conn      *net.UDPConn
	silent    atomic.Bool
	ignore    atomic.Int64
	delay     atomic.Int64
	garbage   atomic.Int64
	received  atomic.Int64
	cacheMu   sync.Mutex
	cache     map[string][]byte
	done      chan struct{}
	closeOnce sync.Once
}

// NewServer starts a fake ng server on 127.0.0.1 with an ephemeral port.
func NewServer(t testing.TB) *Server {
	t.Helper()
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{calls: newCalls("127.0.0.1"), conn: conn, cache: map[string][]byte{}, done: make(chan struct{})}
	s.Addr = "udp:" + conn.LocalAddr().String()
	go s.serve()
	t.Cleanup(s.Close)
	return s
}

// SetSilent makes the server read and drop every datagram (true), as a
// dead or overloaded rtpengine would, or answer again (false).
func (s *Server) SetSilent(on bool) { s.silent.Store(on) }

// Ignore makes the server drop the next n datagrams (retransmissions are
// datagrams too).
func (s *Server) Ignore(n int) { s.ignore.Store(int64(n)) }

// SetDelay delays every answer by d.
func (s *Server) SetDelay(d time.Duration) { s.delay.Store(int64(d)) }

// Garbage makes the server answer the next n datagrams with their cookie
// and a body that is not bencode.
func (s *Server) Garbage(n int) { s.garbage.Store(int64(n)) }

// Received returns the number of datagrams received.
func (s *Server) Received() int { return int(s.received.Load()) }

// Commands returns the commands handled (not those dropped), in order;
// a retransmission answered from the cache is not a new command.
func (s *Server) Commands() []Command { return s.calls.Commands() }

// Live returns the number of calls offered and not deleted.
func (s *Server) Live() int { return s.calls.Live() }

// Has reports whether the call callID is live here.
func (s *Server) Has(callID string) bool { return s.calls.Has(callID) }

// Refuse makes the next command named command be refused with reason.
func (s *Server) Refuse(command, reason string) { s.calls.Refuse(command, reason) }

// Close stops the server.
func (s *Server) Close() {
	s.closeOnce.Do(func() {
		_ = s.conn.Close()
		<-s.done
	})
}

func (s *Server) serve() {
	defer close(s.done)
	buf := make([]byte, 65536)
	for {
		n, from, err := s.conn.ReadFromUDP(buf)
		if err != nil {
			return
		}
		s.received.Add(1)
		if s.silent.Load() || s.ignore.Add(-1) >= 0 {
			continue
		}
		s.ignore.Store(0)
		reply := s.answer(buf[:n])
		if reply == nil {
			continue
		}
		if d := time.Duration(s.delay.Load()); d > 0 {
			time.AfterFunc(d, func() { _, _ = s.conn.WriteToUDP(reply, from) })
			continue
		}
		_, _ = s.conn.WriteToUDP(reply, from)
	}
}

// answer builds the reply datagram for one request datagram.
func (s *Server) answer(b []byte) []byte {
	sp := bytes.IndexByte(b, ' ')
	if sp <= 0 {
		return nil
	}
	cookie := string(b[:sp])
	if s.garbage.Add(-1) >= 0 {
		return append([]byte(cookie), " not bencode"...)
	}
	s.garbage.Store(0)
	s.cacheMu.Lock()
	cached := s.cache[cookie]
	s.cacheMu.Unlock()
	if cached != nil {
		return cached
	}
	v, err := rtpengine.Decode(b[sp+1:])
	dict, ok := v.(map[string]any)
	if err != nil || !ok {
		return nil
	}
	cmd := Command{Dict: dict}
	cmd.Name, _ = dict["command"].(string)
	cmd.Call.CallID, _ = dict["call-id"].(string)
	cmd.Call.FromTag, _ = dict["from-tag"].(string)
	cmd.Call.ToTag, _ = dict["to-tag"].(string)
	cmd.Call.ViaBranch, _ = dict["via-branch"].(string)
	if sdp, ok := dict["sdp"].(string); ok {
		cmd.SDP = []byte(sdp)
	}
	out, err := rtpengine.Encode(append([]byte(cookie), ' '), s.handle(cmd))
	if err != nil {
		return nil
	}
	s.cacheMu.Lock()
	s.cache[cookie] = out
	s.cacheMu.Unlock()
	return out
}
