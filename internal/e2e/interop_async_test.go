package e2e

import (
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/stretchr/testify/require"

	"github.com/asyncsip/asyncsip"
	"github.com/asyncsip/asyncsip/async"
	"github.com/asyncsip/asyncsip/internal/sipp"
	"github.com/asyncsip/asyncsip/reactor"
	"github.com/asyncsip/asyncsip/tm"
)

// awaitRoute is the async benchmark route: a new INVITE waits d on a loop
// timer (async.Sleep, OpenSIPS's async(usleep)) before it is relayed to
// target; requests routed back through us are relayed at once. resumed
// counts the resumes, peak the most INVITEs suspended at once.
func awaitRoute(target string, d time.Duration, resumed, peak *atomic.Int64) func(c *tm.Context) {
	var inFlight atomic.Int64
	return func(c *tm.Context) {
		if c.LooseRouted() || c.Method() != "INVITE" {
			_ = c.Relay()
			return
		}
		n := inFlight.Add(1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		async.Await(c, async.Sleep(d), func(_ struct{}, err error) {
			inFlight.Add(-1)
			resumed.Add(1)
			if err != nil {
				_ = c.Reply(500, "Server Internal Error")
				return
			}
			_ = c.Relay(target)
		})
	}
}

// INVITE → Await(Sleep(20ms)) → relay, with 2 workers at 150 calls/s:
// blocking for 20 ms in the route would cap 2 workers at 100 INVITEs/s,
// but suspended transactions hold no worker, so every call completes.
func TestInteropAwaitSleepThenRelay(t *testing.T) {
	const calls, rate = 300, 150
	uas, uasPort := startUAS(t, sipp.UAS, 90*time.Second, nil)
	var resumed, peak atomic.Int64
	p := startProxy(t, asyncsip.Config{Workers: 2},
		tm.Routes{Request: awaitRoute(uri("bob", uasPort), 20*time.Millisecond, &resumed, &peak)})

	res := runUAC(t, sipp.Config{Scenario: sipp.UAC, Remote: p.addr, Service: "bob",
		Calls: calls, Rate: rate, Timeout: 60 * time.Second})
	requireAllOK(t, res, calls)
	requireUASOK(t, uas, calls)
	require.Equal(t, int64(calls), resumed.Load())
	st := p.srv.Stats()
	require.Zero(t, st.Suspended, "%+v", st)
	require.Zero(t, st.SuspendTimeouts, "%+v", st)
	t.Logf("%d calls at %d/s in %v; at most %d INVITEs suspended at once on 2 workers",
		calls, rate, res.Elapsed.Round(time.Millisecond), peak.Load())
}

// An op that outlasts its Await timeout: the resume gets ErrTimeout and the
// route answers 503 with Retry-After, which the UAC receives and ACKs.
func TestInteropAwaitTimeout503(t *testing.T) {
	const calls = 20
	var timeouts atomic.Int64
	p := startProxy(t, asyncsip.Config{}, tm.Routes{Request: func(c *tm.Context) {
		async.Await(c, async.Sleep(2*time.Second), func(_ struct{}, err error) {
			if errors.Is(err, async.ErrTimeout) {
				timeouts.Add(1)
				_ = c.Reply(503, "Service Unavailable", retryAfter("5"))
				return
			}
			_ = c.Reply(500, "Server Internal Error") // the op should not have completed
		}, async.Timeout(100*time.Millisecond))
	}})

	res := runUAC(t, sipp.Config{Scenario: scenario("uac_503.xml"), Remote: p.addr, Service: "bob",
		Calls: calls, Rate: 20, Timeout: 30 * time.Second})
	requireAllOK(t, res, calls)
	require.Equal(t, int64(calls), timeouts.Load())
	requireDrained(t, p)
}

// A CANCEL while the route is suspended: the proxy answers the CANCEL 200
// and the INVITE 487 at once, aborts the pending op (its cancel runs) and
// never runs the resume. The op would take 30 s, longer than SIPp's
// timeout: the calls finish only because the CANCEL cuts the wait.
func TestInteropCancelWhileSuspended(t *testing.T) {
	const calls = 20
	var aborted, resumed atomic.Int64
	slow := async.OpFunc[struct{}](func(l *reactor.Loop, done func(struct{}, error)) func() {
		stop := async.Sleep(30*time.Second).Start(l, done)
		return func() { aborted.Add(1); stop() }
	})
	p := startProxy(t, asyncsip.Config{}, tm.Routes{Request: func(c *tm.Context) {
		async.Await(c, async.Op[struct{}](slow), func(struct{}, error) {
			resumed.Add(1)
			_ = c.Relay("sip:bob@127.0.0.1:9")
		}, async.Timeout(time.Minute))
	}})

	res := runUAC(t, sipp.Config{Scenario: scenario("uac_cancel_early.xml"), Remote: p.addr, Service: "bob",
		Calls: calls, Rate: 20, Timeout: 20 * time.Second})
	requireAllOK(t, res, calls)
	require.Equal(t, int64(calls), aborted.Load(), "every pending op was aborted")
	require.Zero(t, resumed.Load(), "no resume ran after a CANCEL")
	requireDrained(t, p)
}

func retryAfter(sec string) sip.Header { return sip.NewHeader("Retry-After", sec) }
