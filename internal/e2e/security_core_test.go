package e2e

// Hostile tests of the core's trust boundaries (issue 18, rows 2, 9, 10, 11
// and 13; row 12 is in security_flood_test.go). Each starts the real server
// on 127.0.0.1 and plays the attacker with raw UDP sockets on other loopback
// addresses (127.0.0.9 the attacker, 127.0.0.3 the host it wants traffic
// sent to), and shows the attack failing and a legitimate call next to it
// still working. Every wait is bounded; the "nothing arrived" checks come
// after the server's own answer (or its drop counter) proves the attack was
// handled.

import (
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/asyncsip/asyncsip"
	"github.com/asyncsip/asyncsip/internal/testenv"
	"github.com/asyncsip/asyncsip/tm"
)

// secWait bounds every wait for a message or a counter.
const secWait = 5 * time.Second

// secQuiet is how long a host that must receive nothing is watched once the
// server has handled the attack: long enough for a late send (the 200 ms
// 100 Trying bound of RFC 3261 §17.2.1, a retransmission at T1) to show.
const secQuiet = 600 * time.Millisecond

// secPeer is a raw UDP socket on a loopback address playing one host in a
// hostile test: a UA, the attacker or a host the attacker wants to reach.
// It keeps every datagram it receives.
type secPeer struct {
	t    testing.TB
	conn *net.UDPConn
	addr netip.AddrPort
	mu   sync.Mutex
	log  []string
	cur  int // next message of log that waitFor examines
	done chan struct{}
}

func newSecPeer(t testing.TB, ip string) *secPeer {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP(ip)})
	require.NoError(t, err, "listen on %s (loopback /8)", ip)
	p := &secPeer{t: t, conn: c, addr: c.LocalAddr().(*net.UDPAddr).AddrPort(), done: make(chan struct{})}
	go p.read()
	t.Cleanup(func() { _ = c.Close(); <-p.done })
	return p
}

func (p *secPeer) read() {
	defer close(p.done)
	buf := make([]byte, 65536)
	for {
		n, err := p.conn.Read(buf)
		if err != nil {
			return
		}
		p.mu.Lock()
		p.log = append(p.log, string(buf[:n]))
		p.mu.Unlock()
	}
}

// uri is a SIP URI of user at this peer.
func (p *secPeer) uri(user string) string { return "sip:" + user + "@" + p.addr.String() }

// send writes msg (lines ending in \n) to the server with CRLF line ends.
func (p *secPeer) send(to netip.AddrPort, msg string) {
	p.t.Helper()
	msg = strings.ReplaceAll(strings.ReplaceAll(msg, "\r\n", "\n"), "\n", "\r\n")
	_, err := p.conn.WriteToUDPAddrPort([]byte(msg), to)
	require.NoError(p.t, err)
}

// waitFor returns the next message, after those already examined, whose
// first line starts with first and that contains each of has; the messages
// skipped stay in the log (see received).
func (p *secPeer) waitFor(first string, has ...string) string {
	p.t.Helper()
	var found string
	ok := testenv.Poll(secWait, func() bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		for ; p.cur < len(p.log); p.cur++ {
			m := p.log[p.cur]
			if strings.HasPrefix(m, first) && containsAll(m, has) {
				p.cur++
				found = m
				return true
			}
		}
		return false
	})
	require.True(p.t, ok, "%s: no %q %q within %v; received:\n%s", p.addr, first, has, secWait, strings.Join(p.received(), "\n--\n"))
	return found
}

// received returns every message received so far.
func (p *secPeer) received() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.log...)
}

// count returns how many received messages start with first and contain
// each of has.
func (p *secPeer) count(first string, has ...string) int {
	n := 0
	for _, m := range p.received() {
		if strings.HasPrefix(m, first) && containsAll(m, has) {
			n++
		}
	}
	return n
}

// requireSilent fails when anything reaches p within secQuiet.
func (p *secPeer) requireSilent(why string) {
	p.t.Helper()
	if testenv.Poll(secQuiet, func() bool { return len(p.received()) > 0 }) {
		p.t.Fatalf("%s: %s received:\n%s", why, p.addr, strings.Join(p.received(), "\n--\n"))
	}
}

func containsAll(m string, has []string) bool {
	for _, h := range has {
		if !strings.Contains(m, h) {
			return false
		}
	}
	return true
}

