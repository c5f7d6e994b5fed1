package webrtc_test

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"github.com/stretchr/testify/require"

	"github.com/asyncsip/asyncsip/modules/auth"
)

// wait bounds every read of the browser's connection.
const wait = 10 * time.Second

// browser is a SIP-over-WebSocket client (RFC 7118) written for the test,
// shaped like JsSIP or SIP.js in a browser: it names itself in a random
// ".invalid" domain in Via and Contact, and offers and answers WebRTC SDP
// (ICE, DTLS-SRTP, UDP/TLS/RTP/SAVPF, rtcp-mux).
type browser struct {
	t      *testing.T
	user   string
	host   string // "<random>.invalid"
	conn   net.Conn
	rw     io.ReadWriter
	in     chan sip.Message
	domain string
	seq    int
}

// dialBrowser opens a WebSocket with the "sip" subprotocol to url.
func dialBrowser(t *testing.T, url, user, domain string) *browser {
	t.Helper()
	return dialBrowserTLS(t, url, user, domain, nil)
}

// dialBrowserTLS is dialBrowser for a wss: url, with TLS settings.
func dialBrowserTLS(t *testing.T, url, user, domain string, tc *tls.Config) *browser {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	conn, br, _, err := ws.Dialer{Protocols: []string{"sip"}, TLSConfig: tc}.Dial(ctx, url)
	require.NoError(t, err)
	var r io.Reader = conn
	if br != nil { // bytes the server sent right after its handshake
		r = io.MultiReader(br, conn)
	}
	b := &browser{t: t, user: user, host: randHex(6) + ".invalid", conn: conn,
		rw: struct {
			io.Reader
			io.Writer
		}{r, conn}, in: make(chan sip.Message, 64), domain: domain}
	done := make(chan struct{})
	go b.read(done)
	t.Cleanup(func() { conn.Close(); <-done })
	return b
}

func randHex(n int) string {
	p := make([]byte, n)
	_, _ = rand.Read(p)
	return hex.EncodeToString(p)
}

func (b *browser) read(done chan struct{}) {
	defer close(done)
	for {
		data, _, err := wsutil.ReadServerData(b.rw)
		if err != nil {
			return
		}
		if m, err := sip.ParseMessage(data); err == nil {
			b.in <- m
		}
	}
}

func (b *browser) send(msg string) {
	b.t.Helper()
	require.NoError(b.t, wsutil.WriteClientText(b.conn, []byte(msg)))
}

// next returns the next message other than 100 Trying.
func (b *browser) next() sip.Message {
	b.t.Helper()
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		select {
		case m := <-b.in:
			if r, ok := m.(*sip.Response); ok && r.StatusCode == 100 {
				continue
			}
			return m
		case <-timer.C:
			b.t.Fatalf("%s: nothing received within %v", b.user, wait)
			return nil
		}
	}
}

// final returns the next final response (provisional ones skipped).
func (b *browser) final() *sip.Response {
	b.t.Helper()
	for {
		if r, ok := b.next().(*sip.Response); ok && r.StatusCode >= 200 {
			return r
		}
	}
}

func (b *browser) contact() string { return "sip:" + b.user + "@" + b.host + ";transport=ws" }

// request builds a request from the browser. Extra lines are headers;
// body, when not empty, is SDP.
func (b *browser) request(method, ruri, to, callID, fromTag string, cseq int, extra []string, body string) string {
	var s strings.Builder
	line := func(l string) { s.WriteString(l + "\r\n") }
	line(method + " " + ruri + " SIP/2.0")
	line("Via: SIP/2.0/WS " + b.host + ";branch=z9hG4bK" + randHex(8))
	line("Max-Forwards: 70")
	line("From: <sip:" + b.user + "@" + b.domain + ">;tag=" + fromTag)
	line("To: " + to)
	line("Call-ID: " + callID)
	line(fmt.Sprintf("CSeq: %d %s", cseq, method))
	if method != "BYE" && method != "ACK" {
		line("Contact: <" + b.contact() + ">")
	}
	for _, h := range extra {
		line(h)
	}
	if body != "" {
		line("Content-Type: application/sdp")
	}
	line("Content-Length: " + strconv.Itoa(len(body)))
	line("")
	return s.String() + body
}

// digest answers the challenge of r for method and uri.
func digest(t *testing.T, r *sip.Response, user, password, method, uri string) string {
	t.Helper()
	name, hdr := "Authorization", "WWW-Authenticate"
	if r.StatusCode == 407 {
		name, hdr = "Proxy-Authorization", "Proxy-Authenticate"
	}
	var ch string
	for _, h := range r.GetHeaders(hdr) {
		if strings.Contains(h.Value(), "MD5") || !strings.Contains(h.Value(), "algorithm=") {
			ch = h.Value()
		}
	}
	require.NotEmpty(t, ch, "an MD5 challenge in %s", r)
	realm, nonce := param(ch, "realm"), param(ch, "nonce")
	ha1, err := auth.HA1(auth.MD5, user, realm, password)
	require.NoError(t, err)
	cred := auth.Credentials{Username: user, Realm: realm, Nonce: nonce, URI: uri, Algorithm: auth.MD5,
		QOP: "auth", NC: "00000001", CNonce: randHex(4)}
	cred.Response, err = auth.Response(cred, method, ha1)
	require.NoError(t, err)
	return name + ": " + cred.String()
}

// param returns a quoted or plain parameter of a challenge.
func param(v, name string) string {
	i := strings.Index(v, name+"=")
	if i < 0 {
		return ""
	}
	v = v[i+len(name)+1:]
	if strings.HasPrefix(v, `"`) {
		v = v[1:]
		return v[:strings.IndexByte(v, '"')]
	}
	if j := strings.IndexAny(v, ", "); j >= 0 {
		return v[:j]
	}
	return v
}

