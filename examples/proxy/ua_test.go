package main

import (
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/stretchr/testify/require"

	"github.com/asyncsip/asyncsip/modules/auth"
)

// ua is a minimal SIP user agent for end-to-end tests: one UDP socket,
// hand-built requests, responses parsed with sipgo's parser.
type ua struct {
	t     *testing.T
	conn  *net.UDPConn
	proxy *net.UDPAddr
	user  string
	seq   int
}

func newUA(t *testing.T, user string, proxy *net.UDPAddr) *ua {
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	return &ua{t: t, conn: c, proxy: proxy, user: user}
}

func (u *ua) port() int { return u.conn.LocalAddr().(*net.UDPAddr).Port }

func (u *ua) contact() string { return fmt.Sprintf("sip:%s@127.0.0.1:%d", u.user, u.port()) }

func (u *ua) send(msg string, to *net.UDPAddr) {
	u.t.Helper()
	_, err := u.conn.WriteToUDP([]byte(strings.ReplaceAll(msg, "\n", "\r\n")), to)
	require.NoError(u.t, err)
}

// recv reads the next message (bounded wait), skipping 100 Trying.
func (u *ua) recv() (sip.Message, *net.UDPAddr) {
	u.t.Helper()
	buf := make([]byte, 65535)
	for {
		require.NoError(u.t, u.conn.SetReadDeadline(time.Now().Add(5*time.Second)))
		n, from, err := u.conn.ReadFromUDP(buf)
		require.NoError(u.t, err, "%s waiting for a SIP message", u.user)
		m, err := sip.ParseMessage(append([]byte(nil), buf[:n]...))
		require.NoError(u.t, err)
		if r, ok := m.(*sip.Response); ok && r.StatusCode == 100 {
			continue
		}
		return m, from
	}
}

func (u *ua) recvResponse() *sip.Response {
	u.t.Helper()
	m, _ := u.recv()
	r, ok := m.(*sip.Response)
	require.True(u.t, ok, "expected a response, got %s", m.String())
	return r
}

func (u *ua) register(domain, password string, expires int) *sip.Response {
	u.t.Helper()
	callID := fmt.Sprintf("reg-%s-%d", u.user, u.port())
	build := func(authz string) string {
		u.seq++
		return fmt.Sprintf(`REGISTER sip:%s SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:%d;branch=z9hG4bK-%s-%d;rport
Max-Forwards: 70
From: <sip:%s@%s>;tag=f%d
To: <sip:%s@%s>
Call-ID: %s
CSeq: %d REGISTER
Contact: <%s>;expires=%d
%sContent-Length: 0

`, domain, u.port(), u.user, u.seq, u.user, domain, u.port(), u.user, domain, callID, u.seq, u.contact(), expires, authz)
	}
	u.send(build(""), u.proxy)
	r := u.recvResponse()
	if r.StatusCode != 401 {
		return r
	}
	u.send(build(u.digest(r.GetHeaders("WWW-Authenticate"), "Authorization", "REGISTER", "sip:"+domain, password, "00000001")), u.proxy)
	return u.recvResponse()
}

// param extracts a digest challenge parameter.
func param(v, name string) string {
	i := strings.Index(v, name+"=")
	if i < 0 {
		return ""
	}
	v = v[i+len(name)+1:]
	if strings.HasPrefix(v, `"`) {
		end := strings.IndexByte(v[1:], '"')
		return v[1 : end+1]
	}
	if end := strings.IndexAny(v, ", "); end >= 0 {
		return v[:end]
	}
	return v
}

func (u *ua) invite(ruri, callID string) {
	u.send(u.inviteMsg(ruri, callID, "z9hG4bK-inv-"+callID, 1, ""), u.proxy)
}

// inviteMsg builds an INVITE from u; extra holds header lines.
func (u *ua) inviteMsg(ruri, callID, branch string, cseq int, extra string) string {
	return fmt.Sprintf(`INVITE %s SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:%d;branch=%s;rport
Max-Forwards: 70
From: <sip:%s@127.0.0.1>;tag=a-%s
To: <%s>
Call-ID: %s
CSeq: %d INVITE
Contact: <%s>
%sContent-Length: 0

`, ruri, u.port(), branch, u.user, callID, ruri, callID, cseq, u.contact(), extra)
}

