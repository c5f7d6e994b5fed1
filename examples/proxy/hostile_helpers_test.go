package main

import (
	"bufio"
	"context"
	"database/sql"
	"fmt"
	"io"
	"net"
	"net/netip"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/asyncsip/asyncsip/modules/auth"
	"github.com/asyncsip/asyncsip/tm"
)

// Addresses of the hostile tests (all on loopback: 127.0.0.0/8 is local).
const (
	attackerIP = "127.0.0.1" // the attacker, untrusted
	gatewayIP  = "127.0.0.2" // the PSTN gateway (a relay target)
	victimIP   = "127.0.0.3" // a host the attacker wants flooded (a relay target)
	peerIP     = "127.0.0.4" // a trusted peer (-trusted)
	phoneIP    = "127.0.0.5" // legitimate users' phones, untrusted
)

// wait bounds every read of the hostile tests.
const wait = 5 * time.Second

// liveProxy is the example proxy served in-process (serve, as main runs
// it) on loopback UDP and TCP, with its log captured.
type liveProxy struct {
	cfg  Config
	udp  *net.UDPAddr
	tcp  *net.TCPAddr // nil when the flags named the listeners
	logs *logBuffer
	stop func() // stops the proxy and waits for it (also run at cleanup)
}

// startLive serves the proxy with one worker (so that a later request from
// any source is handled after an earlier one: the tests use that as a
// barrier to prove a silence) after setup has added users and gateways.
// It listens on udp: and tcp: 127.0.0.1 with ports of its own unless flags
// name the listeners (then the first one must be udp:).
func startLive(t *testing.T, setup func(cfg Config), flags ...string) *liveProxy {
	t.Helper()
	args := []string{"-data", t.TempDir(), "-workers", "1", "-log", "info"}
	if !slices.Contains(flags, "-listen") {
		args = append(args, "-listen", "udp:127.0.0.1:0", "-listen", "tcp:127.0.0.1:0")
	}
	args = append(args, flags...)
	cfg, rest, err := parseConfig(args)
	require.NoError(t, err)
	require.Empty(t, rest)
	for _, u := range [][2]string{{"alice", "alicepw"}, {"bob", "bobpw"}, {"mallory", "mallorypw"}} {
		require.NoError(t, runCLI(cfg, []string{"user", "add", u[0], u[1]}, io.Discard))
	}
	if setup != nil {
		setup(cfg)
	}
	lp := &liveProxy{cfg: cfg, logs: &logBuffer{}}
	banner := &bannerWriter{line: make(chan string, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serve(ctx, cfg, banner, lp.logs) }()
	var once sync.Once
	lp.stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				assert.NoError(t, err)
			case <-time.After(15 * time.Second):
				t.Error("the proxy did not stop within 15 s")
			}
		})
	}
	t.Cleanup(lp.stop)
	var line string
	select {
	case line = <-banner.line:
	case err := <-done:
		t.Fatalf("proxy stopped at start: %v", err)
	case <-time.After(15 * time.Second):
		t.Fatal("no banner from the proxy")
	}
	m := regexp.MustCompile(`udp:127\.0\.0\.1:(\d+)(, tcp:127\.0\.0\.1:(\d+))?`).FindStringSubmatch(line)
	require.NotNil(t, m, "banner: %s", line)
	up, _ := strconv.Atoi(m[1])
	lp.udp = &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: up}
	if m[3] != "" {
		tp, _ := strconv.Atoi(m[3])
		lp.tcp = &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: tp}
	}
	return lp
}

// addGateway adds a gateway for prefix at addr with the CLI's code.
func addGateway(t *testing.T, cfg Config, id int, addr, prefix string) {
	t.Helper()
	require.NoError(t, runCLI(cfg, []string{"gw", "add", strconv.Itoa(id), addr, "-prefix", prefix}, io.Discard))
}

// grep returns the log lines containing every one of subs.
func (lp *liveProxy) grep(subs ...string) []string {
	lp.logs.mu.Lock()
	defer lp.logs.mu.Unlock()
	var out []string
next:
	for _, l := range strings.Split(lp.logs.buf.String(), "\n") {
		for _, s := range subs {
			if !strings.Contains(l, s) {
				continue next
			}
		}
		out = append(out, l)
	}
	return out
}

