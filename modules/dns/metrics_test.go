package dns_test

import (
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/asyncsip/asyncsip/internal/testenv"
	"github.com/asyncsip/asyncsip/modules/dns"
)

// recorder is an Observer that counts what it sees.
type recorder struct {
	mu       sync.Mutex
	queries  map[string]int // qtype → queries
	kinds    map[dns.Kind]int
	hits     int
	misses   int
	resolved []bool // sync flag per resolution
}

func (o *recorder) Query(qtype string, d time.Duration, err error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.queries[qtype]++
	o.kinds[dns.KindOf(err)]++
}

func (o *recorder) Cache(_ string, hit bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if hit {
		o.hits++
	} else {
		o.misses++
	}
}

func (o *recorder) Resolved(_ time.Duration, sync bool, _ error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.resolved = append(o.resolved, sync)
}

func TestObserver(t *testing.T) {
	z := newZone(t,
		"ws.test. 60 IN NAPTR 10 10 \"S\" \"SIP+D2W\" \"\" _sip._ws.ws.test.",
		"ws.test. 60 IN NAPTR 20 10 \"s\" \"SIP+D2U\" \"\" _sip._udp.ws.test.",
		"_sip._ws.ws.test. 60 IN SRV 10 1 8080 edge.ws.test.",
		"_sip._udp.ws.test. 60 IN SRV 10 1 5060 edge.ws.test.",
		"edge.ws.test. 60 IN A 127.0.0.95",
	)
	o := &recorder{queries: map[string]int{}, kinds: map[dns.Kind]int{}}
	r := newResolver(t, dns.Config{Servers: []string{serve(t, z)}, IPv4Only: true, Observer: o,
		Transports: []string{"udp", "ws"}})
	l := testenv.StartLoop(t)

	res := resolve(t, l, r, "sip:ws.test")
	require.NoError(t, res.err)
	require.Equal(t, []string{"127.0.0.95:8080/ws", "127.0.0.95:5060/udp"}, targets(res.ts), "NAPTR order, WebSocket supported")
	require.Equal(t, "sip:127.0.0.95:8080;transport=ws", res.ts[0].URI())
	require.True(t, resolve(t, l, r, "sip:ws.test").sync)
	require.ErrorIs(t, resolve(t, l, r, "sip:none.test:5060").err, dns.ErrNXDomain)

	o.mu.Lock()
	defer o.mu.Unlock()
	require.Equal(t, map[string]int{"NAPTR": 1, "SRV": 2, "A": 2}, o.queries)
	require.Equal(t, map[dns.Kind]int{dns.KindOK: 4, dns.KindNXDomain: 1}, o.kinds)
	require.Equal(t, []bool{false, true, false}, o.resolved)
	require.Equal(t, 5, o.misses, "one miss per query")
	require.Equal(t, 6, o.hits, "edge.ws.test A for the second SRV, then 5 lookups of the synchronous run")
	st := r.Stats()
	require.EqualValues(t, 5, st.Queries)
	require.EqualValues(t, 3, st.Resolutions)
	require.EqualValues(t, 1, st.SyncResolutions)
	require.EqualValues(t, 1, st.Failed)
}