// call sends an INVITE and answers the proxy's 407 challenge with
// password: ACK for the 407, then the INVITE again with
// Proxy-Authorization (CSeq 2), as a phone does. The responses to the
// second INVITE are left for recvResponse.
func (u *ua) call(ruri, callID, password string) {
	u.t.Helper()
	u.invite(ruri, callID)
	r := u.recvResponse()
	require.Equal(u.t, 407, r.StatusCode, "the proxy challenges the call: %s", r.String())
	u.ack407(r, ruri, "z9hG4bK-inv-"+callID)
	authz := u.digest(r.GetHeaders("Proxy-Authenticate"), "Proxy-Authorization", "INVITE", ruri, password, "00000001")
	u.send(u.inviteMsg(ruri, callID, "z9hG4bK-inv2-"+callID, 2, authz), u.proxy)
}

// ack407 acknowledges a non-2xx final response (same branch, RFC 3261 §17.1.1.3).
func (u *ua) ack407(r *sip.Response, ruri, branch string) {
	u.send(fmt.Sprintf(`ACK %s SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:%d;branch=%s;rport
Max-Forwards: 70
%s
%s
Call-ID: %s
CSeq: 1 ACK
Content-Length: 0

`, ruri, u.port(), branch, r.From().String(), r.To().String(), string(*r.CallID())), u.proxy)
}

// digest answers the first challenge of chs as a header line "name: Digest …\n".
func (u *ua) digest(chs []sip.Header, name, method, uri, password, nc string) string {
	u.t.Helper()
	require.NotEmpty(u.t, chs, "a challenge")
	v := chs[0].Value()
	alg := auth.Algorithm(param(v, "algorithm"))
	realm, nonce := param(v, "realm"), param(v, "nonce")
	ha1, err := auth.HA1(alg, u.user, realm, password)
	require.NoError(u.t, err)
	cred := auth.Credentials{Username: u.user, Realm: realm, Nonce: nonce, URI: uri,
		Algorithm: alg, QOP: "auth", NC: nc, CNonce: "c0ffee"}
	cred.Response, err = auth.Response(cred, method, ha1)
	require.NoError(u.t, err)
	return fmt.Sprintf("%s: Digest username=\"%s\", realm=\"%s\", nonce=\"%s\", uri=\"%s\", response=\"%s\", algorithm=%s, qop=auth, nc=%s, cnonce=\"%s\"\n",
		name, cred.Username, cred.Realm, cred.Nonce, cred.URI, cred.Response, cred.Algorithm, cred.NC, cred.CNonce)
}

// answer responds to req (received from `from`) with code.
func (u *ua) answer(req *sip.Request, from *net.UDPAddr, code int, reason string) {
	var b strings.Builder
	b.WriteString("SIP/2.0 " + strconv.Itoa(code) + " " + reason + "\n")
	for _, h := range req.GetHeaders("Via") {
		b.WriteString(h.String() + "\n")
	}
	for _, h := range req.GetHeaders("Record-Route") {
		b.WriteString(h.String() + "\n")
	}
	b.WriteString(req.From().String() + "\n")
	to := req.To().String()
	if !strings.Contains(to, "tag=") {
		to += ";tag=uas-" + u.user
	}
	b.WriteString(to + "\n")
	b.WriteString(req.CallID().String() + "\n")
	b.WriteString(req.CSeq().String() + "\n")
	b.WriteString("Contact: <" + u.contact() + ">\nContent-Length: 0\n\n")
	u.send(b.String(), from)
}

func (u *ua) recvRequest() (*sip.Request, *net.UDPAddr) {
	u.t.Helper()
	m, from := u.recv()
	r, ok := m.(*sip.Request)
	require.True(u.t, ok, "expected a request, got %s", m.String())
	return r, from
}