// secRequest builds a request from p: toTag "" makes an initial request;
// extra holds more header lines (Route, User-Agent), each ending in \n.
func secRequest(p *secPeer, method, ruri, callID, branch, toTag string, cseq int, extra string) string {
	to := "<" + ruri + ">"
	if toTag != "" {
		to += ";tag=" + toTag
	}
	return fmt.Sprintf("%s %s SIP/2.0\nVia: SIP/2.0/UDP %s;branch=%s;rport\nMax-Forwards: 70\n"+
		"From: <sip:alice@%s>;tag=a-%s\nTo: %s\nCall-ID: %s\nCSeq: %d %s\nContact: <%s>\n%sContent-Length: 0\n\n",
		method, ruri, p.addr, branch, p.addr.Addr(), callID, to, callID, cseq, method, p.uri("alice"), extra)
}

// secResponse answers req (as received): its Vias, From, Call-ID, CSeq and
// Record-Route copied, To given toTag when it has none, Contact added.
func secResponse(req string, code int, toTag, contact string) string {
	head, _, _ := strings.Cut(req, "\r\n\r\n")
	lines := strings.Split(head, "\r\n")
	var b strings.Builder
	fmt.Fprintf(&b, "SIP/2.0 %d %s\n", code, secReason(code))
	for _, l := range lines[1:] {
		name, _, _ := strings.Cut(l, ":")
		switch strings.ToLower(strings.TrimSpace(name)) {
		case "via", "v", "from", "f", "call-id", "i", "cseq", "record-route":
			b.WriteString(l + "\n")
		case "to", "t":
			if toTag != "" && !strings.Contains(l, ";tag=") {
				l += ";tag=" + toTag
			}
			b.WriteString(l + "\n")
		}
	}
	if contact != "" {
		b.WriteString("Contact: <" + contact + ">\n")
	}
	b.WriteString("Content-Length: 0\n\n")
	return b.String()
}

func secReason(code int) string {
	switch code {
	case 180:
		return "Ringing"
	case 200:
		return "OK"
	case 486:
		return "Busy Here"
	}
	return "Status"
}

// secHeaders returns the values of every header line called name.
func secHeaders(msg, name string) []string {
	head, _, _ := strings.Cut(msg, "\r\n\r\n")
	var out []string
	for _, l := range strings.Split(head, "\r\n")[1:] {
		n, v, ok := strings.Cut(l, ":")
		if ok && strings.EqualFold(strings.TrimSpace(n), name) {
			out = append(out, strings.TrimSpace(v))
		}
	}
	return out
}

// secBranch returns the branch of the top Via of msg.
func secBranch(msg string) string {
	vias := secHeaders(msg, "Via")
	if len(vias) == 0 {
		return ""
	}
	m := regexp.MustCompile(`;branch=([^;,\s]+)`).FindStringSubmatch(vias[0])
	if m == nil {
		return ""
	}
	return m[1]
}

// secRoutes turns the Record-Route of a 2xx received by the caller into
// the Route lines of the caller's in-dialog requests (RFC 3261 §12.1.2:
// in reverse order).
func secRoutes(resp string) string {
	var vals []string
	for _, v := range secHeaders(resp, "Record-Route") {
		vals = append(vals, strings.Split(v, ",")...)
	}
	var b strings.Builder
	for i := len(vals) - 1; i >= 0; i-- {
		b.WriteString("Route: " + strings.TrimSpace(vals[i]) + "\n")
	}
	return b.String()
}

// secDialog is a call set up through the proxy by secCall.
type secDialog struct {
	callID string
	routes string // the caller's Route lines (signed Record-Route)
	target string // the callee's Contact
	invite string // the INVITE as the callee received it
}

// secCall sets up a call caller → proxy → callee (100, 200, ACK along the
// Record-Route) and returns it.
func secCall(t testing.TB, srv netip.AddrPort, caller, callee *secPeer, callID string) secDialog {
	t.Helper()
	caller.send(srv, secRequest(caller, "INVITE", "sip:bob@"+srv.String(), callID, "z9hG4bK-"+callID, "", 1, ""))
	caller.waitFor("SIP/2.0 100", "Call-ID: "+callID)
	inv := callee.waitFor("INVITE ", "Call-ID: "+callID)
	callee.send(srv, secResponse(inv, 200, "b-"+callID, callee.uri("bob")))
	ok := caller.waitFor("SIP/2.0 200", "Call-ID: "+callID, "INVITE")
	d := secDialog{callID: callID, routes: secRoutes(ok), target: callee.uri("bob"), invite: inv}
	require.Contains(t, d.routes, ";sig=", "our Record-Route is signed")
	caller.send(srv, secRequest(caller, "ACK", d.target, callID, "z9hG4bK-ack-"+callID, "b-"+callID, 1, d.routes))
	callee.waitFor("ACK ", "Call-ID: "+callID)
	return d
}

