package e2e

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/asyncsip/asyncsip/async"
	"github.com/asyncsip/asyncsip/reactor"
	"github.com/asyncsip/asyncsip/tm"
)

// never is an op that never completes (a backend that does not answer).
var never = async.OpFunc[struct{}](func(*reactor.Loop, func(struct{}, error)) func() { return func() {} })

// overloadRoutes: "slow" requests await a 800 ms op then get 200; the
// others await an op that never completes, bounded by a 1.5 s timeout
// (504). Beyond the suspended cap the await fails at once with
// ErrOverloaded and the route answers 503 with Retry-After.
func overloadRoutes() tm.Routes {
	return tm.Routes{Request: func(c *tm.Context) {
		op, d := async.Op[struct{}](never), 1500*time.Millisecond
		if strings.HasPrefix(c.Recipient().User, "slow") {
			op = async.Sleep(800 * time.Millisecond)
		}
		async.Await(c, op, func(_ struct{}, err error) {
			switch {
			case errors.Is(err, async.ErrOverloaded):
				_ = c.Reply(503, "Overloaded", sip.NewHeader("Retry-After", "5"))
			case err != nil:
				_ = c.Reply(504, "Backend Timeout")
			default:
				_ = c.Reply(200, "OK")
			}
		}, async.Timeout(d))
	}}
}

// sampler records the largest transaction table and suspended count seen.
type sampler struct {
	stop                 chan struct{}
	once                 sync.Once
	wg                   sync.WaitGroup
	maxTable, maxSuspend atomic.Int64
}

func startSampler(p *cappedProxy) *sampler {
	s := &sampler{stop: make(chan struct{})}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			srv, _ := p.tables()
			if int64(srv) > s.maxTable.Load() {
				s.maxTable.Store(int64(srv))
			}
			if n := p.core.Stats().Suspended; n > s.maxSuspend.Load() {
				s.maxSuspend.Store(n)
			}
			select {
			case <-s.stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	}()
	return s
}

func (s *sampler) close() { s.once.Do(func() { close(s.stop) }); s.wg.Wait() }

// Overload through the real server: 100 calls are in progress (suspended
// on a slow op) when 3,000 more arrive at once. The in-progress ones all
// complete with 200; every new one gets exactly one final response — 503
// with Retry-After beyond the caps, or 504 when it got in and its backend
// never answered — and the caps hold at every sample.
func TestReliabilityOverload(t *testing.T) {
	const maxTx, maxSusp, slow, flood = 300, 200, 100, 3000
	p := startCappedProxy(t, 2, tm.Config{MaxTransactions: maxTx, MaxSuspended: maxSusp,
		Timers: tm.Timers{T1: 50 * time.Millisecond}}, overloadRoutes())
	smp := startSampler(p)
	defer smp.close()
	cl := newRelClient(t)

	for i := 0; i < slow; i++ {
		cl.send(t, p.addr, "MESSAGE", "slow", fmt.Sprint("slow-", i))
	}
	require.Eventually(t, func() bool { return p.core.Stats().Suspended == slow }, 5*time.Second, 5*time.Millisecond)
	for i := 0; i < flood; i++ {
		cl.send(t, p.addr, "MESSAGE", "hang", fmt.Sprint("hang-", i))
		if i%100 == 99 {
			time.Sleep(2 * time.Millisecond) // paced so that the kernel drops nothing
		}
	}
	got := cl.waitFinals(slow+flood, 20*time.Second)
	smp.close()
	st := p.core.Stats()
	require.EqualValues(t, slow+flood, st.Received, "every request reached the proxy")
	require.Equal(t, slow+flood, got, "every request got a final response")

	byReason := map[string]int{}
	for id, fs := range cl.finals() {
		require.Len(t, fs, 1, "%s: one final response", id)
		f := fs[0]
		if strings.HasPrefix(id, "slow-") {
			assert.Equal(t, 200, f.code, "%s: in progress, completed", id)
			continue
		}
		byReason[strconv.Itoa(f.code)+" "+f.reason]++
		if f.code == 503 {
			assert.True(t, f.retryAfter, "%s: 503 has Retry-After", id)
		} else {
			assert.Equal(t, 504, f.code, id)
		}
	}
	t.Logf("flood of %d over %d in progress: %v; max server tx per loop %d (cap %d), max suspended %d (cap %d); overload counter %d",
		flood, slow, byReason, smp.maxTable.Load(), maxTx, smp.maxSuspend.Load(), maxSusp, st.Overload)
	assert.LessOrEqual(t, smp.maxTable.Load(), int64(maxTx))
	assert.LessOrEqual(t, smp.maxSuspend.Load(), int64(maxSusp))
	assert.NotZero(t, byReason["503 Overloaded"]+byReason["503 Service Unavailable"], "the caps were reached")

	// Everything ends: no suspension left, the tables empty after Timer J.
	require.Eventually(t, func() bool {
		srv, cli := p.tables()
		return srv == 0 && cli == 0 && p.core.Stats().Suspended == 0 && p.core.Stats().InProgress == 0
	}, 10*time.Second, 20*time.Millisecond)
}

// Memory under a flood: 60,000 requests whose backend never answers, sent
// as fast as the proxy reads them. The transaction table stops at its cap
// and the heap with it; the figures are logged (docs/RELIABILITY.md), only
// the structural bounds are asserted.
func TestReliabilityFloodMemory(t *testing.T) {
	const maxTx, maxSusp, flood = 2000, 1000, 60000
	// The suspended requests must outlive the flood and the wait for the
	// answers, however slow a loaded machine makes them (a 30 s bound
	// expired them mid-test under CI load): bound them far beyond the test.
	const holdFor = 10 * time.Minute
	p := startCappedProxy(t, 2, tm.Config{MaxTransactions: maxTx, MaxSuspended: maxSusp,
		Timers: tm.Timers{SuspendBound: holdFor}}, tm.Routes{Request: func(c *tm.Context) {
		async.Await(c, never, func(_ struct{}, err error) {
			_ = c.Reply(503, "Overloaded", sip.NewHeader("Retry-After", "5"))
		}, async.Timeout(holdFor))
	}})
	smp := startSampler(p)
	defer smp.close()
	cl := newCountingClient(t)
	before := memNow()
	for i := 0; i < flood; i++ {
		cl.send(t, p.addr, "MESSAGE", "flood", fmt.Sprint("f-", i))
		if i%200 == 199 {
			time.Sleep(2 * time.Millisecond)
		}
		if (i+1)%(flood/4) == 0 {
			t.Logf("after %d requests: %v, server tx per loop %d", i+1, memNow(), smp.maxTable.Load())
		}
	}
	got := cl.waitFinals(flood-maxSusp, 20*time.Second)
	peak := memNow()
	st := p.core.Stats()
	srv, _ := p.tables()
	t.Logf("flood of %d: before %v; after %v (Δheap %.1f MiB); received %d, answered %d, suspended %d, server tx per loop ≤ %d (max seen %d, cap %d); overload counter %d",
		flood, before, peak, peak.heapMiB-before.heapMiB, st.Received, got, st.Suspended, srv, smp.maxTable.Load(), maxTx, st.Overload)
	assert.LessOrEqual(t, smp.maxTable.Load(), int64(maxTx), "server transactions per loop stay at the cap")
	assert.LessOrEqual(t, smp.maxSuspend.Load(), int64(maxSusp))
	assert.EqualValues(t, maxSusp, st.Suspended, "the suspended ones wait for their backend")
	assert.GreaterOrEqual(t, got, int(st.Received)-maxSusp, "every other received request was answered")
}
