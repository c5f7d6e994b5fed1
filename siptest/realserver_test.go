package siptest_test

// The harness tests itself against the real server: the same routes run in
// a Harness and in asyncsip.New over UDP with SIPp peers on 127.0.0.1, and
// both must send the same replies and forwards — compared message by
// message (method or status, destination, Request-URI, Max-Forwards, Via,
// Record-Route and Route counts) from the harness's recorder and from the
// real server's wire capture (Config.Capture). Each scenario also states
// the exchange it expects, so that a change in tm shows up as a clear diff.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/stretchr/testify/require"

	"github.com/asyncsip/asyncsip"
	"github.com/asyncsip/asyncsip/async"
	"github.com/asyncsip/asyncsip/internal/sipp"
	"github.com/asyncsip/asyncsip/internal/testenv"
	"github.com/asyncsip/asyncsip/reactor"
	"github.com/asyncsip/asyncsip/siptest"
	"github.com/asyncsip/asyncsip/tm"
)

// restTimeout bounds the REST routing query.
const restTimeout = 300 * time.Millisecond

// crossEnv is what differs between the two runs of the same routes: the
// callees' addresses and what stands behind the awaits.
type crossEnv struct {
	uas1, uas2 string // callee URIs
	// lookup is the routing database (the harness holds it instead).
	lookup func(ctx context.Context, service string) (string, error)
	// routeURL is the REST routing service.
	routeURL string
	client   *http.Client
}

// routeGet is a REST query, GET url, whose result is the body; it
// describes itself as modules/rest's ops do.
type routeGet struct {
	url    string
	client *http.Client
}

func (o routeGet) Describe() string { return "rest: GET " + o.url }

func (o routeGet) Start(l *reactor.Loop, done func(string, error)) func() {
	return async.Blocking(func(ctx context.Context) (string, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, o.url, nil)
		if err != nil {
			return "", err
		}
		resp, err := o.client.Do(req)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return string(b), err
	}).Start(l, done)
}

// crossRoutes are the routes under test. The called user picks the
// behaviour: "normal" and "busy" relay to uas1 (busy: the failure route
// tries uas2 after a 486); "db" and "cancel" look the callee up first;
// "rest" asks a REST service, which is too slow (503).
func crossRoutes(env crossEnv) tm.Routes {
	return tm.Routes{
		Request: func(c *tm.Context) {
			if c.InDialog() || c.LooseRouted() {
				_ = c.Relay()
				return
			}
			relay := func(gw string, err error) {
				if err != nil {
					_ = c.Reply(503, "Routing unavailable")
					return
				}
				_ = c.Relay(gw)
			}
			switch user := c.Recipient().User; user {
			case "normal", "busy":
				_ = c.Relay(env.uas1)
			case "db", "cancel":
				async.Await(c, async.Blocking(func(ctx context.Context) (string, error) {
					return env.lookup(ctx, user)
				}, async.Name("lcr")), relay, async.Timeout(5*time.Second))
			case "rest":
				async.Await(c, routeGet{url: env.routeURL, client: env.client}, relay, async.Timeout(restTimeout))
			default:
				_ = c.Reply(404, "")
			}
		},
		Failure: func(c *tm.Context) {
			if c.Resp.StatusCode == 486 && len(c.Branches()) == 1 {
				_ = c.Relay(env.uas2)
			}
		},
	}
}

// crossCase is one scenario: SIPp scenarios for the real run, the same
// exchange driven by hand in the harness, and the proxy's output both must
// produce.
type crossCase struct {
	service    string
	uac        string
	uas1, uas2 string
	drive      func(t *testing.T, h *siptest.Harness, env crossEnv, inv *sip.Request)
	want       []string
}

var callFlow = []string{
	"uac <- 100 INVITE vias=1 rr=0",
	"uas1 <- INVITE uas1 mf=69 vias=2 rr=1 route=0",
	"uac <- 180 INVITE vias=1 rr=1",
	"uac <- 200 INVITE vias=1 rr=1",
	"uas1 <- ACK uas1 mf=69 vias=2 rr=0 route=0",
	"uas1 <- BYE uas1 mf=69 vias=2 rr=0 route=0",
	"uac <- 200 BYE vias=1 rr=0",
}