// uri is a SIP URI of user at the proxy.
func (lp *liveProxy) uri(user string) string {
	return fmt.Sprintf("sip:%s@127.0.0.1:%d", user, lp.udp.Port)
}

// bannerWriter hands serve's first stdout line (the banner) to the test.
type bannerWriter struct {
	line chan string
	once sync.Once
}

func (w *bannerWriter) Write(p []byte) (int, error) {
	w.once.Do(func() { w.line <- string(p) })
	return len(p), nil
}

// inbound is one message a sock received.
type inbound struct {
	msg  sip.Message
	from *net.UDPAddr
}

// sock is a raw SIP endpoint on UDP: an attacker, a phone, a gateway or a
// victim. It counts every datagram it receives; with answer set it answers
// INVITEs with that code (and BYE with 200) by itself, as a gateway or a
// phone would.
type sock struct {
	t       *testing.T
	conn    *net.UDPConn
	user    string
	answer  int
	in      chan inbound
	packets atomic.Int64 // datagrams received (markers included)
	bytes   atomic.Int64
	markers atomic.Int64 // marker datagrams silence sent here, and their bytes
	mbytes  atomic.Int64
	sent    atomic.Int64 // datagrams sent, and their bytes
	sbytes  atomic.Int64
	invites atomic.Int64
	seq     atomic.Int64
}

// received returns the datagrams (and bytes) s received, markers left out.
func (s *sock) received() (int64, int64) {
	return s.packets.Load() - s.markers.Load(), s.bytes.Load() - s.mbytes.Load()
}

func newSock(t *testing.T, ip, user string, answer int) *sock {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP(ip)})
	require.NoError(t, err)
	s := &sock{t: t, conn: c, user: user, answer: answer, in: make(chan inbound, 8192)}
	done := make(chan struct{})
	go s.read(done)
	t.Cleanup(func() { c.Close(); <-done })
	return s
}

func (s *sock) addr() netip.AddrPort { return s.conn.LocalAddr().(*net.UDPAddr).AddrPort() }

func (s *sock) hostport() string { return s.addr().String() }

func (s *sock) contact() string { return "sip:" + s.user + "@" + s.hostport() }

func (s *sock) read(done chan struct{}) {
	defer close(done)
	buf := make([]byte, 65535)
	for {
		n, from, err := s.conn.ReadFromUDP(buf)
		if err != nil {
			return
		}
		s.packets.Add(1)
		s.bytes.Add(int64(n))
		m, err := sip.ParseMessage(append([]byte(nil), buf[:n]...))
		if err != nil {
			continue
		}
		select { // before answering: the test may look once the answer is out
		case s.in <- inbound{m, from}:
		default:
		}
		if req, ok := m.(*sip.Request); ok {
			if req.Method == sip.INVITE {
				s.invites.Add(1)
			}
			if s.answer != 0 {
				switch req.Method {
				case sip.INVITE:
					s.reply(req, from, s.answer)
				case sip.BYE, sip.OPTIONS:
					s.reply(req, from, 200)
				}
			}
		}
	}
}

// reply answers req (received from `from`) with code.
func (s *sock) reply(req *sip.Request, from *net.UDPAddr, code int) {
	var b strings.Builder
	b.WriteString("SIP/2.0 " + strconv.Itoa(code) + " " + tm.StatusText(code) + "\r\n")
	for _, h := range req.GetHeaders("Via") {
		b.WriteString(h.String() + "\r\n")
	}
	for _, h := range req.GetHeaders("Record-Route") {
		b.WriteString(h.String() + "\r\n")
	}
	b.WriteString(req.From().String() + "\r\n")
	to := req.To().String()
	if !strings.Contains(to, "tag=") {
		to += ";tag=uas-" + s.user
	}
	b.WriteString(to + "\r\n" + req.CallID().String() + "\r\n" + req.CSeq().String() + "\r\n")
	b.WriteString("Contact: <" + s.contact() + ">\r\nContent-Length: 0\r\n\r\n")
	_, _ = s.conn.WriteToUDP([]byte(b.String()), from)
}

