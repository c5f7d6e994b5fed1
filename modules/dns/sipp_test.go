package dns_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/asyncsip/asyncsip"
	"github.com/asyncsip/asyncsip/async"
	"github.com/asyncsip/asyncsip/internal/sipp"
	"github.com/asyncsip/asyncsip/internal/testenv"
	"github.com/asyncsip/asyncsip/modules/dns"
	"github.com/asyncsip/asyncsip/tm"
)

// SIPp calls through the proxy: INVITEs for "bob" go to the SRV targets of
// example.test; the first never answers (Timer B, 64·T1 = 1.28 s with
// T1 = 20 ms, gives 408) and the failure route fails over to the second, a
// SIPp UAS. In-dialog ACK and BYE follow the Route set.
func TestSIPpFailoverAcrossSRVTargets(t *testing.T) {
	testenv.SIPp(t)
	const calls = 10
	testenv.CheckFDs(t)
	down := startUAS(t, 0)
	upPort := sipp.Start(t, sipp.Config{Scenario: sipp.UAS, Timeout: 90 * time.Second}).Port()
	z := newZone(t,
		fmt.Sprintf("_sip._udp.example.test. 60 IN SRV 10 1 %d down.example.test.", down.port()),
		fmt.Sprintf("_sip._udp.example.test. 60 IN SRV 20 1 %d up.example.test.", upPort),
		"down.example.test. 60 IN A 127.0.0.1",
		"up.example.test. 60 IN A 127.0.0.1",
	)
	r := newResolver(t, dns.Config{Servers: []string{serve(t, z)}, IPv4Only: true})

	srv, err := asyncsip.New(asyncsip.Config{
		Listen: []string{"udp:127.0.0.1:0"}, Workers: 2,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Core:   tm.Config{Timers: tm.Timers{T1: 20 * time.Millisecond}, Resolver: r.Lookup},
	})
	require.NoError(t, err)
	var failovers atomic.Int64
	srv.Request(func(c *tm.Context) {
		if c.InDialog() {
			_ = c.Relay()
			return
		}
		async.Await(c, r.Resolve("sip:example.test"), func(ts []dns.Target, err error) {
			if err != nil {
				_ = c.Reply(503, "DNS failure")
				return
			}
			if err := dns.Failover(c, ts); err != nil {
				_ = c.Reply(503, "No target")
			}
		}, async.Timeout(2*time.Second))
	})
	srv.Failure(func(c *tm.Context) {
		if dns.FailoverNext(c) {
			failovers.Add(1)
		}
	})
	require.NoError(t, srv.Start())
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		require.NoError(t, srv.Shutdown(ctx))
	})

	res := sipp.Run(t, sipp.Config{Scenario: sipp.UAC, Remote: srv.Addrs()[0].String(),
		Service: "bob", Calls: calls, Rate: 10, Timeout: 60 * time.Second})
	require.Equal(t, 0, res.ExitCode, res.String())
	require.Equal(t, calls, res.Successful, res.String())
	require.Zero(t, res.Failed, res.String())
	require.EqualValues(t, calls, failovers.Load(), "every INVITE failed over once")
	require.Equal(t, calls, down.callCount(), "every call tried the first target first")
	st := srv.Stats()
	require.Zero(t, st.Panics, "%+v", st)
	require.Zero(t, st.Abandoned, "%+v", st)
	require.Equal(t, 1, z.count("_sip._udp.example.test", "SRV"), "one SRV query, then the cache")
}