// register registers the browser's contact as user with password.
func (b *browser) register(password string) *sip.Response {
	b.t.Helper()
	callID, tag := randHex(8), randHex(4)
	to := "<sip:" + b.user + "@" + b.domain + ">"
	ruri := "sip:" + b.domain
	b.send(b.request("REGISTER", ruri, to, callID, tag, 1, []string{"Expires: 600"}, ""))
	r := b.final()
	if r.StatusCode != 401 {
		return r
	}
	b.send(b.request("REGISTER", ruri, to, callID, tag, 2, []string{"Expires: 600",
		digest(b.t, r, b.user, password, "REGISTER", ruri)}, ""))
	return b.final()
}

// call is a call the browser placed.
type call struct {
	callID, tag, ruri, to string
	ok                    *sip.Response // the 200
}

// invite calls ruri with a WebRTC offer, answering the 407, and returns
// the call with its 200.
func (b *browser) invite(password, ruri string) *call {
	b.t.Helper()
	c := &call{callID: randHex(8), tag: randHex(4), ruri: ruri, to: "<" + ruri + ">"}
	offer := webrtcSDP("actpass")
	b.send(b.request("INVITE", ruri, c.to, c.callID, c.tag, 1, nil, offer))
	r := b.final()
	require.Equal(b.t, 407, r.StatusCode, r.String())
	b.send(b.request("ACK", ruri, r.To().String(), c.callID, c.tag, 1, nil, ""))
	b.send(b.request("INVITE", ruri, c.to, c.callID, c.tag, 2,
		[]string{digest(b.t, r, b.user, password, "INVITE", ruri)}, offer))
	c.ok = b.final()
	require.Equal(b.t, 200, c.ok.StatusCode, c.ok.String())
	return c
}

// inDialog sends ACK or BYE for c along its Record-Route.
func (b *browser) inDialog(c *call, method string, cseq int) {
	b.t.Helper()
	var routes []string
	for _, h := range c.ok.GetHeaders("Record-Route") {
		routes = append([]string{h.Value()}, routes...) // a caller's route set is reversed
	}
	b.send(b.request(method, c.ok.Contact().Address.String(), c.ok.To().String(), c.callID, c.tag, cseq,
		[]string{"Route: " + strings.Join(routes, ", ")}, ""))
}

// answer answers an INVITE the browser received with 200 and a WebRTC
// answer, and returns the 200 sent.
func (b *browser) answer(inv *sip.Request) {
	b.t.Helper()
	var s strings.Builder
	line := func(l string) { s.WriteString(l + "\r\n") }
	line("SIP/2.0 200 OK")
	for _, h := range inv.GetHeaders("Via") {
		line(h.String())
	}
	for _, h := range inv.GetHeaders("Record-Route") {
		line(h.String())
	}
	line(inv.From().String())
	line(inv.To().String() + ";tag=" + randHex(4))
	line(inv.CallID().String())
	line(inv.CSeq().String())
	line("Contact: <" + b.contact() + ">")
	body := webrtcSDP("active")
	line("Content-Type: application/sdp")
	line("Content-Length: " + strconv.Itoa(len(body)))
	line("")
	b.send(s.String() + body)
}

// reply answers req with code and no body.
func (b *browser) reply(req *sip.Request, code int, reason string) {
	b.t.Helper()
	var s strings.Builder
	s.WriteString("SIP/2.0 " + strconv.Itoa(code) + " " + reason + "\r\n")
	for _, h := range req.GetHeaders("Via") {
		s.WriteString(h.String() + "\r\n")
	}
	s.WriteString(req.From().String() + "\r\n" + req.To().String() + "\r\n")
	s.WriteString(req.CallID().String() + "\r\n" + req.CSeq().String() + "\r\nContent-Length: 0\r\n\r\n")
	b.send(s.String())
}

// webrtcSDP is audio as a browser offers or answers it once ICE gathering
// is complete, as JsSIP and SIP.js wait for by default (setup actpass in an
// offer, active in an answer): ICE credentials and a host candidate on
// loopback, the default candidate in m= and c=, a DTLS fingerprint,
// rtcp-mux, UDP/TLS/RTP/SAVPF. (A trickle-ICE offer's c=IN IP4 0.0.0.0 is
// taken by rtpengine for a call on hold.)
func webrtcSDP(setup string) string {
	return "v=0\r\n" +
		"o=- 4611731400430051336 2 IN IP4 127.0.0.1\r\n" +
		"s=-\r\n" +
		"t=0 0\r\n" +
		"a=msid-semantic: WMS\r\n" +
		"m=audio 54400 UDP/TLS/RTP/SAVPF 111 0\r\n" +
		"c=IN IP4 127.0.0.1\r\n" +
		"a=rtcp:54400 IN IP4 127.0.0.1\r\n" +
		"a=candidate:1 1 udp 2122260223 127.0.0.1 54400 typ host generation 0\r\n" +
		"a=ice-ufrag:" + randHex(2) + "\r\n" +
		"a=ice-pwd:" + randHex(12) + "\r\n" +
		"a=fingerprint:sha-256 19:E2:1C:3B:4B:9F:81:E6:B8:5C:F4:A5:A8:D8:73:04:BB:05:2F:70:9F:04:A9:0E:05:E9:26:33:E8:70:88:A2\r\n" +
		"a=setup:" + setup + "\r\n" +
		"a=mid:0\r\n" +
		"a=sendrecv\r\n" +
		"a=rtcp-mux\r\n" +
		"a=rtpmap:111 opus/48000/2\r\n" +
		"a=rtpmap:0 PCMU/8000\r\n"
}
