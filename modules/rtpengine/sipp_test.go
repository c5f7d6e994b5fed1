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
	"github.com/asyncsip/asyncsip/modules/rtpengine"
	"github.com/asyncsip/asyncsip/tm"
)

// outcomes counts what the route helpers' next got.
type outcomes struct{ offers, answers, deletes, failed atomic.Int64 }

func (o *outcomes) count(n *atomic.Int64, err error) {
	if err != nil {
		o.failed.Add(1)
		return
	}
	n.Add(1)
}

// mediaProxy starts a proxy (workers loops) that relays every call to
// target through rtpengine: Offer on the INVITE, Answer on its 183/200,
// Delete on the BYE.
func mediaProxy(t testing.TB, workers int, rtp *rtpengine.Client, target string, o *outcomes) string {
	t.Helper()
	srv, err := asyncsip.New(asyncsip.Config{Listen: []string{"udp:127.0.0.1:0"}, Workers: workers})
	if err != nil {
		t.Fatal(err)
	}
	srv.SetRoutes(tm.Routes{
		Request: func(c *tm.Context) {
			switch {
			case c.InDialog() && c.Method() == sip.BYE:
				rtpengine.Delete(c, rtp, nil, func(err error) {
					o.count(&o.deletes, err)
					_ = c.Relay()
				})
			case c.InDialog():
				_ = c.Relay()
			case c.Method() == sip.INVITE:
				rtpengine.Offer(c, rtp, &rtpengine.Flags{ReplaceOrigin: true, ICE: rtpengine.ICERemove}, func(err error) {
					o.count(&o.offers, err)
					if err != nil {
						_ = c.Reply(503, "Media relay unavailable")
						return
					}
					_ = c.Relay(target)
				})
			default:
				_ = c.Reply(405, "")
			}
		},
		Reply: func(c *tm.Context) {
			if c.Method() == sip.INVITE && (c.Resp.StatusCode == 183 || c.Resp.StatusCode == 200) {
				rtpengine.Answer(c, rtp, &rtpengine.Flags{ReplaceOrigin: true, ICE: rtpengine.ICERemove}, func(err error) {
					o.count(&o.answers, err)
				})
			}
		},
	})
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	})
	return srv.Addrs()[0].String()
}

// TestSIPpCallsThroughRTPEngine: SIPp calls through a proxy that puts
// their media through a real rtpengine; every call succeeds, each got its
// offer, answer and delete, and rtpengine counts the calls it managed.
func TestSIPpCallsThroughRTPEngine(t *testing.T) {
	sipp.Path(t)
	p := testenv.StartRTPEngine(t)
	rtp := newClient(t, rtpengine.Config{Instances: []rtpengine.Instance{{Addr: p.Addr}}})
	uas := sipp.Start(t, sipp.Config{Scenario: sipp.UAS, Timeout: 60 * time.Second})
	var o outcomes
	proxy := mediaProxy(t, 2, rtp, fmt.Sprintf("sip:bob@127.0.0.1:%d", uas.Port()), &o)
	const n = 50
	res := sipp.Run(t, sipp.Config{Scenario: sipp.UAC, Remote: proxy, Service: "bob", Calls: n, Rate: 50, Timeout: 40 * time.Second})
	if res.Successful != n || res.Failed != 0 {
		t.Fatalf("SIPp: %d successful, %d failed:\n%s\n%s", res.Successful, res.Failed, res.Output, res.Errors)
	}
	testenv.Eventually(t, 5*time.Second, "every delete answered", func() bool { return o.deletes.Load() == n })
	if o.offers.Load() != n || o.answers.Load() < n || o.failed.Load() != 0 {
		t.Fatalf("offers %d, answers %d, deletes %d, failed %d", o.offers.Load(), o.answers.Load(), o.deletes.Load(), o.failed.Load())
	}
	g := newGroup(t, 1)
	r, err := run(t, g.Loop(0), rtp.Do("statistics", rtpengine.Call{}, nil, nil))
	if err != nil {
		t.Fatal(err)
	}
	stats, _ := r.Dict["statistics"].(map[string]any)
	total, _ := stats["totalstatistics"].(map[string]any)
	cur, _ := stats["currentstatistics"].(map[string]any)
	t.Logf("rtpengine: managed %v, regular terminated %v, now %v", total["managedsessions"], total["regularterminatedsessions"], cur["sessionstotal"])
	if m, _ := total["managedsessions"].(int64); m != n {
		t.Fatalf("rtpengine managed %d sessions, want %d", m, n)
	}
	if s, _ := cur["sessionstotal"].(int64); s != 0 {
		t.Fatalf("rtpengine still holds %d sessions after every BYE", s)
	}
	if st := rtp.Stats(); st.Calls != 0 {
		t.Fatalf("%d calls still bound after every delete", st.Calls)
	}
}
