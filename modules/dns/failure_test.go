package dns_test

import (
	"context"
	"github.com/asyncsip/asyncsip/internal/testenv"
	"net"
	"sync/atomic"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
	"github.com/stretchr/testify/require"

	"github.com/asyncsip/asyncsip/async"
	"github.com/asyncsip/asyncsip/modules/dns"
)

func TestTimeout(t *testing.T) {
	testenv.CheckFDs(t)
	r := newResolver(t, dns.Config{Servers: []string{silent(t), silent(t)}, Timeout: 30 * time.Millisecond, Attempts: 2})
	l := testenv.StartLoop(t)
	res := resolve(t, l, r, "sip:slow.test:5060")
	require.ErrorIs(t, res.err, dns.ErrTimeout)
	require.ErrorIs(t, res.err, async.ErrTimeout, "one test for both timeouts")
	require.Equal(t, dns.KindTimeout, dns.KindOf(res.err))
	require.False(t, res.sync)
	st := r.Stats()
	require.Equal(t, uint64(1), st.QueryErrors, "A timed out; NXDOMAIN-style fallbacks must not follow a timeout")
	// Timeouts are not cached: the next resolution asks again.
	res = resolve(t, l, r, "sip:slow.test:5060")
	require.ErrorIs(t, res.err, dns.ErrTimeout)
	require.False(t, res.sync)
}

// A timeout on the way (NAPTR) ends the resolution: the same server would
// time out on every following query.
func TestTimeoutStopsFallback(t *testing.T) {
	var asked atomic.Int64
	h := mdns.HandlerFunc(func(w mdns.ResponseWriter, req *mdns.Msg) { asked.Add(1) }) // never answers
	r := newResolver(t, dns.Config{Servers: []string{serve(t, h)}, Timeout: 20 * time.Millisecond, Attempts: 1})
	l := testenv.StartLoop(t)
	res := resolve(t, l, r, "sip:slow.test")
	require.ErrorIs(t, res.err, dns.ErrTimeout)
	require.Equal(t, int64(1), asked.Load())
}