func crossCases() map[string]crossCase {
	return map[string]crossCase{
		"normal call": {
			service: "normal", uac: "uac_call.xml", uas1: "uas_call.xml",
			drive: func(t *testing.T, h *siptest.Harness, _ crossEnv, inv *sip.Request) {
				res := h.Send(inv)
				dialogCall(t, h, inv, res, 0)
			},
			want: callFlow,
		},
		"db-routed call": {
			service: "db", uac: "uac_call.xml", uas1: "uas_call.xml",
			drive: func(t *testing.T, h *siptest.Harness, env crossEnv, inv *sip.Request) {
				res := h.Send(inv)
				siptest.AssertAwaiting(t, res, "lcr")
				require.NoError(t, res.Await(0).Complete(env.uas1, nil))
				dialogCall(t, h, inv, res, 0)
			},
			want: callFlow,
		},
		"rest timeout": {
			service: "rest", uac: "uac_503.xml",
			drive: func(t *testing.T, h *siptest.Harness, _ crossEnv, inv *sip.Request) {
				res := h.Send(inv)
				siptest.AssertAwaiting(t, res, "rest: GET")
				h.Clock.Advance(restTimeout)
				siptest.AssertReplied(t, res, 503)
				require.Equal(t, siptest.AwaitTimedOut, res.Await(0).State())
				h.Send(siptest.NewAck(inv, res.Final().Response))
			},
			want: []string{
				"uac <- 100 INVITE vias=1 rr=0",
				"uac <- 503 INVITE vias=1 rr=0",
			},
		},
		"486 then failure route": {
			service: "busy", uac: "uac_call.xml", uas1: "uas_busy.xml", uas2: "uas_call.xml",
			drive: func(t *testing.T, h *siptest.Harness, env crossEnv, inv *sip.Request) {
				res := h.Send(inv)
				res.Branch(0).Respond(486)
				require.Len(t, res.Branch(0).Acks(), 1)
				siptest.AssertRelayedTo(t, res, env.uas2)
				dialogCall(t, h, inv, res, 1)
			},
			want: []string{
				"uac <- 100 INVITE vias=1 rr=0",
				"uas1 <- INVITE uas1 mf=69 vias=2 rr=1 route=0",
				"uas1 <- ACK uas1 mf=70 vias=1 rr=0 route=0",
				"uas2 <- INVITE uas2 mf=69 vias=2 rr=1 route=0",
				"uac <- 180 INVITE vias=1 rr=1",
				"uac <- 200 INVITE vias=1 rr=1",
				"uas2 <- ACK uas2 mf=69 vias=2 rr=0 route=0",
				"uas2 <- BYE uas2 mf=69 vias=2 rr=0 route=0",
				"uac <- 200 BYE vias=1 rr=0",
			},
		},
		"cancel while suspended": {
			service: "cancel", uac: "uac_cancel.xml",
			drive: func(t *testing.T, h *siptest.Harness, env crossEnv, inv *sip.Request) {
				res := h.Send(inv)
				siptest.AssertReplied(t, h.Send(siptest.NewCancel(inv)), 200)
				siptest.AssertReplied(t, res, 487) // at once: the await is aborted
				require.False(t, res.Suspended())
				require.ErrorIs(t, res.Await(0).Complete(env.uas1, nil), async.ErrNotPending)
				siptest.AssertNotRelayed(t, res)
				h.Send(siptest.NewAck(inv, res.Final().Response))
			},
			want: []string{
				"uac <- 100 INVITE vias=1 rr=0",
				"uac <- 200 CANCEL vias=1 rr=0",
				"uac <- 487 INVITE vias=1 rr=0",
			},
		},
	}
}

