package e2e

import (
	"context"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/asyncsip/asyncsip"
	"github.com/asyncsip/asyncsip/tm"
)

func TestRelayOverUDP(t *testing.T) {
	uas, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	defer uas.Close()
	uac, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	defer uac.Close()

	srv, err := asyncsip.New(asyncsip.Config{Listen: []string{"udp:127.0.0.1:0"}, Workers: 2})
	require.NoError(t, err)
	srv.Request(func(c *tm.Context) { _ = c.Relay() })
	require.NoError(t, srv.Start())
	defer srv.Shutdown(context.Background())
	paddr := net.UDPAddrFromAddrPort(srv.Addrs()[0])

	uasPort := uas.LocalAddr().(*net.UDPAddr).Port
	msg := "OPTIONS sip:bob@127.0.0.1:" + itoa(uasPort) + " SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP 127.0.0.1:" + itoa(uac.LocalAddr().(*net.UDPAddr).Port) + ";branch=z9hG4bK-smoke;rport\r\n" +
		"Max-Forwards: 70\r\nFrom: <sip:a@x>;tag=1\r\nTo: <sip:b@y>\r\nCall-ID: smoke\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
	_, err = uac.WriteToUDP([]byte(msg), paddr)
	require.NoError(t, err)

	buf := make([]byte, 4096)
	require.NoError(t, uas.SetReadDeadline(time.Now().Add(3*time.Second)))
	n, from, err := uas.ReadFromUDP(buf)
	require.NoError(t, err)
	fwd := string(buf[:n])
	require.True(t, strings.HasPrefix(fwd, "OPTIONS "), fwd)
	// Answer: copy Vias, From, To, Call-ID, CSeq.
	var hdrs []string
	for _, line := range strings.Split(fwd, "\r\n")[1:] {
		for _, p := range []string{"Via:", "From:", "To:", "Call-ID:", "CSeq:"} {
			if strings.HasPrefix(line, p) {
				hdrs = append(hdrs, line)
			}
		}
	}
	resp := "SIP/2.0 200 OK\r\n" + strings.Join(hdrs, "\r\n") + "\r\nContent-Length: 0\r\n\r\n"
	_, err = uas.WriteToUDP([]byte(resp), from)
	require.NoError(t, err)

	require.NoError(t, uac.SetReadDeadline(time.Now().Add(3*time.Second)))
	n, _, err = uac.ReadFromUDP(buf)
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(string(buf[:n]), "SIP/2.0 200 OK"), string(buf[:n]))
}

func itoa(i int) string { return strconv.Itoa(i) }