func (s *sock) send(msg string, to *net.UDPAddr) {
	s.t.Helper()
	_, err := s.conn.WriteToUDP([]byte(msg), to)
	require.NoError(s.t, err)
	s.sent.Add(1)
	s.sbytes.Add(int64(len(msg)))
}

// next returns the next message, skipping 100 Trying; ok is false after
// wait without one.
func (s *sock) next() (inbound, bool) {
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		select {
		case m := <-s.in:
			if r, ok := m.msg.(*sip.Response); ok && r.StatusCode == 100 {
				continue
			}
			return m, true
		case <-timer.C:
			return inbound{}, false
		}
	}
}

// final returns the next final response for callID (provisional responses
// and other calls' messages are skipped).
func (s *sock) final(callID string) *sip.Response {
	s.t.Helper()
	deadline := time.Now().Add(wait)
	for time.Now().Before(deadline) {
		m, ok := s.next()
		if !ok {
			break
		}
		if r, isResp := m.msg.(*sip.Response); isResp && r.StatusCode >= 200 && string(*r.CallID()) == callID {
			return r
		}
	}
	s.t.Fatalf("%s: no final response for %s within %v", s.user, callID, wait)
	return nil
}

// request returns the next request received, failing after wait.
func (s *sock) request() (*sip.Request, *net.UDPAddr) {
	s.t.Helper()
	for {
		m, ok := s.next()
		require.True(s.t, ok, "%s: no request within %v", s.user, wait)
		if r, isReq := m.msg.(*sip.Request); isReq {
			return r, m.from
		}
	}
}

// msg is a request built by hand, the way an attacker writes one.
type msg struct {
	method, ruri   string
	proto          string         // Via transport (UDP by default)
	local          netip.AddrPort // Via sent-by
	from, fromTag  string         // From user and tag
	to, toTag      string         // To URI and tag
	callID, branch string
	cseq           int
	contacts       []string // Contact values (without <>)
	expires        int      // Expires header when > 0 or for REGISTER
	headers        []string // extra "Name: value" lines
	domainHost     string   // host of From (default 127.0.0.1)
}

