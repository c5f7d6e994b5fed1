package e2e

import (
	"bufio"
	"crypto/rand"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/asyncsip/asyncsip"
	"github.com/asyncsip/asyncsip/internal/e2e/e2etest"
	"github.com/asyncsip/asyncsip/tm"
	"github.com/asyncsip/asyncsip/transport"
)

// wsClient is a minimal RFC 6455 client written for the tests: it masks
// its frames as a browser does.
type wsClient struct {
	t  *testing.T
	nc net.Conn
	br *bufio.Reader
}

func dialWS(t *testing.T, addr netip.AddrPort, protocol string) (*wsClient, *http.Response) {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr.String(), 2*time.Second)
	require.NoError(t, err)
	t.Cleanup(func() { _ = nc.Close() })
	var k [16]byte
	_, _ = rand.Read(k[:])
	key := base64.StdEncoding.EncodeToString(k[:])
	hs := "GET / HTTP/1.1\r\nHost: " + addr.String() + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: " + key + "\r\nSec-WebSocket-Version: 13\r\n"
	if protocol != "" {
		hs += "Sec-WebSocket-Protocol: " + protocol + "\r\n"
	}
	_ = nc.SetDeadline(time.Now().Add(wait))
	_, err = io.WriteString(nc, hs+"\r\n")
	require.NoError(t, err)
	br := bufio.NewReader(nc)
	resp, err := http.ReadResponse(br, nil)
	require.NoError(t, err)
	if resp.StatusCode == http.StatusSwitchingProtocols {
		sum := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
		require.Equal(t, base64.StdEncoding.EncodeToString(sum[:]), resp.Header.Get("Sec-WebSocket-Accept"))
		require.Equal(t, "sip", resp.Header.Get("Sec-WebSocket-Protocol"))
	}
	return &wsClient{t: t, nc: nc, br: br}, resp
}

func (c *wsClient) port() int { return c.nc.LocalAddr().(*net.TCPAddr).Port }

// frame writes one frame, masked unless unmasked is set.
func (c *wsClient) frame(fin bool, op byte, payload []byte, unmasked bool) {
	c.t.Helper()
	b0 := op
	if fin {
		b0 |= 0x80
	}
	f := []byte{b0}
	mbit := byte(0x80)
	if unmasked {
		mbit = 0
	}
	switch n := len(payload); {
	case n < 126:
		f = append(f, mbit|byte(n))
	case n < 1<<16:
		f = append(f, mbit|126)
		f = binary.BigEndian.AppendUint16(f, uint16(n))
	default:
		f = append(f, mbit|127)
		f = binary.BigEndian.AppendUint64(f, uint64(n))
	}
	p := append([]byte(nil), payload...)
	if !unmasked {
		var m [4]byte
		_, _ = rand.Read(m[:])
		f = append(f, m[:]...)
		for i := range p {
			p[i] ^= m[i&3]
		}
	}
	_ = c.nc.SetWriteDeadline(time.Now().Add(wait))
	_, err := c.nc.Write(append(f, p...))
	require.NoError(c.t, err)
}

// sendSIP sends a message as one text frame, or in two fragments.
func (c *wsClient) sendSIP(msg string, fragmented bool) {
	if !fragmented {
		c.frame(true, 0x1, []byte(msg), false)
		return
	}
	half := len(msg) / 2
	c.frame(false, 0x1, []byte(msg[:half]), false)
	c.frame(true, 0x0, []byte(msg[half:]), false)
}

// next reads one frame from the server (never masked).
func (c *wsClient) next() (op byte, payload []byte) {
	c.t.Helper()
	_ = c.nc.SetReadDeadline(time.Now().Add(wait))
	var h [2]byte
	_, err := io.ReadFull(c.br, h[:])
	require.NoError(c.t, err)
	require.Zero(c.t, h[1]&0x80, "server frames are not masked")
	n := uint64(h[1] & 0x7f)
	switch n {
	case 126:
		var b [2]byte
		_, err = io.ReadFull(c.br, b[:])
		n = uint64(binary.BigEndian.Uint16(b[:]))
	case 127:
		var b [8]byte
		_, err = io.ReadFull(c.br, b[:])
		n = binary.BigEndian.Uint64(b[:])
	}
	require.NoError(c.t, err)
	payload = make([]byte, n)
	_, err = io.ReadFull(c.br, payload)
	require.NoError(c.t, err)
	return h[0] & 0x0f, payload
}

// readSIP returns the next SIP message, skipping 100 Trying.
func (c *wsClient) readSIP() string {
	c.t.Helper()
	for {
		op, p := c.next()
		require.Contains(c.t, []byte{0x1, 0x2}, op)
		if !strings.HasPrefix(string(p), "SIP/2.0 100 ") {
			return string(p)
		}
	}
}

