package dns_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/asyncsip/asyncsip/internal/testenv"
	"github.com/asyncsip/asyncsip/modules/dns"
)

// Lower priorities always come first, whatever the weights and the order
// of the records in the answer.
func TestSRVPriorityOrder(t *testing.T) {
	z := newZone(t,
		"_sip._udp.prio.test. 60 IN SRV 30 90 5063 c.prio.test.",
		"_sip._udp.prio.test. 60 IN SRV 10 1 5061 a.prio.test.",
		"_sip._udp.prio.test. 60 IN SRV 20 50 5062 b.prio.test.",
		"_sip._udp.prio.test. 60 IN SRV 20 50 5064 d.prio.test.",
		"a.prio.test. 60 IN A 127.0.0.71",
		"b.prio.test. 60 IN A 127.0.0.72",
		"c.prio.test. 60 IN A 127.0.0.73",
		"d.prio.test. 60 IN A 127.0.0.74",
	)
	r := newResolver(t, dns.Config{Servers: []string{serve(t, z)}, IPv4Only: true})
	l := testenv.StartLoop(t)
	seen := map[string]int{}
	for range 200 {
		res := resolve(t, l, r, "sip:prio.test;transport=udp")
		require.NoError(t, res.err)
		got := targets(res.ts)
		require.Len(t, got, 4)
		require.Equal(t, "127.0.0.71:5061/udp", got[0])
		require.ElementsMatch(t, []string{"127.0.0.72:5062/udp", "127.0.0.74:5064/udp"}, got[1:3])
		require.Equal(t, "127.0.0.73:5063/udp", got[3])
		seen[got[1]]++
	}
	// Equal weights in priority 20: both orders occur.
	require.Len(t, seen, 2, "equal weights never reordered: %v", seen)
}

// Within a priority the first pick follows the weights (RFC 2782): 60/30/10
// out of 100, checked over many picks with generous bounds; a weight-0
// record is picked first only rarely and is otherwise last.
func TestSRVWeightDistribution(t *testing.T) {
	z := newZone(t,
		"_sip._udp.w.test. 60 IN SRV 10 60 5060 a.w.test.",
		"_sip._udp.w.test. 60 IN SRV 10 30 5060 b.w.test.",
		"_sip._udp.w.test. 60 IN SRV 10 10 5060 c.w.test.",
		"_sip._udp.w.test. 60 IN SRV 10 0 5060 z.w.test.",
		"a.w.test. 60 IN A 127.0.0.81",
		"b.w.test. 60 IN A 127.0.0.82",
		"c.w.test. 60 IN A 127.0.0.83",
		"z.w.test. 60 IN A 127.0.0.84",
	)
	r := newResolver(t, dns.Config{Servers: []string{serve(t, z)}, IPv4Only: true})
	l := testenv.StartLoop(t)
	const n = 4000
	first := map[string]int{}
	lastZero := 0
	for range n {
		res := resolve(t, l, r, "sip:w.test;transport=udp")
		require.NoError(t, res.err)
		require.Len(t, res.ts, 4)
		first[res.ts[0].Host]++
		if res.ts[3].Host == "z.w.test" {
			lastZero++
		}
	}
	share := func(h string) float64 { return float64(first[h]) / n }
	require.InDelta(t, 0.60, share("a.w.test"), 0.06, "%v", first)
	require.InDelta(t, 0.30, share("b.w.test"), 0.06, "%v", first)
	require.InDelta(t, 0.10, share("c.w.test"), 0.05, "%v", first)
	require.Less(t, share("z.w.test"), 0.05, "%v", first)
	// z goes early only when a draw hits 0: 1/101, 1/41 or 1/11 per step.
	require.Greater(t, float64(lastZero)/n, 0.8, "weight 0 should mostly come last")
}
