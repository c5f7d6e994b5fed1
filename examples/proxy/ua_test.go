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
	ch := r.GetHeaders("WWW-Authenticate")
	require.NotEmpty(u.t, ch)
	nonce := param(ch[0].Value(), "nonce")
	realm := param(ch[0].Value(), "realm")
	alg := auth.Algorithm(param(ch[0].Value(), "algorithm"))
	ha1, err := auth.HA1(alg, u.user, realm, password)
	require.NoError(u.t, err)
	cred := auth.Credentials{Username: u.user, Realm: realm, Nonce: nonce, URI: "sip:" + domain,
		Algorithm: alg, QOP: "auth", NC: "00000001", CNonce: "c0ffee"}
	cred.Response, err = auth.Response(cred, "REGISTER", ha1)
	require.NoError(u.t, err)
	authz := fmt.Sprintf("Authorization: Digest username=\"%s\", realm=\"%s\", nonce=\"%s\", uri=\"%s\", response=\"%s\", algorithm=%s, qop=auth, nc=%s, cnonce=\"%s\"\n",
		cred.Username, cred.Realm, cred.Nonce, cred.URI, cred.Response, cred.Algorithm, cred.NC, cred.CNonce)
	u.send(build(authz), u.proxy)
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
	u.seq++
	u.send(fmt.Sprintf(`INVITE %s SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:%d;branch=z9hG4bK-inv-%s;rport
Max-Forwards: 70
From: <sip:%s@127.0.0.1>;tag=a-%s
To: <%s>
Call-ID: %s
CSeq: 1 INVITE
Contact: <%s>
Content-Length: 0

`, ruri, u.port(), callID, u.user, callID, ruri, callID, u.contact()), u.proxy)
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
