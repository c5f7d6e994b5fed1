package dialog_test

// The tracker on the real server (asyncsip.New over UDP on 127.0.0.1, two
// loops) between two SIPp peers: calls ended by their maximum duration
// with a BYE to each side, and profile limits under concurrent calls.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/asyncsip/asyncsip"
	"github.com/asyncsip/asyncsip/internal/sipp"
	"github.com/asyncsip/asyncsip/internal/testenv"
	"github.com/asyncsip/asyncsip/modules/dialog"
	"github.com/asyncsip/asyncsip/tm"
)

// concurrency follows the calls tracked at once through the events, which
// arrive on every loop.
type concurrency struct {
	now, max                      atomic.Int64
	created, confirmed, completed atomic.Int64
	reasons                       [8]atomic.Int64 // by reasonIndex
}

var reasonList = []dialog.Reason{dialog.Timeout, dialog.ByeCaller, dialog.ByeCallee, dialog.Rejected,
	dialog.Cancelled, dialog.NotConfirmed, dialog.PingFailure, dialog.Ended}

func (c *concurrency) DialogEvent(e dialog.Event) {
	switch e.Kind {
	case dialog.Created:
		c.created.Add(1)
		n := c.now.Add(1)
		for m := c.max.Load(); n > m && !c.max.CompareAndSwap(m, n); m = c.max.Load() {
		}
	case dialog.ConfirmedEvent:
		c.confirmed.Add(1)
	case dialog.TerminatedEvent:
		c.completed.Add(1)
		c.now.Add(-1)
		for i, r := range reasonList {
			if r == e.Reason {
				c.reasons[i].Add(1)
			}
		}
	}
}

func (c *concurrency) count(r dialog.Reason) int64 {
	for i, x := range reasonList {
		if x == r {
			return c.reasons[i].Load()
		}
	}
	return -1
}

// startTracked starts a proxy that tracks every initial INVITE with opts
// and relays it to the UAS on uasPort; a call refused by the tracker gets
// 486 (profile limit) or 503.
func startTracked(t *testing.T, tr *dialog.Tracker, opts dialog.Options, uasPort int) *asyncsip.Server {
	t.Helper()
	srv, err := asyncsip.New(asyncsip.Config{Listen: []string{"udp:127.0.0.1:0"}, Workers: 2,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	require.NoError(t, err)
	srv.SetRoutes(tr.Routes(tm.Routes{Request: func(c *tm.Context) {
		if c.InDialog() {
			_ = c.Relay()
			return
		}
		if err := tr.Track(c, opts); err != nil {
			code := 503
			if errorsIsLimit(err) {
				code = 486
			}
			_ = c.Reply(code, "")
			return
		}
		_ = c.Relay(fmt.Sprintf("sip:bob@127.0.0.1:%d", uasPort))
	}}))
	require.NoError(t, srv.Start())
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		_ = srv.Shutdown(ctx)
	})
	return srv
}

