package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/textproto"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/asyncsip/asyncsip/internal/testenv"
)

// A proxy bound to 0.0.0.0 puts the -advertise address, not 127.0.0.1, in
// its Via and Record-Route (the UAs still reach it over 127.0.0.1).
func TestAdvertisedAddressOnWildcardListener(t *testing.T) {
	data := t.TempDir()
	cli(t, "-data", data, "user", "add", "bob", "bobpw")
	cli(t, "-data", data, "user", "add", "alice", "alicepw")
	port := testenv.FreeUDPPort(t)
	startProxyOn(t, []string{fmt.Sprintf("udp:0.0.0.0:%d", port)}, "-data", data, "-advertise", "192.0.2.99")
	addr := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port}

	bob := newUA(t, "bob", addr)
	require.Equal(t, 200, bob.register("127.0.0.1", "bobpw", 600).StatusCode)
	alice := newUA(t, "alice", addr)
	alice.call("sip:bob@127.0.0.1", "call-adv", "alicepw")
	inv, from := bob.recvRequest()
	require.Equal(t, "INVITE", string(inv.Method))
	rr := inv.RecordRoute()
	require.NotNil(t, rr)
	assert.Equal(t, "192.0.2.99", rr.Address.Host, "Record-Route: %s", rr.Value())
	assert.Equal(t, port, rr.Address.Port)
	assert.Equal(t, "192.0.2.99", inv.Via().Host, "top Via: %s", inv.Via().Value())
	assert.NotContains(t, inv.String(), "Record-Route: <sip:127.0.0.1")
	bob.answer(inv, from, 200, "OK")
	assert.Equal(t, 200, alice.recvResponse().StatusCode)
}

// A caller on TCP reaches a gateway on UDP through a proxy with both
// listeners, and gets its answers back on its connection. The caller is a
// trusted peer (a PBX on TCP, -trusted): authentication over TCP is in
// hostile_test.go.
func TestTCPListenerEndToEnd(t *testing.T) {
	data := t.TempDir()
	udpPort, tcpPort := testenv.FreeUDPPort(t), testenv.FreeTCPPort(t)
	startProxyOn(t, []string{fmt.Sprintf("udp:127.0.0.1:%d", udpPort), fmt.Sprintf("tcp:127.0.0.1:%d", tcpPort)},
		"-data", data, "-trusted", "127.0.0.1")
	gw := newUA(t, "gw", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: udpPort})
	cli(t, "-data", data, "gw", "add", "1", fmt.Sprintf("127.0.0.1:%d", gw.port()), "-prefix", "+1")

	conn, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", tcpPort), 5*time.Second)
	require.NoError(t, err)
	defer conn.Close()
	local := conn.LocalAddr().(*net.TCPAddr).Port
	inv := strings.ReplaceAll(fmt.Sprintf(`INVITE sip:+15551234@127.0.0.1 SIP/2.0
Via: SIP/2.0/TCP 127.0.0.1:%d;branch=z9hG4bK-tcp-1
Max-Forwards: 70
From: <sip:carol@127.0.0.1>;tag=c1
To: <sip:+15551234@127.0.0.1>
Call-ID: call-tcp
CSeq: 1 INVITE
Contact: <sip:carol@127.0.0.1:%d;transport=tcp>
Content-Length: 0

`, local, local), "\n", "\r\n")
	_, err = conn.Write([]byte(inv))
	require.NoError(t, err)

	req, from := gw.recvRequest()
	require.Equal(t, "INVITE", string(req.Method))
	assert.Equal(t, "+15551234", req.Recipient.User)
	gw.answer(req, from, 200, "OK")

	r := bufio.NewReader(conn)
	for {
		resp := readTCPResponse(t, conn, r)
		if resp.StatusCode == 100 {
			continue
		}
		assert.Equal(t, 200, resp.StatusCode)
		assert.Equal(t, "call-tcp", string(*resp.CallID()))
		break
	}
}

// readTCPResponse reads one SIP response framed by Content-Length.
func readTCPResponse(t *testing.T, conn net.Conn, r *bufio.Reader) *sip.Response {
	t.Helper()
	require.NoError(t, conn.SetReadDeadline(time.Now().Add(5*time.Second)))
	tp := textproto.NewReader(r)
	var head strings.Builder
	n := 0
	for {
		line, err := tp.ReadLine()
		require.NoError(t, err, "reading a response on TCP")
		if line == "" {
			break
		}
		head.WriteString(line + "\r\n")
		if k, v, ok := strings.Cut(line, ":"); ok && strings.EqualFold(strings.TrimSpace(k), "Content-Length") {
			n, _ = strconv.Atoi(strings.TrimSpace(v))
		}
	}
	body := make([]byte, n)
	_, err := io.ReadFull(r, body)
	require.NoError(t, err)
	m, err := sip.ParseMessage([]byte(head.String() + "\r\n" + string(body)))
	require.NoError(t, err)
	resp, ok := m.(*sip.Response)
	require.True(t, ok, "want a response, got %s", m.String())
	return resp
}
