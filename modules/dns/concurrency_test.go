package dns_test

import (
	"context"
	"fmt"
	"github.com/asyncsip/asyncsip/internal/testenv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/asyncsip/asyncsip/async"
	"github.com/asyncsip/asyncsip/modules/dns"
	"github.com/asyncsip/asyncsip/reactor"
)

// Many goroutines resolve the same names at once on several loops, while
// others call Lookup: results are right, -race is quiet, and each name and
// type is asked of the server once (concurrent misses share one query).
func TestConcurrentResolve(t *testing.T) {
	testenv.CheckFDs(t)
	const names = 5
	var recs []string
	for i := range names {
		recs = append(recs,
			fmt.Sprintf("_sip._udp.d%d.test. 600 IN SRV 10 1 %d h%d.test.", i, 5060+i, i),
			fmt.Sprintf("h%d.test. 600 IN A 127.0.2.%d", i, i))
	}
	z := newZone(t, recs...)
	r := newResolver(t, dns.Config{Servers: []string{serve(t, z)}, IPv4Only: true})
	g, err := reactor.NewGroup(2, reactor.Config{})
	require.NoError(t, err)
	g.Start()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		require.NoError(t, g.Stop(ctx))
	})

	const workers, each = 8, 50
	var wg sync.WaitGroup
	errs := make(chan error, workers*each)
	for w := range workers {
		wg.Add(2)
		go func() {
			defer wg.Done()
			for i := range each {
				n := (w + i) % names
				done := make(chan struct{})
				err := async.LaunchGroup(g, r.Resolve(fmt.Sprintf("sip:d%d.test;transport=udp", n)),
					func(ts []dns.Target, err error) {
						defer close(done)
						switch {
						case err != nil:
							errs <- err
						case len(ts) != 1 || ts[0].AddrPort().String() != fmt.Sprintf("127.0.2.%d:%d", n, 5060+n):
							errs <- fmt.Errorf("d%d: wrong targets %v", n, ts)
						}
					}, async.Timeout(10*time.Second))
				if err != nil {
					errs <- err
					return
				}
				select {
				case <-done:
				case <-time.After(15 * time.Second):
					errs <- fmt.Errorf("d%d: no result", n)
					return
				}
			}
		}()
		go func() { // Lookup from outside the loops, racing with the inserts
			defer wg.Done()
			for i := range each {
				if a, err := r.Lookup(fmt.Sprintf("h%d.test", (w+i)%names)); err == nil && !a.Is4() {
					errs <- fmt.Errorf("Lookup gave %v", a)
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for i := range names {
		require.Equal(t, 1, z.count(fmt.Sprintf("_sip._udp.d%d.test", i), "SRV"), "d%d", i)
		require.Equal(t, 1, z.count(fmt.Sprintf("h%d.test", i), "A"), "h%d", i)
	}
	st := r.Stats()
	require.EqualValues(t, workers*each, st.Resolutions)
	require.Zero(t, st.Failed)
	require.Positive(t, st.SyncResolutions)
}
