package main

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/asyncsip/asyncsip/internal/sipp"
	"github.com/asyncsip/asyncsip/internal/testenv"
)

// activeCalls returns the number of calls rtp holds.
func activeCalls(t *testing.T, rtp *testenv.RTPEngineProc) int {
	t.Helper()
	n, err := rtp.ActiveCalls()
	require.NoError(t, err)
	return n
}

// sdpOf returns the c= address and the first m=audio port of the SDP body
// of the first message in a SIPp message trace whose first line starts
// with startLine.
func sdpOf(t *testing.T, trace, startLine string) (addr string, port int) {
	t.Helper()
	b, err := os.ReadFile(trace)
	require.NoError(t, err)
	text := strings.ReplaceAll(string(b), "\r\n", "\n")
	i := strings.Index(text, "\n"+startLine)
	require.GreaterOrEqual(t, i, 0, "no %q in the trace:\n%s", startLine, text)
	msg := text[i+1:]
	if j := strings.Index(msg, "\n----"); j >= 0 { // SIPp's separator between messages
		msg = msg[:j]
	}
	c := regexp.MustCompile(`(?m)^c=IN IP4 (\S+)`).FindStringSubmatch(msg)
	m := regexp.MustCompile(`(?m)^m=audio (\d+) `).FindStringSubmatch(msg)
	require.NotNil(t, c, "no c= line in:\n%s", msg)
	require.NotNil(t, m, "no m=audio line in:\n%s", msg)
	port, _ = strconv.Atoi(m[1])
	return c[1], port
}

// readmeMediaLines returns the README's "sh rtpengine" lines, as words.
func readmeMediaLines(t *testing.T) [][]string {
	t.Helper()
	var out [][]string
	for _, block := range readmeBlocks(t, "sh rtpengine") {
		for _, line := range block {
			if f := strings.Fields(line); len(f) > 0 {
				out = append(out, f)
			}
		}
	}
	return out
}

// The README's media section, run as written: rtpengine, the proxy with
// -rtpengine, a gateway and a caller whose SDP names 192.168.1.10. The
// gateway is offered rtpengine's address and a port of its range, the
// caller gets rtpengine's answer, and the BYE deletes the session.
func TestReadmeMedia(t *testing.T) {
	sipp.Path(t)
	lines := readmeMediaLines(t)
	require.Len(t, lines, 4, "the media section: rtpengine, the proxy, two SIPp lines")
	data := t.TempDir()
	ports := map[int]int{2223: testenv.FreeUDPPort(t)}
	for _, p := range []int{5060, 5080, 5090} {
		ports[p] = testenv.FreeUDPPort(t)
	}
	mapped := func(words []string) []string {
		c := sipp.Command{Program: words[0], Args: words[1:]}.MapPorts(ports)
		for i, a := range c.Args {
			c.Args[i] = strings.ReplaceAll(a, "/tmp/proxy-demo", data)
		}
		return append([]string{c.Program}, c.Args...)
	}
	// The quick start's users and gateway.
	for _, words := range readmeCommands(t, "go run ./examples/proxy -data /tmp/proxy-demo") {
		if args := mapped(words[2:])[1:]; len(args) > 2 && (args[2] == "user" || args[2] == "gw") {
			cli(t, args...)
		}
	}

	require.Equal(t, "rtpengine", lines[0][0])
	rtp := testenv.StartRTPEngineArgs(t, mapped(lines[0])[1:])
	require.Equal(t, []string{"go", "run", "./examples/proxy"}, lines[1][:3])
	startProxyOn(t, []string{fmt.Sprintf("udp:127.0.0.1:%d", ports[5060])}, mapped(lines[1])[3:]...)

	trace := t.TempDir()
	sippCmd := func(words []string, name string) sipp.Command {
		w := mapped(words)
		require.Equal(t, "sipp", w[0])
		return sipp.Command{Program: "sipp", Source: "README.md", Args: append(w[1:],
			"-trace_msg", "-message_file", filepath.Join(trace, name))}
	}
	uas := sipp.StartCommand(t, sippCmd(lines[2], "uas.msg"), "../..", time.Minute)
	res := sipp.RunCommand(t, sippCmd(lines[3], "uac.msg"), "../..", time.Minute)
	require.Equal(t, 0, res.ExitCode, res.String())
	require.Equal(t, 1, res.Successful, res.String())
	ures := uas.Stop()
	require.Equal(t, 1, ures.Successful, ures.String())

	addr, port := sdpOf(t, filepath.Join(trace, "uas.msg"), "INVITE ")
	assert.Equal(t, "127.0.0.1", addr, "the gateway is offered rtpengine's address, not 192.168.1.10")
	assert.True(t, port >= 30000 && port <= 30999, "offered port %d is rtpengine's (30000-30999)", port)
	addr, port = sdpOf(t, filepath.Join(trace, "uac.msg"), "SIP/2.0 200 OK")
	assert.Equal(t, "127.0.0.1", addr)
	assert.True(t, port >= 30000 && port <= 30999, "answered port %d is rtpengine's (30000-30999)", port)

	offers := rtp.Commands("offer")
	require.Len(t, offers, 1, "one call anchored:\n%s", rtpLog(rtp))
	assert.Equal(t, offers, rtp.Commands("answer"))
	require.True(t, testenv.Poll(10*time.Second, func() bool {
		return len(rtp.Commands("delete")) == 1 && activeCalls(t, rtp) == 0
	}), "the BYE deleted the call:\n%s", rtpLog(rtp))
	assert.Equal(t, offers, rtp.Commands("delete"))
}

