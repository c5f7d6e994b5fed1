package e2e

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/asyncsip/asyncsip"
	"github.com/asyncsip/asyncsip/internal/sipp"
	"github.com/asyncsip/asyncsip/internal/testenv"
	"github.com/asyncsip/asyncsip/tm"
)

// SIPp over TCP (-t t1) through the proxy to a UDP UAS: every call
// completes, the UAS sees a UDP Via and two Record-Routes, the UAC's ACK
// and BYE carry both as Route and come back over its one connection.
func TestSIPpTCPToUDP(t *testing.T) {
	const calls = 20
	uas, uasPort := startUAS(t, "uas_tcp_conv.xml", 60*time.Second, nil)
	srv := startStream(t, asyncsip.Config{Listen: []string{"udp:127.0.0.1:0", "tcp:127.0.0.1:0"}},
		tm.Routes{Request: relayTo(uri("bob", uasPort))})
	res := runUAC(t, sipp.Config{Scenario: scenario("uac_tcp_conv.xml"), Remote: srv.Addrs()[1].String(),
		Service: "bob", Calls: calls, Rate: 20, Timeout: 40 * time.Second,
		LocalPort: testenv.FreeTCPPort(t), Args: []string{"-t", "t1"}})
	requireAllOK(t, res, calls)
	requireUASOK(t, uas, calls)
	st := srv.StreamStats()
	require.EqualValues(t, 1, st.Accepted, "%+v", st)
	require.GreaterOrEqual(t, st.Received, uint64(3*calls), "INVITE, ACK and BYE of every call over TCP: %+v", st)
	require.Zero(t, st.Dialed, "%+v", st)
}

// SIPp over UDP through the proxy to a SIPp UAS over TCP (-t t1): the
// proxy connects once (without blocking a loop) and sends every INVITE,
// ACK and BYE on that connection; responses come back on it.
func TestSIPpUDPToTCP(t *testing.T) {
	const calls = 20
	port := testenv.FreeTCPPort(t)
	uas := sipp.Start(t, sipp.Config{Scenario: scenario("uas_tcp_conv.xml"), LocalPort: port,
		Timeout: 60 * time.Second, Args: []string{"-t", "t1"}})
	srv := startStream(t, asyncsip.Config{Listen: []string{"udp:127.0.0.1:0", "tcp:127.0.0.1:0"}},
		tm.Routes{Request: relayTo(uri("bob", port) + ";transport=tcp")})
	// SIPp needs a moment to listen: a refused first connect would fail
	// that call (after Timer B), so wait until it accepts.
	require.Eventually(t, func() bool { return tcpListening(port) }, 5*time.Second, 20*time.Millisecond)
	res := runUAC(t, sipp.Config{Scenario: scenario("uac_tcp_conv.xml"), Remote: srv.Addrs()[0].String(),
		Service: "bob", Calls: calls, Rate: 20, Timeout: 40 * time.Second})
	requireAllOK(t, res, calls)
	requireUASOK(t, uas, calls)
	st := srv.StreamStats()
	require.GreaterOrEqual(t, st.Dialed, uint64(1), "%+v", st)
	require.GreaterOrEqual(t, st.Received, uint64(2*calls), "180, 200 of every INVITE over TCP: %+v", st)
}