func (m msg) String() string {
	proto := m.proto
	if proto == "" {
		proto = "UDP"
	}
	branch := m.branch
	if branch == "" {
		branch = "z9hG4bK" + strconv.FormatInt(time.Now().UnixNano(), 36)
	}
	host := m.domainHost
	if host == "" {
		host = "127.0.0.1"
	}
	to := m.to
	if to == "" {
		to = m.ruri
	}
	var b strings.Builder
	line := func(s string) { b.WriteString(s + "\r\n") }
	line(m.method + " " + m.ruri + " SIP/2.0")
	line(fmt.Sprintf("Via: SIP/2.0/%s %s;branch=%s;rport", proto, m.local, branch))
	line("Max-Forwards: 70")
	line(fmt.Sprintf("From: <sip:%s@%s>;tag=%s", m.from, host, cmpOr(m.fromTag, "f-"+m.callID)))
	if m.toTag != "" {
		line(fmt.Sprintf("To: <%s>;tag=%s", to, m.toTag))
	} else {
		line("To: <" + to + ">")
	}
	line("Call-ID: " + m.callID)
	line(fmt.Sprintf("CSeq: %d %s", max(m.cseq, 1), m.method))
	if len(m.contacts) > 0 {
		parts := make([]string, len(m.contacts))
		for i, c := range m.contacts {
			parts[i] = "<" + c + ">"
		}
		line("Contact: " + strings.Join(parts, ", "))
	}
	if m.method == "REGISTER" {
		line("Expires: " + strconv.Itoa(cmpOrInt(m.expires, 600)))
	}
	for _, h := range m.headers {
		line(h)
	}
	line("Content-Length: 0")
	line("")
	return b.String()
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func cmpOrInt(a, b int) int {
	if a != 0 {
		return a
	}
	return b
}

// digestFor answers the challenge in resp (WWW- or Proxy-Authenticate) as
// user with password for method and uri, with nonce-count nc, and returns
// the header line to add ("Authorization: Digest …").
func digestFor(t *testing.T, resp *sip.Response, user, password, method, uri string, nc int) string {
	t.Helper()
	name, hdr := "Authorization", "WWW-Authenticate"
	if resp.StatusCode == 407 {
		name, hdr = "Proxy-Authorization", "Proxy-Authenticate"
	}
	chs := resp.GetHeaders(hdr)
	require.NotEmpty(t, chs, "a %d with %s: %s", resp.StatusCode, hdr, resp.String())
	v := chs[0].Value()
	alg := auth.Algorithm(param(v, "algorithm"))
	realm := param(v, "realm")
	ha1, err := auth.HA1(alg, user, realm, password)
	require.NoError(t, err)
	cred := auth.Credentials{Username: user, Realm: realm, Nonce: param(v, "nonce"), URI: uri,
		Algorithm: alg, QOP: "auth", NC: fmt.Sprintf("%08x", nc), CNonce: "0a4f113b"}
	cred.Response, err = auth.Response(cred, method, ha1)
	require.NoError(t, err)
	return name + ": " + cred.String()
}

// callAs places an authenticated call from s (as user) to ruri over UDP:
// INVITE, 407, ACK, INVITE with credentials. It returns the second
// INVITE's Call-ID; its responses are left in s.
func (s *sock) callAs(lp *liveProxy, user, password, ruri, callID string, extra ...string) {
	s.t.Helper()
	m := msg{method: "INVITE", ruri: ruri, local: s.addr(), from: user, callID: callID, contacts: []string{s.contact()}, headers: extra}
	s.send(m.String(), lp.udp)
	r := s.final(callID)
	require.Equal(s.t, 407, r.StatusCode, "the call is challenged: %s", r.String())
	s.ackFinal(r, lp.udp)
	m.cseq, m.branch = 2, ""
	m.headers = append(append([]string(nil), extra...), digestFor(s.t, r, user, password, "INVITE", ruri, 1))
	s.send(m.String(), lp.udp)
}

// ackFinal sends the hop-by-hop ACK of a non-2xx final response.
func (s *sock) ackFinal(r *sip.Response, to *net.UDPAddr) {
	s.t.Helper()
	var b strings.Builder
	b.WriteString("ACK " + r.To().Address.String() + " SIP/2.0\r\n")
	b.WriteString(r.Via().String() + "\r\n")
	b.WriteString("Max-Forwards: 70\r\n" + r.From().String() + "\r\n" + r.To().String() + "\r\n")
	b.WriteString(r.CallID().String() + "\r\n")
	b.WriteString(fmt.Sprintf("CSeq: %d ACK\r\n", r.CSeq().SeqNo))
	b.WriteString("Content-Length: 0\r\n\r\n")
	s.send(b.String(), to)
}

// registerAs registers contacts for user from s (401, then credentials)
// and returns the final response.
func (s *sock) registerAs(lp *liveProxy, user, password string, contacts ...string) *sip.Response {
	s.t.Helper()
	callID := fmt.Sprintf("reg-%s-%d-%d", user, s.addr().Port(), s.seq.Add(1))
	m := msg{method: "REGISTER", ruri: "sip:127.0.0.1", to: "sip:" + user + "@127.0.0.1", local: s.addr(),
		from: user, callID: callID, contacts: contacts}
	s.send(m.String(), lp.udp)
	r := s.final(callID)
	if r.StatusCode != 401 {
		return r
	}
	m.cseq, m.branch = 2, ""
	m.headers = []string{digestFor(s.t, r, user, password, "REGISTER", "sip:127.0.0.1", 1)}
	s.send(m.String(), lp.udp)
	return s.final(callID)
}

// barrier sends an OPTIONS keep-alive to the proxy from a fresh socket on
// phoneIP and waits for its 200: with one worker, every request sent to
// the proxy before it has been handled by then (a silence is then a
// refusal, not a delay). Like a UA it retransmits (every 500 ms, RFC 3261
// Timer E): after a burst the proxy's socket buffer may have dropped it.
func barrier(t *testing.T, lp *liveProxy) {
	t.Helper()
	b := newSock(t, phoneIP, "barrier", 0)
	callID := fmt.Sprintf("barrier-%d", time.Now().UnixNano())
	opts := msg{method: "OPTIONS", ruri: "sip:127.0.0.1", local: b.addr(), from: "barrier", callID: callID,
		branch: "z9hG4bK-" + callID}.String()
	deadline := time.Now().Add(3 * wait)
	for time.Now().Before(deadline) {
		b.send(opts, lp.udp)
		select {
		case in := <-b.in:
			if r, ok := in.msg.(*sip.Response); ok && r.StatusCode == 200 && string(*r.CallID()) == callID {
				return
			}
		case <-time.After(500 * time.Millisecond):
		}
	}
	t.Fatalf("barrier: no 200 for %s within %v", callID, 3*wait)
}

// tcpConn is a raw SIP client on TCP from a chosen loopback address.
type tcpConn struct {
	t    *testing.T
	conn net.Conn
	r    *bufio.Reader
}

func dialTCP(t *testing.T, ip string, lp *liveProxy) *tcpConn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: wait}
	c, err := d.Dial("tcp", lp.tcp.String())
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	return &tcpConn{t: t, conn: c, r: bufio.NewReaderSize(c, 1<<16)}
}