// withSDP gives a request built by msg an SDP body offering audio at
// ip:port.
func withSDP(m, ip string, port int) string {
	body := sdp(ip, port)
	return strings.Replace(m, "Content-Length: 0\r\n\r\n",
		"Content-Type: application/sdp\r\nContent-Length: "+strconv.Itoa(len(body))+"\r\n\r\n"+body, 1)
}

func sdp(ip string, port int) string {
	return "v=0\r\no=- 1 1 IN IP4 " + ip + "\r\ns=-\r\nc=IN IP4 " + ip + "\r\nt=0 0\r\nm=audio " +
		strconv.Itoa(port) + " RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
}

// answerSDP answers req with 200 and an SDP at ip:port, and returns the
// response sent.
func (s *sock) answerSDP(req *sip.Request, from *net.UDPAddr, ip string, port int) {
	s.t.Helper()
	var b strings.Builder
	b.WriteString("SIP/2.0 200 OK\r\n")
	for _, h := range req.GetHeaders("Via") {
		b.WriteString(h.String() + "\r\n")
	}
	for _, h := range req.GetHeaders("Record-Route") {
		b.WriteString(h.String() + "\r\n")
	}
	to := req.To().String()
	if !strings.Contains(to, "tag=") {
		to += ";tag=uas-" + s.user
	}
	b.WriteString(req.From().String() + "\r\n" + to + "\r\n")
	b.WriteString(req.CallID().String() + "\r\n" + req.CSeq().String() + "\r\n")
	b.WriteString("Contact: <" + s.contact() + ">\r\nContent-Length: 0\r\n\r\n")
	s.send(withSDP(b.String(), ip, port), from)
}

// callSDP places an authenticated call as callAs does, offering audio at
// ip:port.
func (s *sock) callSDP(lp *liveProxy, user, password, ruri, callID, ip string, port int) {
	s.t.Helper()
	m := msg{method: "INVITE", ruri: ruri, local: s.addr(), from: user, callID: callID, contacts: []string{s.contact()}}
	s.send(withSDP(m.String(), ip, port), lp.udp)
	r := s.final(callID)
	require.Equal(s.t, 407, r.StatusCode, "the call is challenged: %s", r.String())
	s.ackFinal(r, lp.udp)
	m.cseq, m.branch = 2, "z9hG4bK-"+callID+"-2" // cancel names it
	m.headers = []string{digestFor(s.t, r, user, password, "INVITE", ruri, 1)}
	s.send(withSDP(m.String(), ip, port), lp.udp)
}

// bye sends the BYE of the answered call r (a 200 to s's INVITE) along its
// Record-Route.
func (s *sock) bye(lp *liveProxy, r *sip.Response) {
	s.t.Helper()
	var routes []string
	for _, h := range r.GetHeaders("Record-Route") {
		routes = append([]string{h.Value()}, routes...) // the caller's route set is in reverse
	}
	callID := string(*r.CallID())
	m := msg{method: "BYE", ruri: r.Contact().Address.String(), to: r.To().Address.String(), toTag: tagOf(r.To().Params),
		fromTag: tagOf(r.From().Params), local: s.addr(), from: s.user, callID: callID, cseq: 3,
		headers: []string{"Route: " + strings.Join(routes, ", ")}}
	s.send(m.String(), lp.udp)
}

func tagOf(p sip.HeaderParams) string {
	v, _ := p.Get("tag")
	return v
}

