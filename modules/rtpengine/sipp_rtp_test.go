package rtpengine_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/asyncsip/asyncsip"
	"github.com/asyncsip/asyncsip/async"
	"github.com/asyncsip/asyncsip/internal/sipp"
	"github.com/asyncsip/asyncsip/internal/testenv"
	"github.com/asyncsip/asyncsip/modules/rtpengine"
	"github.com/asyncsip/asyncsip/tm"
)

const sippPCAP = "/usr/share/sip-tester/g711a.pcap"

// TestSIPpRTPCountedByRTPEngine: SIPp calls that play RTP (g711a.pcap)
// to the media address the proxy's Answer put in the 200; at the BYE the
// proxy queries the call (chained awaits: Query, then Delete) and
// rtpengine has counted RTP on every call.
func TestSIPpRTPCountedByRTPEngine(t *testing.T) {
	sipp.Path(t)
	if _, err := os.Stat(sippPCAP); err != nil {
		testenv.Need(t, sippPCAP, "install sip-tester (it ships the pcap)")
	}
	scen, err := os.ReadFile("testdata/uac_rtp.xml")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "uac_rtp.xml")
	if err := os.WriteFile(path, []byte(strings.ReplaceAll(string(scen), "[pcap]", sippPCAP)), 0o644); err != nil {
		t.Fatal(err)
	}
	p := testenv.StartRTPEngine(t)
	rtp := newClient(t, rtpengine.Config{Instances: []rtpengine.Instance{{Addr: p.Addr}}})
	uas := sipp.Start(t, sipp.Config{Scenario: sipp.UAS, Timeout: 60 * time.Second})
	target := fmt.Sprintf("sip:bob@127.0.0.1:%d", uas.Port())

	var withRTP, queried, packets atomic.Int64
	srv, err := asyncsip.New(asyncsip.Config{Listen: []string{"udp:127.0.0.1:0"}, Workers: 2})
	if err != nil {
		t.Fatal(err)
	}
	flags := &rtpengine.Flags{ReplaceOrigin: true, ReplaceSessionConnection: true}
	srv.SetRoutes(tm.Routes{
		Request: func(c *tm.Context) {
			switch {
			case c.InDialog() && c.Method() == sip.BYE:
				id := c.CallID()
				async.Await(c, rtp.Query(rtpengine.Call{CallID: id}), func(q *rtpengine.QueryResult, err error) {
					if err == nil {
						queried.Add(1)
						packets.Add(q.RTP.Packets)
						if q.RTP.Packets > 0 {
							withRTP.Add(1)
						}
					}
					rtpengine.Delete(c, rtp, nil, func(error) { _ = c.Relay() })
				}, async.Timeout(5*time.Second))
			case c.InDialog():
				_ = c.Relay()
			case c.Method() == sip.INVITE:
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
	})
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}()
	const n = 5
	res := sipp.Run(t, sipp.Config{Scenario: path, Remote: srv.Addrs()[0].String(), Service: "bob", Calls: n, Rate: 5, Timeout: 40 * time.Second})
	if res.Successful != n {
		t.Fatalf("SIPp: %d of %d successful:\n%s\n%s", res.Successful, n, res.Output, res.Errors)
	}
	testenv.Eventually(t, 5*time.Second, "every BYE queried", func() bool { return queried.Load() == n })
	t.Logf("rtpengine counted %d RTP packets over %d calls", packets.Load(), n)
	if withRTP.Load() != n {
		t.Fatalf("%d of %d calls had RTP counted by rtpengine (%d packets)", withRTP.Load(), n, packets.Load())
	}
}
