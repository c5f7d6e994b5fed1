package rtpengine_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/asyncsip/asyncsip"
	"github.com/asyncsip/asyncsip/internal/sipp"
	"github.com/asyncsip/asyncsip/internal/testenv"
	"github.com/asyncsip/asyncsip/modules/dialog"
	"github.com/asyncsip/asyncsip/modules/rtpengine"
	"github.com/asyncsip/asyncsip/tm"
)

// TestSIPpDialogEndDeletesCalls: the routes never delete; modules/dialog
// tracks the calls and Client.DeleteOnEnd deletes each on rtpengine when
// its BYE ends it. After SIPp's calls rtpengine holds no session.
func TestSIPpDialogEndDeletesCalls(t *testing.T) {
	sipp.Path(t)
	p := testenv.StartRTPEngine(t)
	rtp := newClient(t, rtpengine.Config{Instances: []rtpengine.Instance{{Addr: p.Addr}}})
	uas := sipp.Start(t, sipp.Config{Scenario: sipp.UAS, Timeout: 60 * time.Second})
	target := fmt.Sprintf("sip:bob@127.0.0.1:%d", uas.Port())

	srv, err := asyncsip.New(asyncsip.Config{Listen: []string{"udp:127.0.0.1:0"}, Workers: 2})
	if err != nil {
		t.Fatal(err)
	}
	var deleted, failed atomic.Int64
	tracker := dialog.New(dialog.Config{Observer: rtp.DeleteOnEnd(srv.Group(), nil, func(_ string, err error) {
		if err != nil {
			failed.Add(1)
			return
		}
		deleted.Add(1)
	})})
	flags := &rtpengine.Flags{ReplaceOrigin: true}
	srv.SetRoutes(tracker.Routes(tm.Routes{
		Request: func(c *tm.Context) {
			switch {
			case c.InDialog():
				_ = c.Relay()
			case c.Method() == sip.INVITE:
				if err := tracker.Track(c, dialog.Options{}); err != nil {
					_ = c.Reply(503, "")
					return
				}
				rtpengine.Offer(c, rtp, flags, func(err error) {
					if err != nil {
						_ = c.Reply(503, "")
						return
					}
					_ = c.Relay(target)
				})
			}
		},
		Reply: func(c *tm.Context) {
			if c.Method() == sip.INVITE && c.Resp.StatusCode == 200 {
				rtpengine.Answer(c, rtp, flags, func(error) {})
			}
		},
	}))
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}()
	const n = 20
	res := sipp.Run(t, sipp.Config{Scenario: sipp.UAC, Remote: srv.Addrs()[0].String(), Service: "bob", Calls: n, Rate: 20, Timeout: 40 * time.Second})
	if res.Successful != n {
		t.Fatalf("SIPp: %d of %d successful:\n%s\n%s", res.Successful, n, res.Output, res.Errors)
	}
	testenv.Eventually(t, 10*time.Second, "every call deleted at its end", func() bool { return deleted.Load()+failed.Load() >= n })
	if deleted.Load() != n || failed.Load() != 0 {
		t.Fatalf("%d deleted, %d failed", deleted.Load(), failed.Load())
	}
	g := newGroup(t, 1)
	r, err := run(t, g.Loop(0), rtp.Do("statistics", rtpengine.Call{}, nil, nil))
	if err != nil {
		t.Fatal(err)
	}
	stats, _ := r.Dict["statistics"].(map[string]any)
	cur, _ := stats["currentstatistics"].(map[string]any)
	total, _ := stats["totalstatistics"].(map[string]any)
	if m, _ := total["managedsessions"].(int64); m != n {
		t.Fatalf("rtpengine managed %d sessions, want %d", m, n)
	}
	if s, _ := cur["sessionstotal"].(int64); s != 0 {
		t.Fatalf("rtpengine still holds %d sessions", s)
	}
}