// dialogCall plays the rest of a call answered 180/200 by branch i: ACK
// and BYE through the proxy, 200 to the BYE.
func dialogCall(t *testing.T, h *siptest.Harness, inv *sip.Request, res *siptest.Result, i int) {
	t.Helper()
	br := res.Branch(i)
	br.Respond(180)
	br.Respond(200)
	siptest.AssertReplied(t, res, 200)
	d := siptest.NewDialog(inv, res.LastReply().Response)
	ack := h.Send(d.Ack())
	siptest.AssertForwardedTo(t, ack, br.Addr.String())
	bye := h.Send(d.Bye())
	siptest.AssertRelayedTo(t, bye, br.Addr.String())
	bye.Branch(0).Respond(200)
	siptest.AssertReplied(t, bye, 200)
}

func TestHarnessMatchesRealServer(t *testing.T) {
	testenv.SIPp(t)
	for name, tc := range crossCases() {
		t.Run(name, func(t *testing.T) {
			fake := runInHarness(t, tc)
			real := runOverUDP(t, tc)
			require.Equal(t, tc.want, fake, "harness: what the proxy sent")
			require.Equal(t, withoutLate180(tc.want, real), real, "real server over UDP: what the proxy sent")
		})
	}
}

// withoutLate180 is want without the caller's 180 when the real server did
// not send it. Over UDP with two loops on one socket, the callee's 180 may be
// read by one loop and handed to the owner while the owner reads the 200
// itself and handles it first: a provisional after the final response is
// not forwarded (RFC 3261 §16.7), and UDP promises no order anyway.
func withoutLate180(want, real []string) []string {
	for _, l := range real {
		if strings.HasPrefix(l, "uac <- 180 ") {
			return want
		}
	}
	out := make([]string, 0, len(want))
	for _, l := range want {
		if !strings.HasPrefix(l, "uac <- 180 ") {
			out = append(out, l)
		}
	}
	return out
}

// runInHarness drives the scenario in a Harness and summarizes what the
// proxy sent.
func runInHarness(t *testing.T, tc crossCase) []string {
	env := crossEnv{
		uas1: "sip:bob@127.0.0.1:5071", uas2: "sip:bob@127.0.0.1:5072",
		lookup: func(context.Context, string) (string, error) {
			t.Error("the harness ran the lookup: it should hold it")
			return "", errors.New("unexpected")
		},
		routeURL: "http://routing.test/route",
	}
	// No fake answers the routing service's op: the harness holds it, as
	// a service that never answers in time.
	h := siptest.NewHarness(t, crossRoutes(env))
	inv := siptest.NewRequest("INVITE", "sip:"+tc.service+"@"+siptest.DefaultProxy)
	tc.drive(t, h, env, inv)
	labels := map[string]string{siptest.DefaultUAC: "uac", "127.0.0.1:5071": "uas1", "127.0.0.1:5072": "uas2"}
	var out []sentMsg
	for _, s := range h.Sent() {
		out = append(out, sentMsg{msg: s.Msg, to: s.To})
	}
	return summarize(out, labels)
}

