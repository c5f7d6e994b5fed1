package ratelimit_test

import (
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/asyncsip/asyncsip/async"
	"github.com/asyncsip/asyncsip/modules/ratelimit"
	"github.com/asyncsip/asyncsip/modules/shared"
	"github.com/asyncsip/asyncsip/modules/shared/sharedtest"
	"github.com/asyncsip/asyncsip/reactor"
)

// exchange runs one ExchangeShared of l on loop lp and waits for it.
func exchange(t *testing.T, lp *reactor.Loop, l *ratelimit.Limiter) {
	t.Helper()
	require.NoError(t, lp.Post(func() { l.ExchangeShared(lp) }))
	// The memory store answers at once: the ban is applied by the time a
	// task posted after the exchange runs.
	done := make(chan struct{})
	require.NoError(t, lp.Post(func() { close(done) }))
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("exchange did not finish")
	}
}

// A source that spreads its requests over three instances stays under each
// one's rate but goes over the shared one: every instance bans it.
func TestSharedRateAcrossInstances(t *testing.T) {
	rates := shared.NewMemoryRates()
	// One hour windows: the test never straddles two. The shared limit is
	// 0.005×3600 + 20 = 38 requests per window; each instance alone allows
	// a burst of 20.
	cfg := ratelimit.Config{Rate: 0.005, Burst: 20, BanFor: time.Minute, Shared: rates, SharedWindow: time.Hour}
	lp := sharedtest.Loop(t)
	var ls [3]*ratelimit.Limiter
	src, innocent := netip.MustParseAddr("192.0.2.7"), netip.MustParseAddr("198.51.100.3")
	for i := range ls {
		ls[i] = ratelimit.New(cfg)
		for n := range 19 {
			require.True(t, ls[i].Allow(src), "instance %d request %d is within its own burst", i, n)
		}
		require.True(t, ls[i].Allow(innocent))
	}
	exchange(t, lp, ls[0])
	exchange(t, lp, ls[1])
	assert.False(t, ls[0].Banned(src), "38 requests over two instances are within the shared limit")
	exchange(t, lp, ls[2])
	assert.True(t, ls[2].Banned(src), "57 requests over three instances go over it")
	assert.False(t, ls[2].Allow(src))
	assert.Equal(t, uint64(1), ls[2].Stats().SharedBans)
	// The others learn it with their next exchange that reports the source.
	require.True(t, ls[0].Allow(src))
	exchange(t, lp, ls[0])
	assert.True(t, ls[0].Banned(src))
	for i, l := range ls {
		assert.False(t, l.Banned(innocent), "instance %d banned an innocent source", i)
	}
}

type failingRates struct{}

func (failingRates) Add(map[string]int64, int64, time.Duration, time.Duration) async.Op[map[string]time.Time] {
	return async.Done[map[string]time.Time](nil, errors.New("redis down"))
}

// When the shared store fails, each instance limits on its own bucket.
func TestSharedRateStoreDownFallsBackToLocal(t *testing.T) {
	l := ratelimit.New(ratelimit.Config{Rate: 1, Burst: 3, Shared: failingRates{}})
	lp := sharedtest.Loop(t)
	src := netip.MustParseAddr("192.0.2.8")
	for range 3 {
		require.True(t, l.Allow(src))
	}
	exchange(t, lp, l)
	assert.Equal(t, uint64(1), l.Stats().SharedFailed)
	assert.False(t, l.Allow(src), "the local limit still holds")
	_, err := ratelimit.New(ratelimit.Config{}).StartShared(nil)
	assert.Error(t, err)
}
