package siptest_test

// Originated requests through the real server (asyncsip.New over UDP on
// 127.0.0.1) to a raw UDP peer: the same tm code as in the harness tests,
// on real loops, sockets and timers.

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/asyncsip/asyncsip"
	"github.com/asyncsip/asyncsip/async"
	"github.com/asyncsip/asyncsip/internal/sipp"
	"github.com/asyncsip/asyncsip/internal/testenv"
	"github.com/asyncsip/asyncsip/reactor"
	"github.com/asyncsip/asyncsip/tm"
)

// udpPeer is a raw UDP SIP peer on 127.0.0.1: it answers each request
// with code, after ignoring the first `ignore` datagrams it gets.
type udpPeer struct {
	conn   *net.UDPConn
	mu     sync.Mutex
	got    []string // request lines, retransmissions included
	ignore int
	code   int
	done   chan struct{}
}

func startPeer(t *testing.T, code, ignore int) *udpPeer {
	t.Helper()
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	p := &udpPeer{conn: conn, code: code, ignore: ignore, done: make(chan struct{})}
	go p.serve()
	t.Cleanup(func() {
		_ = conn.Close()
		<-p.done
	})
	return p
}

func (p *udpPeer) addr() string { return p.conn.LocalAddr().String() }

func (p *udpPeer) serve() {
	defer close(p.done)
	buf := make([]byte, 65535)
	for {
		n, from, err := p.conn.ReadFromUDP(buf)
		if err != nil {
			return // closed by the test
		}
		msg, err := sip.ParseMessage(append([]byte(nil), buf[:n]...))
		req, ok := msg.(*sip.Request)
		if err != nil || !ok {
			continue
		}
		p.mu.Lock()
		p.got = append(p.got, string(req.Method)+" "+req.Recipient.String())
		skip := len(p.got) <= p.ignore
		p.mu.Unlock()
		if skip {
			continue
		}
		resp := sip.NewResponseFromRequest(req, p.code, tm.StatusText(p.code), nil)
		_, _ = p.conn.WriteToUDP([]byte(resp.String()), from)
	}
}

func (p *udpPeer) requests() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.got...)
}

func startProxy(t *testing.T) *asyncsip.Server {
	t.Helper()
	srv, err := asyncsip.New(asyncsip.Config{Listen: []string{"udp:127.0.0.1:0"}, Workers: 2,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	require.NoError(t, err)
	srv.Request(func(c *tm.Context) { _ = c.Reply(404, "") })
	require.NoError(t, srv.Start())
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		_ = srv.Shutdown(ctx)
	})
	return srv
}

// goroutineID returns the id of the calling goroutine (test use only).
func goroutineID() string {
	b := make([]byte, 64)
	b = b[:runtime.Stack(b, false)]
	f := bytes.Fields(b)
	if len(f) < 2 {
		return ""
	}
	return string(f[1])
}

// An OPTIONS ping from a timer job reaches a UDP responder, and its answer
// is reported on the loop that ran the job.
func TestRealServerOriginatedOptionsFromTimerJob(t *testing.T) {
	srv := startProxy(t)
	peer := startPeer(t, 200, 0)
	type report struct {
		code            int
		err             error
		sameLoopRoutine bool
	}
	reports := make(chan report, 16)
	var once sync.Once
	job, err := srv.Group().Every(20*time.Millisecond, func(l *reactor.Loop) {
		once.Do(func() {
			req, err := srv.Core().NewRequest(tm.OutOfDialog{Method: sip.OPTIONS, Target: "sip:ping@" + peer.addr()})
			if err != nil {
				reports <- report{err: err}
				return
			}
			g := goroutineID()
			async.Launch(l, srv.Core().Send(req, tm.SendOptions{}), func(resp *sip.Response, err error) {
				r := report{err: err, sameLoopRoutine: goroutineID() == g}
				if resp != nil {
					r.code = resp.StatusCode
				}
				reports <- r
			}, async.Timeout(5*time.Second))
		})
	}, reactor.Skip)
	require.NoError(t, err)
	defer job.Stop()

	select {
	case r := <-reports:
		require.NoError(t, r.err)
		assert.Equal(t, 200, r.code)
		assert.True(t, r.sameLoopRoutine, "reported on the loop that launched it")
	case <-time.After(10 * time.Second):
		t.Fatal("no report within 10 s")
	}
	assert.Equal(t, []string{"OPTIONS sip:ping@" + peer.addr()}, peer.requests())
	st := srv.Stats().Originated
	assert.EqualValues(t, 1, st.Started)
	assert.EqualValues(t, 1, st.Completed)
}