// TestWebSocketClient: a WebSocket client (RFC 7118) registers, is reached
// by a MESSAGE from a UDP peer over its own connection, sends a MESSAGE to
// that peer, pings, and closes; protocol errors close the connection.
func TestWebSocketClient(t *testing.T) {
	var mu sync.Mutex
	contacts := map[string]string{} // user -> "ip:port" of its connection
	route := func(c *tm.Context) {
		switch {
		case c.Method() == "REGISTER":
			mu.Lock()
			contacts[c.Req().From().Address.User] = c.Source().String()
			mu.Unlock()
			_ = c.Reply(200, "OK")
		case c.Recipient().User == "ws-alice":
			mu.Lock()
			src := contacts["ws-alice"]
			mu.Unlock()
			if src == "" {
				_ = c.Reply(404, "Not Found")
				return
			}
			_ = c.SetDestination("sip:" + src + ";transport=ws")
			_ = c.Relay()
		default:
			_ = c.Relay()
		}
	}
	srv := startStream(t, asyncsip.Config{Listen: []string{"udp:127.0.0.1:0", "ws:127.0.0.1:0"}},
		tm.Routes{Request: route})
	udpAddr, wsAddr := srv.Addrs()[0], srv.Addrs()[1]
	ws, _ := dialWS(t, wsAddr, "sip")

	reg := strings.Replace(e2etest.Request("REGISTER", "sip:127.0.0.1", "WS", ws.port(), "ws-reg", ""),
		"From: <sip:alice@", "From: <sip:ws-alice@", 1)
	ws.sendSIP(reg, true)
	resp := ws.readSIP()
	require.True(t, strings.HasPrefix(resp, "SIP/2.0 200 "), resp)

	ws.frame(true, 0x9, []byte("hb"), false)
	op, p := ws.next()
	require.Equal(t, byte(0xA), op)
	require.Equal(t, "hb", string(p))

	// Inbound: a UDP peer reaches the WebSocket client on its connection.
	peer := e2etest.NewUDPPeer(t)
	peer.SendTo(udpAddr, e2etest.Request("MESSAGE", "sip:ws-alice@127.0.0.1:"+strconv.Itoa(int(udpAddr.Port())),
		"UDP", peer.Port(), "ws-in", "hello ws"))
	msg := ws.readSIP()
	require.True(t, strings.HasPrefix(msg, "MESSAGE "), msg)
	require.Contains(t, e2etest.Header(msg, "Via"), "SIP/2.0/WS 127.0.0.1:"+strconv.Itoa(int(wsAddr.Port())))
	require.True(t, strings.HasSuffix(msg, "hello ws"))
	ws.frame(true, 0x2, []byte(e2etest.Answer(msg, 200, "OK")), false) // binary frame
	got, _ := peer.Read(wait)
	require.True(t, strings.HasPrefix(got, "SIP/2.0 200 "), got)

	// Outbound: the WebSocket client's MESSAGE leaves over UDP.
	ws.sendSIP(e2etest.Request("MESSAGE", "sip:bob@127.0.0.1:"+strconv.Itoa(peer.Port()), "WS", ws.port(), "ws-out", "hi udp"), false)
	got, from := peer.Read(wait)
	require.True(t, strings.HasPrefix(got, "MESSAGE "), got)
	require.Contains(t, e2etest.Header(got, "Via"), "SIP/2.0/UDP")
	peer.SendTo(from, e2etest.Answer(got, 200, "OK"))
	resp = ws.readSIP()
	require.True(t, strings.HasPrefix(resp, "SIP/2.0 200 "), resp)
	require.Equal(t, "ws-out", e2etest.Header(resp, "Call-ID"))

	// Close is echoed, then the server closes.
	ws.frame(true, 0x8, []byte{0x03, 0xe8}, false)
	op, p = ws.next()
	require.Equal(t, byte(0x8), op)
	require.Equal(t, uint16(1000), binary.BigEndian.Uint16(p))
	_, err := ws.br.ReadByte()
	require.ErrorIs(t, err, io.EOF)

	// An unmasked client frame is a protocol error: close 1002.
	bad, _ := dialWS(t, wsAddr, "sip")
	bad.frame(true, 0x1, []byte("OPTIONS"), true)
	op, p = bad.next()
	require.Equal(t, byte(0x8), op)
	require.Equal(t, uint16(1002), binary.BigEndian.Uint16(p))

	// Without the sip subprotocol the upgrade is refused.
	_, hr := dialWS(t, wsAddr, "chat")
	require.Equal(t, http.StatusBadRequest, hr.StatusCode)
	require.Eventually(t, func() bool { return srv.StreamStats().FramingErrors == 2 }, wait, 10*time.Millisecond)
}