// Calls longer than their maximum duration are ended by the proxy: a BYE to
// each SIPp side, both count a successful call, and every count returns to
// zero.
func TestRealServerMaxDurationEndsSIPpCalls(t *testing.T) {
	const calls = 20
	uasPort := testenv.FreeUDPPort(t)
	uas := sipp.Start(t, sipp.Config{Scenario: sipp.UAS, LocalPort: uasPort, Calls: calls, Timeout: 60 * time.Second})
	obs := &concurrency{}
	tr := dialog.New(dialog.Config{Observer: obs, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	opts := dialog.Options{MaxDuration: 300 * time.Millisecond,
		Profiles: []dialog.ProfileValue{{Profile: "trunk", Value: "uas"}}}
	srv := startTracked(t, tr, opts, uasPort)

	res := sipp.Run(t, sipp.Config{Scenario: filepath.Join("testdata", "uac_ended_by_proxy.xml"),
		Remote: srv.Addrs()[0].String(), Service: "bob", Calls: calls, Rate: 20, Timeout: 60 * time.Second})
	require.Equal(t, calls, res.Successful, "UAC: %s", res)
	r := uas.Wait(20 * time.Second)
	require.Equal(t, calls, r.Successful, "UAS: %s", r)

	// The UACs saw their BYE; the proxy's BYEs to the UAS are answered too.
	testenv.Eventually(t, 10*time.Second, "BYEs answered", func() bool {
		st := srv.Stats().Originated
		return st.Completed == 2*calls && st.InFlight == 0
	})
	st := tr.Stats()
	assert.Equal(t, uint64(2*calls), st.ByeSent)
	assert.Zero(t, st.ByeFailed)
	assert.Equal(t, uint64(calls), st.Confirmed)
	assert.Equal(t, uint64(calls), st.Terminated)
	assert.Equal(t, int64(calls), obs.count(dialog.Timeout))
	assert.Zero(t, tr.Active())
	assert.Zero(t, tr.Profile("trunk").Count("uas"))
	assert.Empty(t, tr.Profile("trunk").Values())
}

// Concurrent calls on two loops against a profile limit: the calls tracked
// at once never exceed it, refused calls get 486 and count nowhere, and
// once all calls are over every count is back to zero (no drift).
func TestRealServerProfileLimitUnderLoad(t *testing.T) {
	const calls, limit = 60, 5
	uasPort := testenv.FreeUDPPort(t)
	uas := sipp.Start(t, sipp.Config{Scenario: sipp.UAS, LocalPort: uasPort, Timeout: 90 * time.Second})
	obs := &concurrency{}
	tr := dialog.New(dialog.Config{Observer: obs, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	opts := dialog.Options{MaxDuration: 200 * time.Millisecond,
		Profiles: []dialog.ProfileValue{{Profile: "trunk", Value: "uas", Limit: limit}, {Profile: "user", Value: "alice"}}}
	srv := startTracked(t, tr, opts, uasPort)

	// Readers on other goroutines while the loops count.
	stop := make(chan struct{})
	readerDone := make(chan int)
	go func() {
		most := 0
		for {
			select {
			case <-stop:
				readerDone <- most
				return
			default:
			}
			most = max(most, tr.Profile("trunk").Count("uas"))
			time.Sleep(time.Millisecond)
		}
	}()

	res := sipp.Run(t, sipp.Config{Scenario: filepath.Join("testdata", "uac_ended_by_proxy.xml"),
		Remote: srv.Addrs()[0].String(), Service: "bob", Calls: calls, Rate: 100, Timeout: 60 * time.Second})
	require.Equal(t, calls, res.Successful+res.Failed, "UAC: %s", res)
	testenv.Eventually(t, 20*time.Second, "all calls over", func() bool {
		return obs.completed.Load() == obs.created.Load() && tr.Active() == 0 &&
			srv.Stats().Originated.InFlight == 0
	})
	close(stop)
	most := <-readerDone
	u := uas.Stop()

	st := tr.Stats()
	assert.LessOrEqual(t, obs.max.Load(), int64(limit), "calls tracked at once")
	assert.LessOrEqual(t, most, limit, "profile count seen by a reader")
	assert.Equal(t, uint64(calls), st.Created+st.Limited, "every INVITE tracked or refused")
	assert.Equal(t, uint64(res.Successful), st.Confirmed, "successful calls are the confirmed ones")
	assert.Equal(t, st.Created, st.Terminated)
	assert.Equal(t, int64(res.Successful), obs.count(dialog.Timeout))
	assert.Equal(t, res.Successful, u.Successful, "UAS: %s", u)
	assert.Zero(t, tr.Active())
	assert.Zero(t, tr.Profile("trunk").Count("uas"))
	assert.Zero(t, tr.Profile("user").Count("alice"))
	t.Logf("%d calls: %d completed, %d refused at the limit of %d; at most %d at once",
		calls, res.Successful, st.Limited, limit, obs.max.Load())
}

func errorsIsLimit(err error) bool { return errors.Is(err, dialog.ErrLimit) }
