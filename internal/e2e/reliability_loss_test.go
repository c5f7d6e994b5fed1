package e2e

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/asyncsip/asyncsip"
	"github.com/asyncsip/asyncsip/internal/sipp"
	"github.com/asyncsip/asyncsip/internal/testenv"
	"github.com/asyncsip/asyncsip/tm"
)

// Packet loss on every SIP leg. Calls must complete through
// retransmissions, and the UAS must see each request of a call forwarded
// once: retransmissions of the proxy's branch are expected, a second branch
// (a duplicate forward) is not.

// TestReliabilityLoss: SIPp's UAC loses 10% of what it sends and receives
// (-lost 10) and the UAS, written for this test, loses 10% of what it
// receives and sends (seeded, reproducible).
func TestReliabilityLoss(t *testing.T) {
	const calls = 60
	r := runLossCalls(t, calls, 0.10, []string{"-lost", "10"})
	t.Logf("10%% loss at the UAC (SIPp -lost 10) and the UAS: %s", r)
}

// TestReliabilityNetemLoss: the same calls on a loopback that loses 10% of
// all packets, in a network namespace the test creates (tc netem). It needs
// root and iproute2; the test binary runs itself inside the namespace.
func TestReliabilityNetemLoss(t *testing.T) {
	const calls = 60
	if os.Getenv(netemChildEnv) != "" {
		r := runLossCalls(t, calls, 0, nil)
		fmt.Printf("NETEM-RESULT %s\n", r)
		return
	}
	if os.Geteuid() != 0 {
		testenv.Need(t, "root (to create a network namespace with tc netem)", "sudo go test -run TestReliabilityNetemLoss .")
	}
	for _, tool := range []string{"ip", "tc"} {
		if _, err := exec.LookPath(tool); err != nil {
			testenv.Need(t, tool+" (iproute2)", "apt-get install iproute2")
		}
	}
	sipp.Path(t)
	ns := fmt.Sprintf("asyncsip-loss-%d", os.Getpid())
	run := func(args ...string) error {
		out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("%s: %v: %s", strings.Join(args, " "), err, out)
		}
		return nil
	}
	require.NoError(t, run("ip", "netns", "add", ns))
	t.Cleanup(func() { _ = run("ip", "netns", "del", ns) })
	require.NoError(t, run("ip", "-n", ns, "link", "set", "lo", "up"))
	if err := run("ip", "netns", "exec", ns, "tc", "qdisc", "add", "dev", "lo", "root", "netem", "loss", "10%"); err != nil {
		t.Skipf("tc netem is not available in this kernel: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", ns, os.Args[0],
		"-test.run", "^TestReliabilityNetemLoss$", "-test.count", "1", "-test.v")
	cmd.Env = append(os.Environ(), netemChildEnv+"=1")
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "inside the namespace:\n%s", out)
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	found := false
	for sc.Scan() {
		if r, ok := strings.CutPrefix(sc.Text(), "NETEM-RESULT "); ok {
			t.Logf("10%% loss on every packet of the loopback (tc netem): %s", r)
			found = true
		}
	}
	require.True(t, found, "no result from inside the namespace:\n%s", out)
}

const netemChildEnv = "ASYNCSIP_NETEM_CHILD"

// lossResult are the figures of one lossy run.
type lossResult struct {
	calls, invites, inviteCopies, byes, byeCopies int
	absorbed, clientTx                            uint64
	elapsed                                       time.Duration
}

func (r lossResult) String() string {
	return fmt.Sprintf("%d calls completed in %v; UAS got %d INVITE datagrams for %d INVITEs (1 branch per call), %d BYE datagrams for %d BYEs; proxy: %d client transactions, %d retransmissions absorbed",
		r.calls, r.elapsed.Round(100*time.Millisecond), r.inviteCopies, r.invites, r.byeCopies, r.byes, r.clientTx, r.absorbed)
}