// bye ends d from the caller's side along its signed Route: the callee
// gets the BYE and its 200 reaches the caller.
func (d secDialog) bye(srv netip.AddrPort, caller, callee *secPeer) {
	caller.send(srv, secRequest(caller, "BYE", d.target, d.callID, "z9hG4bK-bye-"+d.callID, "b-"+d.callID, 2, d.routes))
	bye := callee.waitFor("BYE ", "Call-ID: "+d.callID)
	callee.send(srv, secResponse(bye, 200, "", ""))
	caller.waitFor("SIP/2.0 200", "Call-ID: "+d.callID, "BYE")
}

// secProxy starts the server with route as its request route and returns
// it with its address.
func secProxy(t testing.TB, cfg asyncsip.Config, route func(c *tm.Context)) (*asyncsip.Server, netip.AddrPort) {
	t.Helper()
	p := startProxy(t, cfg, tm.Routes{Request: route})
	return p.srv, p.srv.Addrs()[0]
}

// callIDs records the Call-IDs a route saw.
type callIDs struct {
	mu sync.Mutex
	m  map[string]int
}

func (s *callIDs) add(c *tm.Context) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = map[string]int{}
	}
	if id := c.Req().CallID(); id != nil {
		s.m[string(*id)]++
	}
}

func (s *callIDs) seen(id string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.m[id]
}

// Row 2: requests with a To tag but without our signed Record-Route —
// INVITE, BYE, OPTIONS to sip:x@127.0.0.3, without a Route or with a signed
// Route copied from another dialog — are refused 403 before any route runs,
// even a naive one that relays every tagged request to its Request-URI (as
// the flagship example did); nothing reaches 127.0.0.3. The record-routed
// call next to them ends with a BYE along its signed Route.
func TestHostileTaggedRequestRelay(t *testing.T) {
	caller, callee := newSecPeer(t, "127.0.0.1"), newSecPeer(t, "127.0.0.2")
	attacker, victim := newSecPeer(t, "127.0.0.9"), newSecPeer(t, "127.0.0.3")
	var ran callIDs
	srv, addr := secProxy(t, asyncsip.Config{}, func(c *tm.Context) {
		ran.add(c)
		if c.Req().To().Params.Has("tag") {
			_ = c.Relay() // "in-dialog": wherever the Request-URI says
			return
		}
		_ = c.Relay(callee.uri("bob"))
	})
	call := secCall(t, addr, caller, callee, "row2-call")

	attacks := []struct{ id, method, routes string }{
		{"row2-invite", "INVITE", ""},
		{"row2-bye", "BYE", ""},
		{"row2-options", "OPTIONS", ""},
		{"row2-copied", "BYE", call.routes}, // signed, but for another dialog
		{"row2-unsigned", "INVITE", "Route: <sip:" + addr.String() + ";lr>\n"},
	}
	for _, a := range attacks {
		attacker.send(addr, secRequest(attacker, a.method, victim.uri("x"), a.id, "z9hG4bK-"+a.id, "b-stolen", 2, a.routes))
		resp := attacker.waitFor("SIP/2.0 ", "Call-ID: "+a.id)
		assert.True(t, strings.HasPrefix(resp, "SIP/2.0 403"), "%s: %s", a.id, resp)
		assert.Zero(t, ran.seen(a.id), "%s: the route ran", a.id)
	}
	assert.EqualValues(t, len(attacks), srv.Stats().DropUnsigned)
	assert.Zero(t, attacker.count("SIP/2.0 100"), "no 100 Trying for refused INVITEs")

	call.bye(addr, caller, callee) // the legitimate dialog still routes
	victim.requireSilent("a tagged request was relayed to the host it named")
	assert.Zero(t, callee.count("", "row2-invite"), "attacks reached the callee")
}

