package ratelimit

import (
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func newTestFailures(clk *clock, cfg FailureConfig) *Failures {
	cfg.Now = clk.Now
	return NewFailures(cfg)
}

func TestFailuresBanSourceAfterLimit(t *testing.T) {
	clk := newClock()
	f := newTestFailures(clk, FailureConfig{SourceLimit: 3, UserLimit: 100, BanFor: time.Minute})
	for i := range 2 {
		b := f.Fail("alice", ip1)
		require.False(t, b.Active(), "failure %d is under the limit", i+1)
	}
	b := f.Fail("alice", ip1)
	assert.True(t, b.NewSource)
	assert.False(t, b.NewUser)
	assert.Equal(t, clk.Now().Add(time.Minute), b.Source)
	assert.True(t, f.Banned("", ip1).Active())
	assert.True(t, f.Banned("bob", ip1).Active(), "a banned source is banned for every user")
	assert.False(t, f.Banned("alice", netip.MustParseAddr("192.0.2.2")).Active(), "alice is not banned elsewhere")

	b = f.Fail("alice", ip1)
	assert.False(t, b.NewSource, "a failure while banned does not start (or extend) a ban")
	assert.Equal(t, uint64(1), f.Stats().Bans)

	clk.add(time.Minute)
	assert.False(t, f.Banned("", ip1).Active(), "the ban ends after BanFor")
}

func TestFailuresBackOffDoublesAndDecays(t *testing.T) {
	clk := newClock()
	f := newTestFailures(clk, FailureConfig{SourceLimit: 1, UserLimit: 100, BanFor: time.Minute, MaxBan: 5 * time.Minute})
	want := []time.Duration{time.Minute, 2 * time.Minute, 4 * time.Minute, 5 * time.Minute, 5 * time.Minute}
	for i, d := range want {
		b := f.Fail("", ip1)
		require.True(t, b.NewSource, "ban %d", i+1)
		assert.Equal(t, d, b.Source.Sub(clk.Now()), "ban %d", i+1)
		clk.add(d)
	}
	clk.add(5*time.Minute + time.Second) // quiet for longer than MaxBan
	b := f.Fail("", ip1)
	assert.Equal(t, time.Minute, b.Source.Sub(clk.Now()), "the back-off starts again")
}

func TestFailuresWindow(t *testing.T) {
	clk := newClock()
	f := newTestFailures(clk, FailureConfig{SourceLimit: 3, Window: time.Minute})
	f.Fail("", ip1)
	f.Fail("", ip1)
	clk.add(time.Minute + time.Second)
	assert.False(t, f.Fail("", ip1).Active(), "the earlier failures fell out of the window")
	assert.False(t, f.Fail("", ip1).Active())
	assert.True(t, f.Fail("", ip1).Active())
}

func TestFailuresUserBanAndSuccessReset(t *testing.T) {
	clk := newClock()
	f := newTestFailures(clk, FailureConfig{SourceLimit: 100, UserLimit: 3})
	src := func(i int) netip.Addr { return netip.AddrFrom4([4]byte{203, 0, 113, byte(i)}) }
	f.Fail("alice", src(1))
	f.Fail("alice", src(2))
	f.Succeed("alice", src(3))
	assert.False(t, f.Fail("alice", src(4)).Active(), "the success restarted alice's count")
	f.Fail("alice", src(5))
	b := f.Fail("alice", src(6))
	assert.True(t, b.NewUser)
	assert.True(t, f.Banned("alice", src(7)).Active(), "the user is banned from every source")
	assert.False(t, f.Banned("bob", src(7)).Active())
	f.Succeed("alice", src(8))
	assert.True(t, f.Banned("alice", src(8)).Active(), "a success does not lift a ban in force")
}

func TestFailuresExempt(t *testing.T) {
	clk := newClock()
	f := newTestFailures(clk, FailureConfig{SourceLimit: 1, UserLimit: 1, Exempt: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}})
	trunk := netip.MustParseAddr("10.1.2.3")
	for range 5 {
		assert.False(t, f.Fail("pbx", trunk).Active())
	}
	assert.False(t, f.Banned("pbx", trunk).Active())
	assert.Equal(t, FailureStats{}, f.Stats())
}

// The tables stay at their cap under 100k distinct sources and users, and
// a banned offender is not washed out by them.
func TestFailuresCapHolds(t *testing.T) {
	clk := newClock()
	f := newTestFailures(clk, FailureConfig{SourceLimit: 2, UserLimit: 1000, MaxTracked: 640})
	f.Fail("x", ip1)
	require.True(t, f.Fail("x", ip1).NewSource)
	for i := range 100_000 {
		src := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		f.Fail(fmt.Sprintf("user%d", i), src)
		clk.add(100 * time.Microsecond) // 10 s in all: within the ban
	}
	st := f.Stats()
	assert.LessOrEqual(t, st.Sources, 640+shards, "sources at the cap")
	assert.LessOrEqual(t, st.Users, 640+shards, "users at the cap")
	assert.True(t, f.Banned("", ip1).Active(), "the offender's ban survives")
}

func TestFailuresConcurrent(t *testing.T) {
	clk := newClock()
	f := newTestFailures(clk, FailureConfig{SourceLimit: 1000, UserLimit: 1000})
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 200 {
				src := netip.AddrFrom4([4]byte{192, 0, 2, byte(g)})
				f.Fail("alice", src)
				f.Banned("alice", src)
				if i%50 == 0 {
					f.Succeed("bob", src)
				}
			}
		})
	}
	wg.Wait()
	assert.Equal(t, 8, f.Stats().Sources)
	assert.Equal(t, 1, f.Stats().Users)
	assert.True(t, f.Banned("alice", ip1).Active(), "1600 failures for alice exceed UserLimit")
}