// The await's own timeout cancels the queries in progress: Close then
// finds no query left on the pool.
func TestAwaitTimeoutCancelsQuery(t *testing.T) {
	testenv.CheckFDs(t)
	r := newResolver(t, dns.Config{Servers: []string{silent(t)}, Timeout: time.Minute})
	l := testenv.StartLoop(t)
	got := make(chan error, 1)
	l.Post(func() {
		async.Launch(l, r.Resolve("sip:slow.test:5060"), func(_ []dns.Target, err error) { got <- err },
			async.Timeout(30*time.Millisecond))
	})
	select {
	case err := <-got:
		require.ErrorIs(t, err, async.ErrTimeout)
		require.Equal(t, dns.KindTimeout, dns.KindOf(err))
	case <-time.After(10 * time.Second):
		t.Fatal("the await did not time out")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	require.NoError(t, r.Close(ctx), "the cancelled query still holds the pool")
}

func TestServFailAndServerFailover(t *testing.T) {
	testenv.CheckFDs(t)
	bad := newZone(t, "gw.test. 60 IN A 127.0.0.91")
	bad.servfail = []string{"test."}
	good := newZone(t, "gw.test. 60 IN A 127.0.0.92")
	badAddr, goodAddr := serve(t, bad), serve(t, good)
	l := testenv.StartLoop(t)

	only := newResolver(t, dns.Config{Servers: []string{badAddr}, IPv4Only: true, Attempts: 2})
	res := resolve(t, l, only, "sip:gw.test:5060")
	require.ErrorIs(t, res.err, dns.ErrServFail)
	require.Equal(t, 2, bad.count("gw.test", "A"), "one query per attempt")
	require.ErrorIs(t, resolve(t, l, only, "sip:gw.test:5060").err, dns.ErrServFail, "SERVFAIL is not cached")

	both := newResolver(t, dns.Config{Servers: []string{badAddr, goodAddr}, IPv4Only: true})
	res = resolve(t, l, both, "sip:gw.test:5060")
	require.NoError(t, res.err)
	require.Equal(t, []string{"127.0.0.92:5060/udp"}, targets(res.ts))
}

// A refused (closed) server port is a server failure, not a hang.
func TestRefusedServer(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := pc.LocalAddr().String()
	require.NoError(t, pc.Close()) // nothing listens there now
	r := newResolver(t, dns.Config{Servers: []string{addr}, Timeout: 5 * time.Second, Attempts: 1})
	l := testenv.StartLoop(t)
	res := resolve(t, l, r, "sip:gw.test:5060")
	require.ErrorIs(t, res.err, dns.ErrServFail, "ICMP port unreachable is a failure at once, not a timeout")
}

// With no free worker and no queue the resolution fails at once with
// async.ErrOverloaded instead of blocking the loop.
func TestOverloaded(t *testing.T) {
	pool := async.NewPool(async.PoolConfig{Workers: 1, Queue: -1})
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		require.NoError(t, pool.Close(ctx))
	})
	r := newResolver(t, dns.Config{Servers: []string{silent(t)}, Timeout: 300 * time.Millisecond, Attempts: 1, Pool: pool})
	l := testenv.StartLoop(t)
	first := make(chan error, 1)
	l.Post(func() {
		r.Resolve("sip:one.test:5060").Start(l, func(_ []dns.Target, err error) { first <- err })
	})
	deadline := time.Now().Add(5 * time.Second)
	for pool.Stats().Busy == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	res := resolve(t, l, r, "sip:two.test:5060")
	require.ErrorIs(t, res.err, async.ErrOverloaded)
	require.True(t, res.sync)
	require.Equal(t, dns.KindOverloaded, dns.KindOf(res.err))
	select {
	case err := <-first:
		require.ErrorIs(t, err, dns.ErrTimeout)
	case <-time.After(10 * time.Second):
		t.Fatal("first resolution did not end")
	}
}

// Close ends the queries in progress: their resolutions fail with
// ErrClosed at once instead of waiting for the server timeout.
func TestCloseEndsQueries(t *testing.T) {
	testenv.CheckFDs(t)
	r, err := dns.NewResolver(dns.Config{Servers: []string{silent(t)}, Timeout: time.Minute})
	require.NoError(t, err)
	l := testenv.StartLoop(t)
	got := make(chan error, 1)
	l.Post(func() {
		r.Resolve("sip:slow.test:5060").Start(l, func(_ []dns.Target, err error) { got <- err })
	})
	deadline := time.Now().Add(5 * time.Second)
	for r.Stats().CacheMisses == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	require.NoError(t, r.Close(ctx))
	select {
	case err := <-got:
		require.ErrorIs(t, err, dns.ErrClosed)
	case <-time.After(5 * time.Second):
		t.Fatal("resolution did not end on Close")
	}
}

// A server that answers NAPTR (none) but never SRV: the resolution ends at
// the first SRV timeout instead of waiting once per transport.
func TestSRVTimeoutEndsResolution(t *testing.T) {
	var srvAsked atomic.Int64
	h := mdns.HandlerFunc(func(w mdns.ResponseWriter, req *mdns.Msg) {
		if req.Question[0].Qtype == mdns.TypeSRV {
			srvAsked.Add(1)
			return // never answers
		}
		m := new(mdns.Msg)
		m.SetReply(req)
		_ = w.WriteMsg(m) // NODATA
	})
	r := newResolver(t, dns.Config{Servers: []string{serve(t, h)}, Timeout: 20 * time.Millisecond, Attempts: 1})
	l := testenv.StartLoop(t)
	res := resolve(t, l, r, "sip:half-dead.test")
	require.ErrorIs(t, res.err, dns.ErrTimeout)
	require.Equal(t, int64(1), srvAsked.Load())
}