// Row 9: an off-path host forges a 486 for a call being set up. Sent from
// its own address with the exact branch (as if it had guessed it), it is
// dropped: only the hop the branch went to may answer. Sent from the
// callee's address (a spoofed source) with the branch an old counter scheme
// would predict from an earlier call's, it matches nothing and fails the
// branch MAC. The call completes with 200. The branches the proxy sends
// carry 64 random bits each: no counter relates one to the next.
func TestHostileForgedResponseOffPath(t *testing.T) {
	caller, callee, attacker := newSecPeer(t, "127.0.0.1"), newSecPeer(t, "127.0.0.2"), newSecPeer(t, "127.0.0.9")
	srv, addr := secProxy(t, asyncsip.Config{}, func(c *tm.Context) {
		if c.InDialog() {
			_ = c.Relay()
			return
		}
		_ = c.Relay(callee.uri("bob"))
	})
	earlier := secCall(t, addr, caller, callee, "row9-earlier")

	caller.send(addr, secRequest(caller, "INVITE", "sip:bob@"+addr.String(), "row9-call", "z9hG4bK-row9", "", 1, ""))
	inv := callee.waitFor("INVITE ", "Call-ID: row9-call")
	caller.waitFor("SIP/2.0 100", "Call-ID: row9-call")

	// The exact branch, from the attacker's own address.
	attacker.send(addr, secResponse(inv, 486, "x-forged", ""))
	testenv.Eventually(t, secWait, "forged 486 counted as DropSource", func() bool { return srv.Stats().DropSource == 1 })

	// A predicted branch (the earlier call's, its random part plus one),
	// from the callee's address.
	guess := nextCounter(t, secBranch(earlier.invite))
	forged := strings.Replace(secResponse(inv, 486, "x-forged", ""), secBranch(inv), guess, 1)
	require.Contains(t, forged, guess)
	callee.send(addr, forged)
	testenv.Eventually(t, secWait, "guessed-branch 486 counted as DropVia", func() bool { return srv.Stats().DropVia == 1 })

	callee.send(addr, secResponse(inv, 180, "b-row9", callee.uri("bob")))
	caller.waitFor("SIP/2.0 180", "Call-ID: row9-call")
	callee.send(addr, secResponse(inv, 200, "b-row9", callee.uri("bob")))
	ok := caller.waitFor("SIP/2.0 200", "Call-ID: row9-call")
	caller.send(addr, secRequest(caller, "ACK", callee.uri("bob"), "row9-call", "z9hG4bK-row9-ack", "b-row9", 1, secRoutes(ok)))
	callee.waitFor("ACK ", "Call-ID: row9-call")
	assert.Zero(t, caller.count("SIP/2.0 486"), "a forged 486 reached the caller")
	assert.Zero(t, callee.count("CANCEL "), "the proxy cancelled the branch")

	// Unpredictable branches: a few more requests relayed one after the
	// other; the random parts are all distinct and none is a small step
	// from the one before (a counter's, even a per-loop one).
	var rnd []uint64
	for _, m := range []string{earlier.invite, inv} {
		rnd = append(rnd, branchRandom(t, secBranch(m)))
	}
	for i := 0; i < 8; i++ {
		id := fmt.Sprint("row9-options-", i)
		caller.send(addr, secRequest(caller, "OPTIONS", "sip:bob@"+addr.String(), id, "z9hG4bK-"+id, "", 1, ""))
		opt := callee.waitFor("OPTIONS ", "Call-ID: "+id)
		rnd = append(rnd, branchRandom(t, secBranch(opt)))
		callee.send(addr, secResponse(opt, 200, "b-"+id, ""))
		caller.waitFor("SIP/2.0 200", "Call-ID: "+id)
	}
	seen := map[uint64]bool{}
	for i, r := range rnd {
		require.False(t, seen[r], "a branch's random part repeated")
		seen[r] = true
		if i > 0 {
			d := r - rnd[i-1]
			if rnd[i-1] > r {
				d = rnd[i-1] - r
			}
			assert.Greater(t, d, uint64(1)<<32, "branches %d and %d differ by a counter-like step", i-1, i)
		}
	}
}

// branchRE is the shape of a stateful branch of ours: "z9hG4bK", the
// server tag, ".b", 64 random bits and a 64-bit MAC, in hex.
var branchRE = regexp.MustCompile(`^z9hG4bK(.+)\.b([0-9a-f]{16})([0-9a-f]{16})$`)