// runLossCalls places calls through the proxy with SIPp (sippArgs) to a
// branchUAS that loses uasLoss of its datagrams, and checks the outcome.
func runLossCalls(t *testing.T, calls int, uasLoss float64, sippArgs []string) lossResult {
	uas := startBranchUAS(t, uasLoss)
	p := startProxy(t, asyncsip.Config{}, tm.Routes{Request: relayTo(uri("bob", uas.port))})
	start := time.Now()
	res := sipp.Run(t, sipp.Config{Scenario: sipp.UAC, Remote: p.addr, Service: "bob",
		Calls: calls, Rate: 30, Timeout: 2 * time.Minute, Args: sippArgs})
	requireAllOK(t, res, calls)
	r := lossResult{calls: res.Successful, elapsed: time.Since(start)}
	for _, m := range []string{"INVITE", "BYE"} {
		branches, datagrams := uas.seen(m)
		require.Len(t, branches, calls, "%s: calls that reached the UAS", m)
		for id, n := range branches {
			require.Equal(t, 1, n, "%s of call %s forwarded as %d transactions", m, id, n)
		}
		if m == "INVITE" {
			r.invites, r.inviteCopies = len(branches), datagrams
		} else {
			r.byes, r.byeCopies = len(branches), datagrams
		}
	}
	st := p.srv.Stats()
	r.absorbed, r.clientTx = st.RetransAbsorbed, st.ClientTxCreated
	require.EqualValues(t, 2*calls, st.ClientTxCreated, "one INVITE and one BYE forwarded per call")
	return r
}

// branchUAS answers INVITE with 200 (re-sent every 500 ms until the ACK or
// BYE, RFC 3261 §13.3.1.4) and any other request with 200, and records the
// branches of the requests it receives. It drops the given fraction of the
// datagrams it receives and sends (a seeded generator: reproducible).
type branchUAS struct {
	conn *net.UDPConn
	port int
	loss float64
	rnd  *rand.Rand

	mu       sync.Mutex
	branches map[string]map[string]bool // method|Call-ID → branches
	copies   map[string]int             // method → datagrams received
	resend   map[string]*okResend

	stop, done chan struct{}
}

func startBranchUAS(t testing.TB, loss float64) *branchUAS {
	t.Helper()
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	u := &branchUAS{conn: conn, port: conn.LocalAddr().(*net.UDPAddr).Port, loss: loss,
		rnd: rand.New(rand.NewPCG(11, 4475)), branches: map[string]map[string]bool{},
		copies: map[string]int{}, resend: map[string]*okResend{}, stop: make(chan struct{}), done: make(chan struct{})}
	go u.serve()
	t.Cleanup(func() { close(u.stop); <-u.done; _ = u.conn.Close() })
	return u
}

func (u *branchUAS) lost() bool { return u.loss > 0 && u.rnd.Float64() < u.loss }

func (u *branchUAS) write(b []byte, to *net.UDPAddr) {
	if !u.lost() {
		_, _ = u.conn.WriteToUDP(b, to)
	}
}

func (u *branchUAS) serve() {
	defer close(u.done)
	buf := make([]byte, 65536)
	for {
		select {
		case <-u.stop:
			return
		default:
		}
		_ = u.conn.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		n, from, err := u.conn.ReadFromUDP(buf)
		var ne net.Error
		switch {
		case errors.As(err, &ne) && ne.Timeout():
		case err != nil:
			return
		default:
			u.handle(string(buf[:n]), from)
		}
		u.retransmit()
	}
}

func (u *branchUAS) handle(msg string, from *net.UDPAddr) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.lost() {
		return
	}
	lines := strings.Split(msg, "\r\n")
	method, _, _ := strings.Cut(lines[0], " ")
	if method == "SIP/2.0" {
		return
	}
	callID := header(lines, "Call-ID")
	via := header(lines, "Via")
	_, branch, _ := strings.Cut(via, "branch=")
	branch, _, _ = strings.Cut(branch, ";")
	key := method + "|" + callID
	if u.branches[key] == nil {
		u.branches[key] = map[string]bool{}
	}
	u.branches[key][branch] = true
	u.copies[method]++
	switch method {
	case "INVITE":
		ok := response(lines, "200 OK", u.port)
		u.write(ok, from)
		u.resend[callID] = &okResend{msg: ok, to: from, next: time.Now().Add(500 * time.Millisecond), left: 8}
	case "ACK":
		delete(u.resend, callID)
	default:
		delete(u.resend, callID)
		u.write(response(lines, "200 OK", u.port), from)
	}
}

func (u *branchUAS) retransmit() {
	now := time.Now()
	u.mu.Lock()
	defer u.mu.Unlock()
	for id, r := range u.resend {
		if now.Before(r.next) {
			continue
		}
		u.write(r.msg, r.to)
		r.next = now.Add(500 * time.Millisecond)
		if r.left--; r.left == 0 {
			delete(u.resend, id)
		}
	}
}

// seen returns, per Call-ID, how many branches brought method, and how
// many datagrams of method arrived in all.
func (u *branchUAS) seen(method string) (map[string]int, int) {
	u.mu.Lock()
	defer u.mu.Unlock()
	out := map[string]int{}
	for key, bs := range u.branches {
		if m, id, _ := strings.Cut(key, "|"); m == method {
			out[id] = len(bs)
		}
	}
	return out, u.copies[method]
}
