package e2e

import (
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/asyncsip/asyncsip"
	"github.com/asyncsip/asyncsip/internal/sipp"
	"github.com/asyncsip/asyncsip/tm"
)

// countingUAS is a UAS written for these tests: it counts every request it
// receives per Call-ID and method, so a test can tell that the proxy
// forwarded each request exactly once. It answers INVITE with 180 and 200
// (re-sending the 200 every 500 ms until the ACK or BYE, as a UAS core does,
// RFC 3261 §13.3.1.4), and BYE or any other request with 200.
type countingUAS struct {
	t    testing.TB
	conn *net.UDPConn
	port int

	mu     sync.Mutex
	counts map[string]map[string]int // Call-ID → method → requests received
	resend map[string]*okResend      // Call-ID → unacknowledged 200

	stop chan struct{}
	done chan struct{}
}

type okResend struct {
	msg  []byte
	to   *net.UDPAddr
	next time.Time
	left int
}

func startCountingUAS(t testing.TB) *countingUAS {
	t.Helper()
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	u := &countingUAS{t: t, conn: conn, port: conn.LocalAddr().(*net.UDPAddr).Port,
		counts: map[string]map[string]int{}, resend: map[string]*okResend{},
		stop: make(chan struct{}), done: make(chan struct{})}
	go u.serve()
	t.Cleanup(u.close)
	return u
}

func (u *countingUAS) close() {
	select {
	case <-u.stop:
	default:
		close(u.stop)
	}
	<-u.done
	_ = u.conn.Close()
}

func (u *countingUAS) serve() {
	defer close(u.done)
	buf := make([]byte, 65536)
	for {
		select {
		case <-u.stop:
			return
		default:
		}
		_ = u.conn.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		n, from, err := u.conn.ReadFromUDP(buf)
		var ne net.Error
		switch {
		case errors.As(err, &ne) && ne.Timeout():
			u.retransmit()
			continue
		case err != nil:
			return
		}
		u.handle(string(buf[:n]), from)
		u.retransmit()
	}
}

// handle answers one datagram; responses (the 200 for a BYE we never send)
// are ignored.
func (u *countingUAS) handle(msg string, from *net.UDPAddr) {
	lines := strings.Split(msg, "\r\n")
	method, _, _ := strings.Cut(lines[0], " ")
	if method == "SIP/2.0" {
		return
	}
	callID := header(lines, "Call-ID")
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.counts[callID] == nil {
		u.counts[callID] = map[string]int{}
	}
	u.counts[callID][method]++
	switch method {
	case "INVITE":
		_, _ = u.conn.WriteToUDP(response(lines, "180 Ringing", u.port), from)
		ok := response(lines, "200 OK", u.port)
		_, _ = u.conn.WriteToUDP(ok, from)
		u.resend[callID] = &okResend{msg: ok, to: from, next: time.Now().Add(500 * time.Millisecond), left: 6}
	case "ACK":
		delete(u.resend, callID)
	default:
		delete(u.resend, callID)
		_, _ = u.conn.WriteToUDP(response(lines, "200 OK", u.port), from)
	}
}

func (u *countingUAS) retransmit() {
	now := time.Now()
	u.mu.Lock()
	defer u.mu.Unlock()
	for id, r := range u.resend {
		if now.Before(r.next) {
			continue
		}
		_, _ = u.conn.WriteToUDP(r.msg, r.to)
		r.next = now.Add(500 * time.Millisecond)
		if r.left--; r.left == 0 {
			delete(u.resend, id)
		}
	}
}

// received returns, per Call-ID, how many times method was received.
func (u *countingUAS) received(method string) map[string]int {
	u.mu.Lock()
	defer u.mu.Unlock()
	out := map[string]int{}
	for id, m := range u.counts {
		if m[method] > 0 {
			out[id] = m[method]
		}
	}
	return out
}

// response builds a response to the request in lines (RFC 3261 §8.2.6):
// Vias, Record-Route, From, To (with a tag), Call-ID and CSeq copied.
func response(lines []string, status string, port int) []byte {
	var b strings.Builder
	b.WriteString("SIP/2.0 " + status + "\r\n")
	for _, l := range lines[1:] {
		name, _, _ := strings.Cut(l, ":")
		switch strings.TrimSpace(name) {
		case "Via", "Record-Route", "From", "Call-ID", "CSeq":
			b.WriteString(l + "\r\n")
		case "To":
			b.WriteString(l)
			if !strings.Contains(l, ";tag=") {
				b.WriteString(";tag=uas-" + header(lines, "Call-ID")[:4])
			}
			b.WriteString("\r\n")
		}
	}
	if strings.HasPrefix(lines[0], "INVITE ") {
		b.WriteString("Contact: <sip:127.0.0.1:" + itoa(port) + ">\r\n")
	}
	b.WriteString("Content-Length: 0\r\n\r\n")
	return []byte(b.String())
}

func header(lines []string, name string) string {
	for _, l := range lines[1:] {
		if n, v, ok := strings.Cut(l, ":"); ok && strings.EqualFold(strings.TrimSpace(n), name) {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// requireOncePerCall checks that every one of calls Call-IDs reached the
// UAS with exactly one request of method.
func requireOncePerCall(t testing.TB, u *countingUAS, method string, calls int) {
	t.Helper()
	got := u.received(method)
	require.Len(t, got, calls, "%s: calls that reached the UAS", method)
	for id, n := range got {
		require.Equal(t, 1, n, "%s for call %s forwarded %d times", method, id, n)
	}
}

// Every INVITE and BYE is sent twice by the UAC: the proxy absorbs the
// copies, the UAS gets each request once and every call completes.
func TestInteropDuplicatesAbsorbed(t *testing.T) {
	const calls = 30
	uas := startCountingUAS(t)
	p := startProxy(t, asyncsip.Config{}, tm.Routes{Request: relayTo(uri("bob", uas.port))})

	res := runUAC(t, sipp.Config{Scenario: scenario("uac_dup.xml"), Remote: p.addr, Service: "bob",
		Calls: calls, Rate: 30, Timeout: 30 * time.Second})
	requireAllOK(t, res, calls)
	requireOncePerCall(t, uas, "INVITE", calls)
	requireOncePerCall(t, uas, "ACK", calls)
	requireOncePerCall(t, uas, "BYE", calls)
	st := p.srv.Stats()
	require.GreaterOrEqual(t, st.RetransAbsorbed, uint64(2*calls), "%+v", st)
}

// SIPp loses 10% of what it sends and receives (-lost 10), so it
// retransmits INVITE and BYE, and the UAS retransmits 200s through the
// proxy: calls still complete and the UAS sees one INVITE and one BYE per
// call.
func TestInteropLossyUAC(t *testing.T) {
	const calls = 50
	uas := startCountingUAS(t)
	p := startProxy(t, asyncsip.Config{}, tm.Routes{Request: relayTo(uri("bob", uas.port))})

	res := runUAC(t, sipp.Config{Scenario: sipp.UAC, Remote: p.addr, Service: "bob",
		Calls: calls, Rate: 25, Timeout: 60 * time.Second, Args: []string{"-lost", "10"}})
	requireAllOK(t, res, calls)
	requireOncePerCall(t, uas, "INVITE", calls)
	requireOncePerCall(t, uas, "BYE", calls)
}