// TestSecureWebSocket: wss: is TLS then the same upgrade.
func TestSecureWebSocket(t *testing.T) {
	pki := newPKI(t)
	srv := startStream(t, asyncsip.Config{
		Listen: []string{"wss:127.0.0.1:0"},
		Stream: transport.StreamConfig{CertFile: pki.certFile, KeyFile: pki.keyFile},
	}, tm.Routes{Request: relayOrReply})
	p, err := pki.dialTLS(t, srv.Addrs()[0], false)
	require.NoError(t, err)
	var k [16]byte
	_, _ = rand.Read(k[:])
	p.send("GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n" +
		"Sec-WebSocket-Key: " + base64.StdEncoding.EncodeToString(k[:]) + "\r\nSec-WebSocket-Version: 13\r\n" +
		"Sec-WebSocket-Protocol: sip\r\n\r\n")
	_ = p.nc.SetReadDeadline(time.Now().Add(wait))
	hr, err := http.ReadResponse(p.br, nil)
	require.NoError(t, err)
	require.Equal(t, http.StatusSwitchingProtocols, hr.StatusCode)
	ws := &wsClient{t: t, nc: p.nc, br: p.br}
	ws.sendSIP(e2etest.Request("OPTIONS", "sip:127.0.0.1", "WSS", p.port(), "wss-1", ""), false)
	resp := ws.readSIP()
	require.True(t, strings.HasPrefix(resp, "SIP/2.0 200 "), resp)
}

// TestWebSocketCallerReachedByFlow: a WebSocket caller whose Contact is an
// unresolvable ".invalid" host (as browsers send) gets the callee's BYE:
// the Record-Route facing it carries a flow token naming its connection.
func TestWebSocketCallerReachedByFlow(t *testing.T) {
	srv := startStream(t, asyncsip.Config{Listen: []string{"udp:127.0.0.1:0", "ws:127.0.0.1:0"}},
		tm.Routes{Request: relayOrReply})
	udpAddr, wsAddr := srv.Addrs()[0], srv.Addrs()[1]
	ws, _ := dialWS(t, wsAddr, "sip")
	callee := e2etest.NewUDPPeer(t)

	inv := strings.Replace(e2etest.Request("INVITE", "sip:bob@127.0.0.1:"+strconv.Itoa(callee.Port()), "WSS", ws.port(), "flow-1", ""),
		"Contact: <sip:alice@127.0.0.1:"+strconv.Itoa(ws.port())+";transport=wss>", "Contact: <sip:alice@df7jal23ls0d.invalid;transport=ws>", 1)
	ws.sendSIP(inv, false)
	got, from := callee.Read(wait)
	require.Equal(t, udpAddr, from)
	rr := e2etest.Headers(got, "Record-Route")
	_, tokens := withoutFlow(t, rr)
	require.Equal(t, 1, tokens, "%v", rr)
	callee.SendTo(from, e2etest.Answer(got, 200, "OK"))
	resp := ws.readSIP()
	require.True(t, strings.HasPrefix(resp, "SIP/2.0 200 "), resp)

	bye := "BYE sip:alice@df7jal23ls0d.invalid;transport=ws SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP 127.0.0.1:" + strconv.Itoa(callee.Port()) + ";branch=z9hG4bK-flowbye;rport\r\n" +
		"Route: " + rr[0] + "\r\nRoute: " + rr[1] + "\r\n" +
		"Max-Forwards: 70\r\nFrom: <sip:bob@127.0.0.1>;tag=uas\r\nTo: <sip:alice@127.0.0.1>;tag=a-flow-1\r\n" +
		"Call-ID: flow-1\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n"
	callee.SendTo(udpAddr, bye)
	got2 := ws.readSIP()
	require.True(t, strings.HasPrefix(got2, "BYE "), got2)
	require.Contains(t, e2etest.Header(got2, "Via"), "SIP/2.0/WS ")
	ws.frame(true, 0x1, []byte(e2etest.Answer(got2, 200, "OK")), false)
	resp2, _ := callee.Read(wait)
	for strings.HasPrefix(resp2, "INVITE ") {
		// A retransmission of the INVITE (Timer A, T1 = 50 ms) sent before
		// the callee's 200 reached the proxy (seen under -race).
		resp2, _ = callee.Read(wait)
	}
	require.True(t, strings.HasPrefix(resp2, "SIP/2.0 200 "), resp2)
	require.Equal(t, "2 BYE", e2etest.Header(resp2, "CSeq"))
}