// runOverUDP runs the scenario through asyncsip.New on 127.0.0.1 with SIPp
// peers, and summarizes what the proxy sent on the wire.
func runOverUDP(t *testing.T, tc crossCase) []string {
	fds := testenv.CountFDs()
	t.Cleanup(func() { testenv.FDsBackTo(t, fds, 5*time.Second) })

	slow := make(chan struct{})
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select { // slower than restTimeout: the await times out first
		case <-r.Context().Done():
		case <-slow:
		case <-time.After(5 * time.Second):
		}
	}))
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	t.Cleanup(func() { close(slow); client.CloseIdleConnections(); api.Close() })

	uacPort := testenv.FreeUDPPort(t)
	labels := map[string]string{"127.0.0.1:" + strconv.Itoa(uacPort): "uac"}
	var uas []*sipp.Process
	env := crossEnv{routeURL: api.URL + "/route", client: client}
	for i, file := range []string{tc.uas1, tc.uas2} {
		if file == "" {
			continue
		}
		port := testenv.FreeUDPPort(t)
		uas = append(uas, sipp.Start(t, sipp.Config{Scenario: scenarioFile(file), LocalPort: port, Calls: 1, Timeout: 30 * time.Second}))
		uri := fmt.Sprintf("sip:bob@127.0.0.1:%d", port)
		labels["127.0.0.1:"+strconv.Itoa(port)] = fmt.Sprintf("uas%d", i+1)
		if i == 0 {
			env.uas1 = uri
		} else {
			env.uas2 = uri
		}
	}
	env.lookup = func(ctx context.Context, service string) (string, error) {
		if service == "cancel" { // a lookup still running when the caller gives up
			select {
			case <-ctx.Done():
				return "", ctx.Err()
			case <-time.After(time.Second):
			}
		}
		return env.uas1, nil
	}

	wire := &wireLog{}
	srv, err := asyncsip.New(asyncsip.Config{Listen: []string{"udp:127.0.0.1:0"}, Workers: 2,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Core: tm.Config{Capture: wire.capture}})
	require.NoError(t, err)
	srv.SetRoutes(crossRoutes(env))
	require.NoError(t, srv.Start())
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		_ = srv.Shutdown(ctx) // transactions linger in their timers: do not wait for them
	})

	res := sipp.Run(t, sipp.Config{Scenario: scenarioFile(tc.uac), Remote: srv.Addrs()[0].String(),
		LocalPort: uacPort, Service: tc.service, Calls: 1, Timeout: 30 * time.Second})
	require.Equal(t, 1, res.Successful, "UAC: %s", res)
	for i, p := range uas {
		r := p.Stop()
		require.Equal(t, 1, r.Successful, "UAS %d: %s", i+1, r)
	}
	return summarize(wire.sent(t), labels)
}

func scenarioFile(name string) string { return filepath.Join("testdata", "sipp", name) }

// wireLog keeps what the real server sends (Config.Capture runs on the
// loops, concurrently).
type wireLog struct {
	mu  sync.Mutex
	out []sentMsg
	bad []string
}

type sentMsg struct {
	msg sip.Message
	to  netip.AddrPort
}

func (w *wireLog) capture(ev tm.CaptureEvent) {
	if ev.Dir != tm.CaptureOut {
		return
	}
	m, err := sip.ParseMessage(append([]byte(nil), ev.Data...))
	w.mu.Lock()
	defer w.mu.Unlock()
	if err != nil {
		w.bad = append(w.bad, err.Error())
		return
	}
	w.out = append(w.out, sentMsg{msg: m, to: ev.Remote})
}

func (w *wireLog) sent(t *testing.T) []sentMsg {
	w.mu.Lock()
	defer w.mu.Unlock()
	require.Empty(t, w.bad, "the server sent unparsable messages")
	return append([]sentMsg(nil), w.out...)
}

// summarize turns what the proxy sent into comparable lines: destination,
// then for a response its code, CSeq method and Via and Record-Route
// counts; for a request its method, Request-URI host, Max-Forwards and
// Via, Record-Route and Route counts. Addresses become the labels given
// (uac, uas1…). Retransmissions (a line seen before) are left out: their
// number depends on real timing.
func summarize(sent []sentMsg, labels map[string]string) []string {
	label := func(hostport string) string {
		if l, ok := labels[hostport]; ok {
			return l
		}
		return hostport
	}
	seen := map[string]bool{}
	var out []string
	for _, s := range sent {
		var line string
		switch m := s.msg.(type) {
		case *sip.Response:
			line = fmt.Sprintf("%s <- %d %s vias=%d rr=%d", label(s.to.String()), m.StatusCode, m.CSeq().MethodName,
				len(m.GetHeaders("Via")), len(m.GetHeaders("Record-Route")))
		case *sip.Request:
			port := m.Recipient.Port
			if port == 0 {
				port = 5060
			}
			mf := "none"
			if v := m.MaxForwards(); v != nil {
				mf = v.Value()
			}
			line = fmt.Sprintf("%s <- %s %s mf=%s vias=%d rr=%d route=%d", label(s.to.String()), m.Method,
				label(m.Recipient.Host+":"+strconv.Itoa(port)), mf, len(m.GetHeaders("Via")),
				len(m.GetHeaders("Record-Route")), len(m.GetHeaders("Route")))
		}
		if !seen[line] {
			seen[line] = true
			out = append(out, line)
		}
	}
	return out
}
