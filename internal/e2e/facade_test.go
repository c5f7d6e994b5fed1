package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/asyncsip/asyncsip"
	"github.com/asyncsip/asyncsip/async"
	"github.com/asyncsip/asyncsip/internal/e2e/e2etest"
	"github.com/asyncsip/asyncsip/modules/metrics"
	"github.com/asyncsip/asyncsip/tm"
)

// Config.Core reaches tm as it is, including the fields the facade used to
// copy by hand and had missed: SuspendTimeoutCode answers a route still
// suspended at Timers.SuspendBound.
func TestFacadeSuspendTimeoutCode(t *testing.T) {
	cases := map[string]struct {
		code int
		want string
	}{
		"default": {0, "SIP/2.0 504 "},
		"480":     {480, "SIP/2.0 480 "},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			p := startProxy(t, asyncsip.Config{Core: tm.Config{
				Timers:             tm.Timers{SuspendBound: 100 * time.Millisecond},
				SuspendTimeoutCode: tc.code,
			}}, tm.Routes{Request: func(c *tm.Context) {
				async.Await(c, async.Sleep(time.Minute), func(struct{}, error) { _ = c.Reply(200, "") })
			}})
			uac := e2etest.NewUDPPeer(t)
			uac.SendTo(p.srv.Addrs()[0], e2etest.Request("OPTIONS", "sip:bob@127.0.0.1", "UDP", uac.Port(), "susp-"+name, ""))
			resp, _ := uac.Read(5 * time.Second)
			require.True(t, strings.HasPrefix(resp, tc.want), "want %q, got:\n%s", tc.want, resp)
		})
	}
}

// MaxQueuedReplies bounds the provisional responses that wait while the
// reply route is suspended: with 1, of the three that arrive meanwhile two
// are dropped (and counted); with the default (32) none is. One worker:
// the gate opens once the server has read all four, and its completion
// runs after them on the only loop.
func TestFacadeMaxQueuedReplies(t *testing.T) {
	cases := map[string]struct {
		max   int
		drops uint64
	}{
		"default": {0, 0},
		"1":       {1, 2},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			uas, uac := e2etest.NewUDPPeer(t), e2etest.NewUDPPeer(t)
			resumed, g := make(chan struct{}), &gate{}
			p := startProxy(t, asyncsip.Config{Workers: 1, Core: tm.Config{MaxQueuedReplies: tc.max}}, tm.Routes{
				Request: relayTo(fmt.Sprintf("sip:bob@127.0.0.1:%d", uas.Port())),
				Reply: func(c *tm.Context) {
					if c.Resp.StatusCode != 180 {
						return
					}
					async.Await(c, g.op(), func(string, error) { close(resumed) })
				},
			})
			uac.SendTo(p.srv.Addrs()[0], e2etest.Request("MESSAGE", "sip:bob@127.0.0.1", "UDP", uac.Port(), "queue-"+name, "hi"))
			req, from := uas.Read(5 * time.Second)
			require.True(t, strings.HasPrefix(req, "MESSAGE "), req)
			for _, code := range []int{180, 181, 182, 183} {
				uas.SendTo(from, e2etest.Answer(req, code, "Progress"))
			}
			waitStats(t, p.srv, "the MESSAGE and four provisionals read", func(st tm.StatsSnapshot) bool { return st.Received >= 5 })
			g.release()
			select {
			case <-resumed:
			case <-time.After(5 * time.Second):
				t.Fatal("the reply route did not resume")
			}
			uas.SendTo(from, e2etest.Answer(req, 200, "OK"))
			for {
				resp, _ := uac.Read(5 * time.Second)
				if strings.HasPrefix(resp, "SIP/2.0 200 ") {
					break
				}
			}
			require.Equal(t, tc.drops, p.srv.Stats().DropQueue)
		})
	}
}

// A nil *metrics.Exporter (what a program that makes one only when an
// address is configured holds otherwise) is refused by New instead of
// serving nothing silently.
func TestFacadeNilExtensionRefused(t *testing.T) {
	var exp *metrics.Exporter
	_, err := asyncsip.New(asyncsip.Config{Listen: []string{"udp:127.0.0.1:0"}, Workers: 1,
		Extensions: []asyncsip.Extension{exp}})
	require.ErrorIs(t, err, metrics.ErrDisabled)
}