// sdpLine returns the c= address and m=audio port of a message's SDP.
func sdpLine(t *testing.T, m sip.Message) (string, int) {
	t.Helper()
	c := regexp.MustCompile(`(?m)^c=IN IP4 (\S+)\r?$`).FindStringSubmatch(string(m.Body()))
	a := regexp.MustCompile(`(?m)^m=audio (\d+) `).FindStringSubmatch(string(m.Body()))
	require.NotNil(t, c, "no c= in %s", m.Body())
	require.NotNil(t, a, "no m=audio in %s", m.Body())
	port, _ := strconv.Atoi(a[1])
	return c[1], port
}

// The proxy with -rtpengine and -nat-fix against a real rtpengine: a call
// to a callee that registered from behind a NAT is anchored both ways, so
// is the callee's re-INVITE, and the BYE deletes the session; a call
// between two phones that are not behind a NAT is left alone; a NATed
// caller's call that is rejected or cancelled is deleted; with rtpengine
// down, an INVITE that needs it gets 503.
func TestMediaE2E(t *testing.T) {
	rtp := testenv.StartRTPEngine(t)
	inRange := func(port int) bool { return port >= rtp.PortMin && port <= rtp.PortMax }
	busy := newSock(t, phoneIP, "gw", 486)  // a gateway that rejects every call
	silent := newSock(t, phoneIP, "gw2", 0) // one the test answers
	lp := startLive(t, func(cfg Config) {
		addGateway(t, cfg, 1, busy.hostport(), "+1")
		addGateway(t, cfg, 2, silent.hostport(), "+2")
	}, "-nat-fix", "-rtpengine", rtp.Addr)

	t.Run("callee behind NAT", func(t *testing.T) {
		bob := newSock(t, phoneIP, "bob", 0)
		require.Equal(t, 200, bob.registerAs(lp, "bob", "bobpw", "sip:bob@10.0.0.5:5060").StatusCode)
		alice := newSock(t, phoneIP, "alice", 0)
		alice.callSDP(lp, "alice", "alicepw", lp.uri("bob"), "media-nat-callee", phoneIP, 4000)
		inv, from := bob.request()
		require.Equal(t, sip.INVITE, inv.Method)
		ip, port := sdpLine(t, inv)
		assert.Equal(t, "127.0.0.1", ip, "bob is offered rtpengine's address")
		assert.True(t, inRange(port), "port %d from rtpengine's range", port)
		bob.answerSDP(inv, from, "10.0.0.5", 5000)
		r := alice.final("media-nat-callee")
		require.Equal(t, 200, r.StatusCode)
		ip, port = sdpLine(t, r)
		assert.Equal(t, "127.0.0.1", ip, "alice gets rtpengine's answer")
		assert.True(t, inRange(port), "port %d from rtpengine's range", port)
		assert.Equal(t, 1, activeCalls(t, rtp))

		// bob puts the call on another address (a re-INVITE along his route
		// set): alice is offered rtpengine again, bob gets its answer.
		var routes []string
		for _, h := range inv.GetHeaders("Record-Route") {
			routes = append(routes, h.Value())
		}
		re := msg{method: "INVITE", ruri: alice.contact(), to: "sip:alice@127.0.0.1", toTag: "f-media-nat-callee",
			from: "bob", fromTag: "uas-bob", callID: "media-nat-callee", cseq: 1, local: bob.addr(),
			contacts: []string{bob.contact()}, headers: []string{"Route: " + strings.Join(routes, ", ")}}
		bob.send(withSDP(re.String(), "10.0.0.5", 5002), lp.udp)
		reinv, rfrom := alice.request()
		require.Equal(t, sip.INVITE, reinv.Method)
		ip, port = sdpLine(t, reinv)
		assert.Equal(t, "127.0.0.1", ip, "the re-INVITE reaches alice with rtpengine's address")
		assert.True(t, inRange(port), "port %d from rtpengine's range", port)
		alice.answerSDP(reinv, rfrom, phoneIP, 4010)
		rr := bob.final("media-nat-callee")
		require.Equal(t, 200, rr.StatusCode)
		ip, port = sdpLine(t, rr)
		assert.Equal(t, "127.0.0.1", ip, "bob gets rtpengine's answer")
		assert.True(t, inRange(port), "port %d from rtpengine's range", port)

		alice.bye(lp, r)
		bye, from := bob.request()
		require.Equal(t, sip.BYE, bye.Method)
		bob.reply(bye, from, 200)
		assert.Equal(t, 200, alice.final("media-nat-callee").StatusCode)
		testenv.Eventually(t, 10*time.Second, "the BYE deleted the call", func() bool { return activeCalls(t, rtp) == 0 })
	})

	t.Run("no NAT", func(t *testing.T) {
		carol := newSock(t, phoneIP, "mallory", 0)
		require.Equal(t, 200, carol.registerAs(lp, "mallory", "mallorypw", carol.contact()).StatusCode)
		alice := newSock(t, phoneIP, "alice", 0)
		alice.callSDP(lp, "alice", "alicepw", lp.uri("mallory"), "media-no-nat", phoneIP, 4002)
		inv, from := carol.request()
		require.Equal(t, sip.INVITE, inv.Method)
		ip, port := sdpLine(t, inv)
		assert.Equal(t, phoneIP, ip, "SDP as alice sent it")
		assert.Equal(t, 4002, port)
		carol.reply(inv, from, 486)
		assert.Equal(t, 486, alice.final("media-no-nat").StatusCode)
		assert.Equal(t, 0, activeCalls(t, rtp), "nothing anchored")
	})

	// A NATed caller's call that fails or is cancelled is deleted too.
	t.Run("rejected", func(t *testing.T) {
		alice := newSock(t, phoneIP, "alice", 0)
		before := len(rtp.Commands("delete"))
		alice.callSDP(lp, "alice", "alicepw", "sip:+15551234@127.0.0.1", "media-rejected", "192.168.1.10", 4006)
		assert.Equal(t, 486, alice.final("media-rejected").StatusCode)
		assert.Contains(t, rtp.Commands("offer"), "media-rejected")
		testenv.Eventually(t, 10*time.Second, "the rejected call deleted", func() bool {
			return len(rtp.Commands("delete")) == before+1 && activeCalls(t, rtp) == 0
		})
		assert.Equal(t, "media-rejected", rtp.Commands("delete")[before])
	})
	t.Run("cancelled", func(t *testing.T) {
		alice := newSock(t, phoneIP, "alice", 0)
		before := len(rtp.Commands("delete"))
		alice.callSDP(lp, "alice", "alicepw", "sip:+25551234@127.0.0.1", "media-cancelled", "192.168.1.10", 4008)
		inv, from := silent.request()
		require.Equal(t, sip.INVITE, inv.Method)
		silent.reply(inv, from, 180)
		require.Equal(t, 1, activeCalls(t, rtp))
		cancel := msg{method: "CANCEL", ruri: "sip:+25551234@127.0.0.1", local: alice.addr(), from: "alice",
			callID: "media-cancelled", cseq: 2, branch: "z9hG4bK-media-cancelled-2"}
		alice.send(cancel.String(), lp.udp)
		c, _ := silent.request()
		for c.Method == sip.INVITE { // a retransmission sent before the 180 arrived
			c, _ = silent.request()
		}
		require.Equal(t, sip.CANCEL, c.Method)
		silent.reply(c, from, 200)
		silent.reply(inv, from, 487)
		codes := map[sip.RequestMethod]int{}
		for len(codes) < 2 { // the CANCEL's 200 and the INVITE's 487, in either order
			r := alice.final("media-cancelled")
			codes[r.CSeq().MethodName] = r.StatusCode
		}
		assert.Equal(t, map[sip.RequestMethod]int{sip.CANCEL: 200, sip.INVITE: 487}, codes)
		testenv.Eventually(t, 10*time.Second, "the cancelled call deleted", func() bool {
			return len(rtp.Commands("delete")) == before+1 && activeCalls(t, rtp) == 0
		})
		assert.Equal(t, "media-cancelled", rtp.Commands("delete")[before])
	})

	t.Run("rtpengine down", func(t *testing.T) {
		down := startLive(t, nil, "-nat-fix", "-rtpengine", fmt.Sprintf("udp:127.0.0.1:%d", testenv.FreeUDPPort(t)))
		bob := newSock(t, phoneIP, "bob", 486)
		require.Equal(t, 200, bob.registerAs(down, "bob", "bobpw", "sip:bob@10.0.0.5:5060").StatusCode)
		alice := newSock(t, phoneIP, "alice", 0)
		alice.callSDP(down, "alice", "alicepw", down.uri("bob"), "media-down", "192.168.1.10", 4004)
		r := alice.final("media-down")
		assert.Equal(t, 503, r.StatusCode, r.String())
		assert.Equal(t, "Service Unavailable (media relay)", r.Reason)
		assert.NotNil(t, r.GetHeader("Retry-After"))
		assert.Zero(t, bob.invites.Load(), "bob never rang")
	})
}

func rtpLog(rtp *testenv.RTPEngineProc) string {
	b, _ := os.ReadFile(rtp.Log)
	return string(b)
}
