package main

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/stretchr/testify/require"

	"github.com/asyncsip/asyncsip/internal/testenv"
)

// cluster is N proxy instances (processes) sharing one SQLite file for
// subscribers and gateways, the nonce secret, the route key, and a private
// redis-server for bindings (-location) and counts (-shared).
type cluster struct {
	redis *testenv.RedisProc
	data  string // the CLI's data dir; its proxy.db is every instance's -db
	key   string // the shared route key file
	procs []*proxyProc
}

const clusterSecret = "scale-test-secret-0123456789"

// newCluster starts the redis-server and prepares the shared data; setup
// (users, gateways: cli calls on c.data) runs before the instances start.
func newCluster(t *testing.T, setup func(data string)) *cluster {
	t.Helper()
	c := &cluster{redis: testenv.StartRedis(t), data: t.TempDir()}
	c.key = filepath.Join(t.TempDir(), "route.key")
	cli(t, "-data", c.data, "user", "add", "nobody", "nobodypw") // creates the database
	if setup != nil {
		setup(c.data)
	}
	return c
}

// start starts instance name with the cluster's shared flags and extra.
func (c *cluster) start(t *testing.T, name string, extra ...string) *proxyProc {
	t.Helper()
	url := "redis://" + c.redis.Addr()
	flags := []string{"-db", filepath.Join(c.data, "proxy.db"), "-data", t.TempDir(), "-secret", clusterSecret,
		"-route-key", c.key, "-location", url, "-shared", url, "-instance", name, "-db-timeout", "500ms"}
	p := startProxy(t, append(flags, extra...)...)
	c.procs = append(c.procs, p)
	return p
}

// fakeGateway is a gateway that answers every INVITE 200 at once and
// counts the calls it holds (from the INVITE to the BYE).
type fakeGateway struct {
	conn *net.UDPConn
	done chan struct{}

	mu      sync.Mutex
	active  map[string]bool
	seen    map[string]bool
	maxHeld int
}

func startGateway(t *testing.T) *fakeGateway {
	t.Helper()
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	g := &fakeGateway{conn: conn, done: make(chan struct{}), active: map[string]bool{}, seen: map[string]bool{}}
	go g.serve()
	t.Cleanup(func() {
		conn.Close()
		<-g.done
	})
	return g
}

func (g *fakeGateway) addr() string { return g.conn.LocalAddr().String() }

func (g *fakeGateway) serve() {
	defer close(g.done)
	buf := make([]byte, 65535)
	for {
		n, from, err := g.conn.ReadFromUDP(buf)
		if err != nil {
			return
		}
		m, err := sip.ParseMessage(append([]byte(nil), buf[:n]...))
		req, ok := m.(*sip.Request)
		if err != nil || !ok {
			continue
		}
		id := string(*req.CallID())
		switch req.Method {
		case sip.INVITE:
			g.mu.Lock()
			if !g.seen[id] {
				g.seen[id], g.active[id] = true, true
				g.maxHeld = max(g.maxHeld, len(g.active))
			}
			g.mu.Unlock()
			_, _ = g.conn.WriteToUDP([]byte(gwAnswer(req, g.addr())), from)
		case sip.BYE:
			g.mu.Lock()
			delete(g.active, id)
			g.mu.Unlock()
			_, _ = g.conn.WriteToUDP([]byte(gwAnswer(req, g.addr())), from)
		}
	}
}

// stats returns the calls answered so far, those held now and the most held
// at once.
func (g *fakeGateway) stats() (answered, held, maxHeld int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.seen), len(g.active), g.maxHeld
}

// gwAnswer is the gateway's 200 to req.
func gwAnswer(req *sip.Request, self string) string {
	var b strings.Builder
	b.WriteString("SIP/2.0 200 OK\r\n")
	for _, h := range req.GetHeaders("Via") {
		b.WriteString(h.String() + "\r\n")
	}
	for _, h := range req.GetHeaders("Record-Route") {
		b.WriteString(h.String() + "\r\n")
	}
	b.WriteString(req.From().String() + "\r\n")
	to := req.To().String()
	if !strings.Contains(to, "tag=") {
		to += ";tag=gw"
	}
	b.WriteString(to + "\r\n" + req.CallID().String() + "\r\n" + req.CSeq().String() + "\r\n")
	b.WriteString("Contact: <sip:gw@" + self + ">\r\nContent-Length: 0\r\n\r\n")
	return b.String()
}