// A BYE built from stored dialog state is retransmitted over real UDP
// until the peer answers (it ignores the first copy).
func TestRealServerOriginatedByeRetransmitted(t *testing.T) {
	srv := startProxy(t)
	peer := startPeer(t, 200, 1)
	d := tm.DialogState{CallID: "uac-real-1", LocalURI: "sip:alice@127.0.0.1", LocalTag: "a1",
		RemoteURI: "sip:bob@127.0.0.1", RemoteTag: "b1", RemoteTarget: "sip:bob@" + peer.addr(), LocalCSeq: 4}
	bye, err := d.Request(sip.BYE)
	require.NoError(t, err)
	type result struct {
		code int
		err  error
	}
	res := make(chan result, 1)
	l := srv.Group().Least()
	require.NoError(t, l.Post(func() {
		async.Launch(l, srv.Core().Send(bye, tm.SendOptions{}), func(resp *sip.Response, err error) {
			r := result{err: err}
			if resp != nil {
				r.code = resp.StatusCode
			}
			res <- r
		}, async.Timeout(5*time.Second))
	}))
	select {
	case r := <-res:
		require.NoError(t, r.err)
		assert.Equal(t, 200, r.code)
	case <-time.After(10 * time.Second):
		t.Fatal("no answer within 10 s")
	}
	got := peer.requests()
	require.GreaterOrEqual(t, len(got), 2, "the first copy was ignored, Timer E sent it again")
	for _, g := range got {
		assert.True(t, strings.HasPrefix(g, "BYE sip:bob@127.0.0.1:"), g)
	}
}

// The proxy ends a call between two SIPp peers: a BYE to each side, built
// with tm.CallDialogs from the INVITE and the 200 it relayed; both SIPp
// scenarios check the BYE came through the proxy and answer it 200.
func TestRealServerOriginatedByeToSIPp(t *testing.T) {
	uasPort := testenv.FreeUDPPort(t)
	uas := sipp.Start(t, sipp.Config{Scenario: sipp.UAS, LocalPort: uasPort, Calls: 1, Timeout: 30 * time.Second})
	srv, err := asyncsip.New(asyncsip.Config{Listen: []string{"udp:127.0.0.1:0"}, Workers: 2,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	require.NoError(t, err)
	codes := make(chan string, 2)
	// The dialogs of the call, kept by the reply route on the 200; the
	// request route and the reply route of one call run on its owner loop.
	var mu sync.Mutex
	var dialogs map[string]tm.DialogState
	endCall := func(c *tm.Context) {
		mu.Lock()
		ds := dialogs
		dialogs = nil
		mu.Unlock()
		for side, d := range ds {
			bye, err := d.Request(sip.BYE)
			if err != nil {
				codes <- side + " " + err.Error()
				continue
			}
			c.Server().Originate(c.Loop(), bye, tm.SendOptions{}, func(resp *sip.Response, err error) {
				if err != nil {
					codes <- side + " " + err.Error()
					return
				}
				codes <- fmt.Sprintf("%s %d", side, resp.StatusCode)
			})
		}
	}
	srv.SetRoutes(tm.Routes{
		Request: func(c *tm.Context) {
			if !c.InDialog() {
				_ = c.Relay(fmt.Sprintf("sip:bob@127.0.0.1:%d", uasPort))
				return
			}
			_ = c.Relay()
			if c.Method() == sip.ACK {
				endCall(c) // once the callee has its ACK, the proxy ends the call
			}
		},
		Reply: func(c *tm.Context) {
			if c.Resp.StatusCode != 200 || c.Method() != sip.INVITE {
				return
			}
			callee, caller, err := c.Server().CallDialogs(c.Req(), c.Resp)
			if err != nil {
				codes <- err.Error()
				return
			}
			mu.Lock()
			dialogs = map[string]tm.DialogState{"callee": callee, "caller": caller}
			mu.Unlock()
		},
	})
	require.NoError(t, srv.Start())
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		_ = srv.Shutdown(ctx)
	})

	res := sipp.Run(t, sipp.Config{Scenario: scenarioFile("uac_bye_wait.xml"), Remote: srv.Addrs()[0].String(),
		Service: "bob", Calls: 1, Timeout: 30 * time.Second})
	require.Equal(t, 1, res.Successful, "UAC: %s", res)
	r := uas.Wait(10 * time.Second)
	require.Equal(t, 1, r.Successful, "UAS: %s", r)
	var got []string
	for len(got) < 2 {
		select {
		case c := <-codes:
			got = append(got, c)
		case <-time.After(10 * time.Second):
			t.Fatalf("BYE outcomes: %v, want two", got)
		}
	}
	assert.ElementsMatch(t, []string{"callee 200", "caller 200"}, got)
}
