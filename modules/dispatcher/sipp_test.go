package dispatcher_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/asyncsip/asyncsip"
	"github.com/asyncsip/asyncsip/internal/sipp"
	"github.com/asyncsip/asyncsip/internal/testenv"
	"github.com/asyncsip/asyncsip/modules/dispatcher"
	"github.com/asyncsip/asyncsip/tm"
)

// SIPp calls through the real server to two SIPp UASes (-aa answers the
// probes 200): calls share them; one UAS is killed; the calls placed right
// after fail over from the failure route (a 1 s branch timeout, then the
// other UAS) and all succeed; probing takes the dead UAS out and the calls
// after that go to the live one at once.
func TestSIPpKilledTargetIsTakenOut(t *testing.T) {
	sipp.Path(t) // skips without SIPp (fails under CI=true)
	uasA := sipp.Start(t, sipp.Config{Scenario: sipp.UAS, Args: []string{"-aa"}, Timeout: 60 * time.Second})
	uasB := sipp.Start(t, sipp.Config{Scenario: sipp.UAS, Args: []string{"-aa"}, Timeout: 60 * time.Second})
	uriA, uriB := fmt.Sprintf("sip:127.0.0.1:%d", uasA.Port()), fmt.Sprintf("sip:127.0.0.1:%d", uasB.Port())
	d, err := dispatcher.New(dispatcher.Config{
		Sets: []dispatcher.SetConfig{{ID: "gw", Targets: []dispatcher.Target{{URI: uriA}, {URI: uriB}}}},
		Probe: dispatcher.ProbeConfig{
			Interval: 200 * time.Millisecond, Timeout: 200 * time.Millisecond, FailAfter: 3, RecoverAfter: 2,
		},
	})
	require.NoError(t, err)
	srv, err := asyncsip.New(asyncsip.Config{Listen: []string{"udp:127.0.0.1:0"}, Workers: 2})
	require.NoError(t, err)
	srv.SetRoutes(tm.Routes{
		Request: func(c *tm.Context) {
			if c.InDialog() {
				_ = c.Relay() // ACK and BYE along our Record-Route
				return
			}
			c.SetBranchTimeout(time.Second) // a dead target fails over within 1 s
			_ = d.Relay(c, "gw")
		},
		Failure: func(c *tm.Context) {
			if code := c.Resp.StatusCode; code == 408 || code >= 500 {
				_ = d.RelayNext(c)
			}
		},
	})
	require.NoError(t, srv.Start())
	prober, err := d.Start(srv.Core(), srv.Group())
	require.NoError(t, err)
	defer func() {
		prober.Stop()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		require.NoError(t, srv.Shutdown(ctx))
	}()
	proxy := srv.Addrs()[0].String()
	calls := func(n int) sipp.Result {
		return sipp.Run(t, sipp.Config{Scenario: sipp.UAC, Remote: proxy, Service: "bob", Calls: n, Rate: 20, Timeout: 30 * time.Second})
	}

	testenv.Poll(5*time.Second, func() bool { return d.Stats().ProbesSent >= 4 })
	require.Zero(t, d.Stats().ProbesFailed, "SIPp -aa answers the probes")
	res := calls(10)
	require.Equal(t, 10, res.Successful, "%s", res.Output)
	selA, selB := selected(d, uriA), selected(d, uriB)
	assert.Equal(t, [2]uint64{5, 5}, [2]uint64{selA, selB}, "round-robin over both")

	resB := uasB.Stop()
	assert.Equal(t, 5, resB.Successful, "B answered its calls before it was killed")
	res = calls(6)
	assert.Equal(t, 6, res.Successful, "calls succeed through failover while B is not yet out: %s", res.Output)

	testenv.Poll(5*time.Second, func() bool { return !d.Up(uriB) })
	require.False(t, d.Up(uriB), "probing takes the dead UAS out")
	b0 := selected(d, uriB)
	res = calls(10)
	assert.Equal(t, 10, res.Successful, "%s", res.Output)
	assert.Equal(t, b0, selected(d, uriB), "no call tried on the dead UAS once it is out")
	resA := uasA.Stop()
	assert.Equal(t, 5+6+10, resA.Successful, "every call ended on A")
}

func selected(d *dispatcher.Dispatcher, uri string) uint64 {
	for _, t := range d.Targets() {
		if t.URI == uri {
			return t.Selected
		}
	}
	return 0
}