func (c *tcpConn) addr() netip.AddrPort { return c.conn.LocalAddr().(*net.TCPAddr).AddrPort() }

func (c *tcpConn) send(m string) {
	c.t.Helper()
	require.NoError(c.t, c.conn.SetWriteDeadline(time.Now().Add(wait)))
	_, err := c.conn.Write([]byte(m))
	require.NoError(c.t, err)
}

// final reads responses until a final one.
func (c *tcpConn) final() *sip.Response {
	c.t.Helper()
	for {
		r := readTCPResponse(c.t, c.conn, c.r)
		if r.StatusCode >= 200 {
			return r
		}
	}
}

// silence returns what s received from the proxy so far, proven complete:
// after a barrier (every request sent before it was handled, and whatever
// the proxy sent s because of them was sent) a marker datagram goes to s,
// and everything s read before the marker is returned. A test expecting
// silence expects none.
func (s *sock) silence(lp *liveProxy) []sip.Message {
	s.t.Helper()
	barrier(s.t, lp)
	m := newSock(s.t, phoneIP, "marker", 0)
	id := fmt.Sprintf("marker-%d", time.Now().UnixNano())
	marker := msg{method: "OPTIONS", ruri: "sip:" + s.hostport(), local: m.addr(), from: "marker", callID: id}.String()
	s.markers.Add(1)
	s.mbytes.Add(int64(len(marker)))
	m.send(marker, s.conn.LocalAddr().(*net.UDPAddr))
	var got []sip.Message
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		select {
		case in := <-s.in:
			if r, ok := in.msg.(*sip.Request); ok && string(*r.CallID()) == id {
				return got
			}
			got = append(got, in.msg)
		case <-timer.C:
			s.t.Fatalf("%s: the marker did not arrive within %v", s.user, wait)
			return nil
		}
	}
}

// callIDs returns the Call-IDs of the requests of method among ms.
func callIDs(ms []sip.Message, method sip.RequestMethod) []string {
	var out []string
	for _, m := range ms {
		if r, ok := m.(*sip.Request); ok && r.Method == method {
			out = append(out, string(*r.CallID()))
		}
	}
	return out
}

// bindings counts the live bindings of user in the proxy's SQLite file.
func (lp *liveProxy) bindings(t *testing.T, user string) int {
	t.Helper()
	db, err := sql.Open("sqlite", filepath.Join(lp.cfg.DataDir, "proxy.db"))
	require.NoError(t, err)
	defer db.Close()
	var n int
	require.NoError(t, db.QueryRow(`SELECT count(*) FROM location WHERE username = ? AND expires_at > ?`,
		user, time.Now().Unix()).Scan(&n))
	return n
}
