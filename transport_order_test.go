package asyncsip_test

import (
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/asyncsip/asyncsip"
	"github.com/asyncsip/asyncsip/tm"
)

// TestStreamOrderAckBye: the messages of one connection keep their order
// through the proxy (an ACK and the BYE right behind it, for many calls at
// once). Regression: delivered as loop tasks, a message owned by the loop
// that read it was queued again behind pending work, and the next message,
// already in the batch being run, overtook it.
func TestStreamOrderAckBye(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	srv := startStream(t, asyncsip.Config{Listen: []string{"tcp:127.0.0.1:0"}}, tm.Routes{Request: relayOrReply})
	uac := dialStream(t, "tcp", srv.Addrs()[0])
	ruri := "sip:bob@127.0.0.1:" + strconv.Itoa(ln.Addr().(*net.TCPAddr).Port) + ";transport=tcp"
	const n = 1000
	go func() {
		var b strings.Builder
		for i := 0; i < n; i++ {
			id := "ord-" + strconv.Itoa(i)
			for _, m := range []string{"ACK", "BYE"} {
				r := rawRequest(m, ruri, "TCP", uac.port(), id, "")
				r = strings.Replace(r, "To: <"+ruri+">", "To: <"+ruri+">;tag=x", 1)
				b.WriteString(r)
			}
			if i%50 == 49 {
				_, _ = uac.nc.Write([]byte(b.String()))
				b.Reset()
			}
		}
	}()
	_ = ln.(*net.TCPListener).SetDeadline(time.Now().Add(wait))
	nc, err := ln.Accept()
	require.NoError(t, err)
	defer nc.Close()
	p := &streamPeer{t: t, nc: nc, br: newReader(nc)}
	seenAck := map[string]bool{}
	bad := 0
	for i := 0; i < 2*n; i++ {
		m := p.read(5 * time.Second)
		id := hdrValue(m, "Call-ID")
		if strings.HasPrefix(m, "ACK") {
			seenAck[id] = true
		} else if !seenAck[id] {
			bad++
		}
	}
	require.Zero(t, bad)
}
