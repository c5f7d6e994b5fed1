package e2e

// Regression tests for bugs the SIPp interop tests found, each pinned with
// plain UDP sockets so that it fails deterministically.

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/asyncsip/asyncsip"
	"github.com/asyncsip/asyncsip/internal/e2e/e2etest"
	"github.com/asyncsip/asyncsip/tm"
)

// A provisional response that reaches the proxy after the 2xx of its
// INVITE (a UAS sending 180 and 200 back to back is enough: with several
// loops the 180 can be handed over to the owner loop after the 200 was
// read there) was forwarded upstream statelessly, after the 200: SIPp
// aborted such calls ("unexpected message while pausing"). Only 2xx
// retransmissions may follow the 2xx (RFC 3261 §16.7 step 5, RFC 6026 §8).
func TestRegressLateProvisionalAfter2xx(t *testing.T) {
	uac, uas := e2etest.NewUDPPeer(t), e2etest.NewUDPPeer(t)
	// One worker: the order in which the proxy handles the UAS's messages
	// is the order they were sent.
	p := startProxy(t, asyncsip.Config{Workers: 1}, tm.Routes{Request: func(c *tm.Context) { _ = c.Relay() }})

	uac.SendTo(p.srv.Addrs()[0], e2etest.CRLF(`INVITE sip:bob@127.0.0.1:`+itoa(uas.Port())+` SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:`+itoa(uac.Port())+`;branch=z9hG4bK-late-1;rport
Max-Forwards: 70
From: <sip:alice@127.0.0.1>;tag=a1
To: <sip:bob@127.0.0.1>
Call-ID: late-provisional
CSeq: 1 INVITE
Contact: <sip:alice@127.0.0.1:`+itoa(uac.Port())+`>
Content-Length: 0

`))
	got, _ := uac.Next(3 * time.Second)
	require.True(t, strings.HasPrefix(got, "SIP/2.0 100 "), got)

	inv, from := uas.Next(3 * time.Second)
	require.True(t, strings.HasPrefix(inv, "INVITE "), inv)
	lines := strings.Split(inv, "\r\n")
	ok, ringing := response(lines, "200 OK", uas.Port()), response(lines, "180 Ringing", uas.Port())
	for _, m := range [][]byte{ok, ringing, ok} { // 200, the late 180, a 200 retransmission
		_, err := uas.Conn().WriteToUDPAddrPort(m, from)
		require.NoError(t, err)
	}

	got, _ = uac.Next(3 * time.Second)
	require.True(t, strings.HasPrefix(got, "SIP/2.0 200 "), got)
	got, _ = uac.Next(3 * time.Second)
	require.True(t, strings.HasPrefix(got, "SIP/2.0 200 "), "after the 200, only its retransmission may follow:\n%s", got)
}