func branchRandom(t testing.TB, branch string) uint64 {
	t.Helper()
	m := branchRE.FindStringSubmatch(branch)
	require.NotNil(t, m, "branch %q", branch)
	v, err := strconv.ParseUint(m[2], 16, 64)
	require.NoError(t, err)
	return v
}

// nextCounter is what an attacker predicting a counter would try after
// branch: its random part plus one, the MAC kept.
func nextCounter(t testing.TB, branch string) string {
	t.Helper()
	m := branchRE.FindStringSubmatch(branch)
	require.NotNil(t, m, "branch %q", branch)
	return fmt.Sprintf("z9hG4bK%s.b%016x%s", m[1], branchRandom(t, branch)+1, m[3])
}

// Row 10: a caller's Route on an initial INVITE that the route relays to a
// target of its choice does not send it elsewhere: the caller gets 403 and
// nothing reaches 127.0.0.3 (nor the chosen target). A peer the route
// trusts (it calls FollowRoute) has its Route honoured; a plain call goes
// to the route's target.
func TestHostileCallerRouteOnInitialRequest(t *testing.T) {
	caller, callee := newSecPeer(t, "127.0.0.1"), newSecPeer(t, "127.0.0.2")
	elsewhere, trusted := newSecPeer(t, "127.0.0.3"), newSecPeer(t, "127.0.0.4")
	var refused atomic.Int64
	srv, addr := secProxy(t, asyncsip.Config{}, func(c *tm.Context) {
		if c.InDialog() {
			_ = c.Relay()
			return
		}
		if c.Source().Addr() == trusted.addr.Addr() {
			c.FollowRoute()
		}
		if err := c.Relay(callee.uri("bob")); err != nil {
			assert.ErrorIs(t, err, tm.ErrRouteNotAllowed)
			refused.Add(1)
		}
	})
	route := "Route: <sip:" + elsewhere.addr.String() + ";lr>\n"

	caller.send(addr, secRequest(caller, "INVITE", "sip:bob@"+addr.String(), "row10-attack", "z9hG4bK-row10a", "", 1, route))
	resp := caller.waitFor("SIP/2.0 ", "Call-ID: row10-attack")
	assert.True(t, strings.HasPrefix(resp, "SIP/2.0 403"), resp)
	assert.EqualValues(t, 1, refused.Load())
	assert.EqualValues(t, 1, srv.Stats().DropRouteSet)
	caller.send(addr, secRequest(caller, "ACK", "sip:bob@"+addr.String(), "row10-attack", "z9hG4bK-row10a", "", 1, ""))
	elsewhere.requireSilent("the caller's Route overrode the route's target")

	d := secCall(t, addr, caller, callee, "row10-call") // the legitimate call
	d.bye(addr, caller, callee)
	assert.Zero(t, callee.count("", "row10-attack"))

	trusted.send(addr, secRequest(trusted, "INVITE", "sip:bob@"+addr.String(), "row10-trusted", "z9hG4bK-row10t", "", 1, route))
	inv := elsewhere.waitFor("INVITE ", "Call-ID: row10-trusted")
	elsewhere.send(addr, secResponse(inv, 486, "e1", ""))
	trusted.waitFor("SIP/2.0 486", "Call-ID: row10-trusted")
	elsewhere.waitFor("ACK ", "Call-ID: row10-trusted") // the proxy's hop-by-hop ACK
	assert.EqualValues(t, 1, refused.Load(), "FollowRoute: relayed")
}

// replaceSecondVia returns resp with its second Via naming host instead
// (received and rport gone, so it is where a response would go).
func replaceSecondVia(t testing.TB, resp string, host netip.AddrPort) string {
	t.Helper()
	lines := strings.Split(resp, "\n")
	n := 0
	for i, l := range lines {
		if !strings.HasPrefix(strings.ToLower(l), "via:") {
			continue
		}
		require.NotContains(t, l, ",", "one Via per line")
		if n++; n == 2 {
			br := regexp.MustCompile(`;branch=[^;\s]+`).FindString(l)
			lines[i] = "Via: SIP/2.0/UDP " + host.String() + br
			return strings.Join(lines, "\n")
		}
	}
	t.Fatalf("no second Via in %s", resp)
	return ""
}

