package e2e

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/asyncsip/asyncsip"
	"github.com/asyncsip/asyncsip/internal/sipp"
	"github.com/asyncsip/asyncsip/tm"
)

// A UAC → proxy → UAS call with record-routing: the UAS checks the
// Record-Route and that INVITE, ACK and BYE arrive through the proxy; the
// UAC checks the Record-Route in the 200 and routes ACK/BYE by it.
func TestInteropCallRecordRoute(t *testing.T) {
	const calls = 60
	uas, uasPort := startUAS(t, sipp.UAS, 60*time.Second, nil)
	p := startProxy(t, asyncsip.Config{}, tm.Routes{Request: relayTo(uri("bob", uasPort))})

	res := runUAC(t, sipp.Config{Scenario: sipp.UAC, Remote: p.addr, Service: "bob",
		Calls: calls, Rate: 50, Timeout: 40 * time.Second})
	requireAllOK(t, res, calls)
	requireUASOK(t, uas, calls)

	// Each call made two server transactions here (INVITE, BYE) and one
	// ACK forwarded without a transaction: ACK and BYE went through us.
	st := p.srv.Stats()
	require.GreaterOrEqual(t, st.ServerTxCreated, uint64(2*calls), "%+v", st)
	require.GreaterOrEqual(t, st.ClientTxCreated, uint64(2*calls), "%+v", st)
	require.GreaterOrEqual(t, st.Stateless, uint64(calls), "%+v", st)
	require.Zero(t, st.Panics, "%+v", st)
	require.Zero(t, st.Abandoned, "%+v", st)
}

// A UAS that answers 486 and a failure route that forks serially to a
// second UAS, which answers 200: every call succeeds through the second.
func TestInteropSerialForkAfterBusy(t *testing.T) {
	const calls = 20
	busy, busyPort := startUAS(t, "uas_busy.xml", 60*time.Second, nil)
	uas2, uas2Port := startUAS(t, sipp.UAS, 60*time.Second, nil)
	var forked atomic.Int64
	p := startProxy(t, asyncsip.Config{}, tm.Routes{
		Request: relayTo(uri("bob", busyPort)),
		Failure: func(c *tm.Context) {
			if c.Resp.StatusCode == 486 && len(c.Branches()) == 1 {
				if err := c.Relay(uri("bob", uas2Port)); err == nil {
					forked.Add(1)
				}
			}
		},
	})

	res := runUAC(t, sipp.Config{Scenario: sipp.UAC, Remote: p.addr, Service: "bob",
		Calls: calls, Rate: 20, Timeout: 40 * time.Second})
	requireAllOK(t, res, calls)
	requireUASOK(t, uas2, calls)
	requireUASOK(t, busy, calls) // it got its ACK for every 486
	require.Equal(t, int64(calls), forked.Load())
}

// A UAC that CANCELs after 180: the proxy answers the CANCEL 200, CANCELs
// the branch, the UAS answers 487 and the 487 reaches the UAC, which ACKs.
func TestInteropCancelAfterRinging(t *testing.T) {
	const calls = 20
	uas, uasPort := startUAS(t, "uas_cancel.xml", 60*time.Second, nil)
	p := startProxy(t, asyncsip.Config{}, tm.Routes{Request: relayTo(uri("bob", uasPort))})

	res := runUAC(t, sipp.Config{Scenario: scenario("uac_cancel.xml"), Remote: p.addr, Service: "bob",
		Calls: calls, Rate: 20, Timeout: 40 * time.Second})
	requireAllOK(t, res, calls)
	requireUASOK(t, uas, calls)
}

// shortTimers make Timer B (64*T1) 3.2 s and Timer C 1 s, so that the
// timeout tests take seconds.
var shortTimers = tm.Timers{T1: 50 * time.Millisecond, T2: 400 * time.Millisecond, T4: 500 * time.Millisecond,
	TimerC: time.Second}

// A UAS that never answers: Timer B ends the branch and the UAC gets 408,
// which it ACKs.
func TestInteropTimerB408(t *testing.T) {
	const calls = 10
	_, uasPort := startUAS(t, "uas_silent.xml", 60*time.Second, nil)
	timers := shortTimers
	timers.TimerC = time.Minute // Timer C would fire first otherwise (RFC 3261 §16.8)
	p := startProxy(t, asyncsip.Config{Core: tm.Config{Timers: timers}}, tm.Routes{Request: relayTo(uri("bob", uasPort))})

	res := runUAC(t, sipp.Config{Scenario: scenario("uac_408.xml"), Remote: p.addr, Service: "bob",
		Calls: calls, Rate: 20, Timeout: 30 * time.Second})
	requireAllOK(t, res, calls)
	// The 408 came from Timer B (64*T1 = 3.2 s), not from anything sooner.
	require.GreaterOrEqual(t, res.Elapsed, 64*shortTimers.T1, res.String())
	requireDrained(t, p)
}

// A UAS that rings and then ignores the call: Timer C makes the proxy
// CANCEL the branch (the UAS checks it gets that CANCEL); the UAS never
// sends 487, so the proxy ends the branch with 408 for the UAC.
func TestInteropTimerC408(t *testing.T) {
	const calls = 10
	uas, uasPort := startUAS(t, "uas_ring_forever.xml", 60*time.Second, nil)
	p := startProxy(t, asyncsip.Config{Core: tm.Config{Timers: shortTimers}}, tm.Routes{Request: relayTo(uri("bob", uasPort))})

	res := runUAC(t, sipp.Config{Scenario: scenario("uac_408.xml"), Remote: p.addr, Service: "bob",
		Calls: calls, Rate: 20, Timeout: 30 * time.Second})
	requireAllOK(t, res, calls)
	require.GreaterOrEqual(t, res.Elapsed, shortTimers.TimerC, res.String())
	requireUASOK(t, uas, calls) // every call got the proxy's CANCEL
	requireDrained(t, p)
}

// requireDrained waits (bounded) until no server transaction of p is
// waiting for a final response.
func requireDrained(t testing.TB, p *proxy) {
	t.Helper()
	require.Eventually(t, func() bool { return p.srv.Stats().InProgress == 0 },
		5*time.Second, 20*time.Millisecond, "%+v", p.srv.Stats())
}
