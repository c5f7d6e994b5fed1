package asyncsip_test

import (
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
	uas, uasPort := startUAS(t, "uas_rr.xml", 60*time.Second, nil)
	p := startProxy(t, asyncsip.Config{}, tm.Routes{Request: relayTo(uri("bob", uasPort))})

	res := sipp.Run(t, sipp.Config{Scenario: scenario("uac_rr.xml"), Remote: p.addr, Service: "bob",
		Calls: calls, Rate: 50, Timeout: 40 * time.Second})
	requireAllOK(t, res, calls)
	requireUASOK(t, uas, calls)

	// Each call made two server transactions here (INVITE, BYE) and one
	// ACK forwarded without a transaction: ACK and BYE went through us.
	st := p.srv.Core().Stats()
	require.GreaterOrEqual(t, st.ServerTxCreated, uint64(2*calls), "%+v", st)
	require.GreaterOrEqual(t, st.ClientTxCreated, uint64(2*calls), "%+v", st)
	require.GreaterOrEqual(t, st.Stateless, uint64(calls), "%+v", st)
	require.Zero(t, st.Panics, "%+v", st)
	require.Zero(t, st.Abandoned, "%+v", st)
}