// procUsage reads a process's CPU time (user+system) and its open fds and
// threads from /proc.
type procUsage struct {
	cpu          time.Duration
	fds, threads int
	fdNames      []string // what each fd is, for failure messages
}

func usageOf(t *testing.T, pid int) procUsage {
	t.Helper()
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	require.NoError(t, err)
	// Fields after the command name (which may hold spaces) start at ")".
	f := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+2:]))
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	threads, _ := strconv.Atoi(f[17])
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	fds, err := os.ReadDir(dir)
	require.NoError(t, err)
	var names []string
	for _, f := range fds {
		target, _ := os.Readlink(filepath.Join(dir, f.Name()))
		names = append(names, f.Name()+"→"+target)
	}
	const hz = 100 // USER_HZ on Linux
	return procUsage{cpu: time.Duration(ut+st) * time.Second / hz, fds: len(fds), threads: threads, fdNames: names}
}

// optionsTo sends an OPTIONS to the proxy itself from conn and reports
// whether an answer came within wait.
func optionsTo(t *testing.T, conn *net.UDPConn, to *net.UDPAddr, seq int, wait time.Duration) bool {
	t.Helper()
	port := conn.LocalAddr().(*net.UDPAddr).Port
	msg := fmt.Sprintf("OPTIONS sip:%s SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:%d;branch=z9hG4bK-opt-%d-%d;rport\r\n"+
		"Max-Forwards: 70\r\nFrom: <sip:probe@127.0.0.1>;tag=o%d\r\nTo: <sip:%s>\r\nCall-ID: opt-%d-%d\r\n"+
		"CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n", to, port, port, seq, seq, to, port, seq)
	_, err := conn.WriteToUDP([]byte(msg), to)
	require.NoError(t, err)
	buf := make([]byte, 4096)
	deadline := time.Now().Add(wait)
	for {
		require.NoError(t, conn.SetReadDeadline(deadline))
		n, _, err := conn.ReadFromUDP(buf)
		if err != nil {
			return false
		}
		if strings.Contains(string(buf[:n]), fmt.Sprintf("opt-%d-%d", port, seq)) {
			return true
		}
	}
}

// registerAt registers u's user with contact (another address than u's
// own: a SIPp UAS, say) through u's proxy.
func registerAt(t *testing.T, u *ua, password, contact string) *sip.Response {
	t.Helper()
	callID := fmt.Sprintf("regat-%s-%d", u.user, u.port())
	build := func(authz string) string {
		u.seq++
		return fmt.Sprintf("REGISTER sip:127.0.0.1 SIP/2.0\nVia: SIP/2.0/UDP 127.0.0.1:%d;branch=z9hG4bK-ra-%s-%d;rport\n"+
			"Max-Forwards: 70\nFrom: <sip:%s@127.0.0.1>;tag=r%d\nTo: <sip:%s@127.0.0.1>\nCall-ID: %s\nCSeq: %d REGISTER\n"+
			"Contact: <%s>;expires=3600\n%sContent-Length: 0\n\n", u.port(), u.user, u.seq, u.user, u.port(), u.user, callID, u.seq, contact, authz)
	}
	u.send(build(""), u.proxy)
	r := u.recvResponse()
	if r.StatusCode != 401 {
		return r
	}
	u.send(build(u.digest(r.GetHeaders("WWW-Authenticate"), "Authorization", "REGISTER", "sip:127.0.0.1", password, "00000001")), u.proxy)
	return u.recvResponse()
}

// gwCall sends an INVITE for a gateway number from a trusted u and
// returns the final response (a non-2xx is acknowledged).
func gwCall(t *testing.T, u *ua, to *net.UDPAddr, callID string) int {
	t.Helper()
	const ruri = "sip:+15550000@127.0.0.1"
	u.send(u.inviteMsg(ruri, callID, "z9hG4bK-inv-"+callID, 1, ""), to)
	r := u.recvResponse()
	if r.StatusCode >= 300 {
		u.send(fmt.Sprintf("ACK %s SIP/2.0\nVia: SIP/2.0/UDP 127.0.0.1:%d;branch=z9hG4bK-inv-%s;rport\nMax-Forwards: 70\n%s\n%s\n"+
			"Call-ID: %s\nCSeq: 1 ACK\nContent-Length: 0\n\n", ruri, u.port(), callID, r.From().String(), r.To().String(), callID), to)
	}
	return r.StatusCode
}
