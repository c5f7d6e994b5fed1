package dialog_test

// In-dialog pings on the real server between two raw UDP peers on
// 127.0.0.1: the callee vanishes mid-call, its pings go unanswered, and
// the proxy ends the call with a BYE that the caller gets.

import (
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/asyncsip/asyncsip/internal/testenv"
	"github.com/asyncsip/asyncsip/modules/dialog"
	"github.com/asyncsip/asyncsip/siptest"
)

// uaPeer is a minimal UA on a UDP socket: it answers every request but ACK
// with 200 (with a Contact, and its To tag on an INVITE), records the
// methods it got, and hands responses to the test.
type uaPeer struct {
	conn  *net.UDPConn
	tag   string
	mu    sync.Mutex
	got   []string
	resps chan *sip.Response
	done  chan struct{}
}

func startUA(t *testing.T, tag string) *uaPeer {
	t.Helper()
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	p := &uaPeer{conn: conn, tag: tag, resps: make(chan *sip.Response, 16), done: make(chan struct{})}
	go p.serve()
	t.Cleanup(p.vanish)
	return p
}

func (p *uaPeer) addr() netip.AddrPort { return p.conn.LocalAddr().(*net.UDPAddr).AddrPort() }

// vanish closes the socket: the UA is gone, nothing answers any more.
func (p *uaPeer) vanish() {
	_ = p.conn.Close()
	<-p.done
}

func (p *uaPeer) serve() {
	defer close(p.done)
	buf := make([]byte, 65535)
	for {
		n, from, err := p.conn.ReadFromUDP(buf)
		if err != nil {
			return
		}
		msg, err := sip.ParseMessage(append([]byte(nil), buf[:n]...))
		if err != nil {
			continue
		}
		if resp, ok := msg.(*sip.Response); ok {
			select {
			case p.resps <- resp:
			default:
			}
			continue
		}
		req := msg.(*sip.Request)
		p.mu.Lock()
		p.got = append(p.got, string(req.Method))
		p.mu.Unlock()
		if req.Method == sip.ACK {
			continue
		}
		resp := sip.NewResponseFromRequest(req, 200, "OK", nil)
		if req.Method == sip.INVITE {
			resp.RemoveHeader("Record-Route")
			for _, h := range req.GetHeaders("Record-Route") {
				resp.AppendHeader(sip.HeaderClone(h))
			}
			resp.To().Params.Add("tag", p.tag)
		}
		resp.AppendHeader(&sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: "ua", Host: "127.0.0.1", Port: int(p.addr().Port())}})
		_, _ = p.conn.WriteToUDP([]byte(resp.String()), from)
	}
}

func (p *uaPeer) count(method string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, m := range p.got {
		if m == method {
			n++
		}
	}
	return n
}

func (p *uaPeer) send(t *testing.T, req *sip.Request, to netip.AddrPort) {
	t.Helper()
	_, err := p.conn.WriteToUDPAddrPort([]byte(req.String()), to)
	require.NoError(t, err)
}

func TestRealServerPingDetectsVanishedCallee(t *testing.T) {
	caller, callee := startUA(t, "caller-tag"), startUA(t, "callee-tag")
	obs := &concurrency{}
	tr := dialog.New(dialog.Config{Observer: obs, PingTimeout: 100 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	opts := dialog.Options{PingInterval: 200 * time.Millisecond, PingFailures: 2,
		Profiles: []dialog.ProfileValue{{Profile: "trunk", Value: "uas"}}}
	srv := startTracked(t, tr, opts, int(callee.addr().Port()))
	proxy := srv.Addrs()[0]

	inv := siptest.NewRequest("INVITE", "sip:bob@"+proxy.String(), siptest.WithSource(caller.addr().String()))
	caller.send(t, inv, proxy)
	var ok *sip.Response
	for ok == nil {
		select {
		case r := <-caller.resps:
			if r.StatusCode == 200 {
				ok = r
			}
		case <-time.After(10 * time.Second):
			t.Fatal("no 200 for the INVITE")
		}
	}
	caller.send(t, siptest.NewDialog(inv, ok).Ack(), proxy)

	// Pings reach both sides and are answered: the call stays up.
	testenv.Eventually(t, 10*time.Second, "two pings answered by each side", func() bool {
		return callee.count("OPTIONS") >= 2 && caller.count("OPTIONS") >= 2
	})
	require.Equal(t, 1, tr.Active())
	require.Equal(t, 1, tr.Profile("trunk").Count("uas"))

	callee.vanish()
	testenv.Eventually(t, 10*time.Second, "the caller gets the proxy's BYE", func() bool {
		return caller.count("BYE") == 1
	})
	testenv.Eventually(t, 10*time.Second, "the call ended", func() bool { return tr.Active() == 0 })
	st := tr.Stats()
	assert.Equal(t, uint64(1), st.ByReason[dialog.PingFailure])
	assert.GreaterOrEqual(t, st.PingFailed, uint64(2))
	assert.Equal(t, uint64(2), st.ByeSent)
	assert.Zero(t, tr.Profile("trunk").Count("uas"))
	assert.Equal(t, int64(1), obs.count(dialog.PingFailure))
}