// Row 11: a forged 200 carrying our Via on top and a second Via naming a
// third host is never forwarded there: from the attacker's address while
// the client transaction lives (wrong source), and from any address after
// it ended (the branch MAC binds the Via below ours). A real 2xx
// retransmission of the callee still reaches the caller.
func TestHostileForgedResponseThirdVia(t *testing.T) {
	caller, callee := newSecPeer(t, "127.0.0.1"), newSecPeer(t, "127.0.0.2")
	attacker, third := newSecPeer(t, "127.0.0.9"), newSecPeer(t, "127.0.0.3")
	// A short T1: the transactions end (64*T1) within the test.
	srv, addr := secProxy(t, asyncsip.Config{Core: tm.Config{Timers: tm.Timers{T1: 20 * time.Millisecond}}}, func(c *tm.Context) {
		if c.InDialog() {
			_ = c.Relay()
			return
		}
		_ = c.Relay(callee.uri("bob"))
	})
	d := secCall(t, addr, caller, callee, "row11-call")
	forged := replaceSecondVia(t, secResponse(d.invite, 200, "b-row11-call", callee.uri("bob")), third.addr)

	attacker.send(addr, forged)
	dropped := func() uint64 { st := srv.Stats(); return st.DropSource + st.DropVia }
	testenv.Eventually(t, secWait, "forged 200 dropped", func() bool { return dropped() == 1 })

	testenv.Eventually(t, secWait, "transactions ended", func() bool {
		st := srv.Stats()
		return st.ClientTxDone == st.ClientTxCreated && st.ServerTxDone == st.ServerTxCreated && st.Tombstones == 0
	})
	attacker.send(addr, forged)
	callee.send(addr, forged) // a spoofed source
	testenv.Eventually(t, secWait, "forged 200s dropped for their Via", func() bool { return srv.Stats().DropVia >= 2 })
	assert.EqualValues(t, 3, dropped())

	oks := caller.count("SIP/2.0 200", "Call-ID: row11-call", "INVITE")
	callee.send(addr, secResponse(d.invite, 200, "b-row11-call", callee.uri("bob"))) // a real retransmission
	testenv.Eventually(t, secWait, "the 2xx retransmission reached the caller", func() bool {
		return caller.count("SIP/2.0 200", "Call-ID: row11-call", "INVITE") == oks+1
	})
	d.bye(addr, caller, callee)
	third.requireSilent("a forged response was forwarded to the host its Via named")
}

// Row 13: an INVITE the route drops (a scanner's User-Agent) gets no byte
// back — no 100 Trying before the route, none at the 200 ms bound, nothing
// for its retransmission; an INVITE the route relays gets 100 Trying and
// its call completes.
func TestHostileScannerDroppedSilently(t *testing.T) {
	caller, callee, scanner := newSecPeer(t, "127.0.0.1"), newSecPeer(t, "127.0.0.2"), newSecPeer(t, "127.0.0.9")
	ended := make(chan string, 4)
	p := startProxy(t, asyncsip.Config{}, tm.Routes{
		Request: func(c *tm.Context) {
			if ua := c.Req().GetHeader("User-Agent"); ua != nil && strings.Contains(ua.Value(), "friendly-scanner") {
				c.Drop()
				return
			}
			if c.InDialog() {
				_ = c.Relay()
				return
			}
			_ = c.Relay(callee.uri("bob"))
		},
		End: func(c *tm.Context) {
			if c.FinalCode() == 0 {
				ended <- c.CallID()
			}
		},
	})
	addr := p.srv.Addrs()[0]

	scan := secRequest(scanner, "INVITE", "sip:100@"+addr.String(), "row13-scan", "z9hG4bK-row13s", "", 1,
		"User-Agent: friendly-scanner\n")
	scanner.send(addr, scan)
	assert.Equal(t, "row13-scan", testenv.Wait(t, secWait, ended, "the dropped INVITE's End"))
	scanner.send(addr, scan) // its retransmission
	testenv.Eventually(t, secWait, "retransmission absorbed", func() bool { return p.srv.Stats().RetransAbsorbed == 1 })

	d := secCall(t, addr, caller, callee, "row13-call") // waits for its 100 Trying
	d.bye(addr, caller, callee)
	scanner.requireSilent("the scanner got an answer")
	assert.Zero(t, callee.count("", "row13-scan"))
}
