package main

import (
	"database/sql"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/asyncsip/asyncsip/internal/sipp"
	"github.com/asyncsip/asyncsip/internal/testenv"
)

// Three instances share one Redis: a user registered through A is called
// through B and C; the binding is in Redis, not in the database; a nonce
// B issued is good at C with a higher nonce-count, and a replay of a count
// B accepted is refused at C.
func TestScaleRegisterOnOneCallThroughOthers(t *testing.T) {
	c := newCluster(t, func(d string) {
		cli(t, "-data", d, "user", "add", "alice", "alicepw")
		cli(t, "-data", d, "user", "add", "bob", "bobpw")
		cli(t, "-data", d, "user", "add", "carol", "carolpw")
	})
	a, b, cc := c.start(t, "a"), c.start(t, "b"), c.start(t, "c")

	bob := newUA(t, "bob", a.addr)
	require.Equal(t, 200, bob.register("127.0.0.1", "bobpw", 600).StatusCode)
	db, err := sql.Open("sqlite", filepath.Join(c.data, "proxy.db"))
	require.NoError(t, err)
	defer db.Close()
	var n int
	require.NoError(t, db.QueryRow(`SELECT count(*) FROM location`).Scan(&n))
	assert.Zero(t, n, "with -location redis the binding is not in the database")

	carol := newUA(t, "carol", cc.addr)
	carol.call("sip:bob@127.0.0.1", "call-via-c", "carolpw")
	inv, from := bob.recvRequest()
	require.Equal(t, "INVITE", string(inv.Method))
	assert.Equal(t, bob.contact(), inv.Recipient.String())
	bob.answer(inv, from, 200, "OK")
	require.Equal(t, 200, carol.recvResponse().StatusCode)

	// alice is challenged by B and answers B with nc 1.
	alice := newUA(t, "alice", b.addr)
	const ruri = "sip:bob@127.0.0.1"
	alice.invite(ruri, "call-via-b")
	ch := alice.recvResponse()
	require.Equal(t, 407, ch.StatusCode)
	alice.ack407(ch, ruri, "z9hG4bK-inv-call-via-b")
	nc1 := alice.inviteMsg(ruri, "call-via-b", "z9hG4bK-nc1", 2,
		alice.digest(ch.GetHeaders("Proxy-Authenticate"), "Proxy-Authorization", "INVITE", ruri, "alicepw", "00000001"))
	alice.send(nc1, b.addr)
	inv, from = bob.recvRequest()
	require.Equal(t, "call-via-b", inv.CallID().Value())
	bob.answer(inv, from, 200, "OK")
	require.Equal(t, 200, alice.recvResponse().StatusCode)

	// The same nonce with nc 2 at C: accepted (C knows B's nonce).
	nc2 := alice.inviteMsg(ruri, "call-via-c2", "z9hG4bK-nc2", 3,
		alice.digest(ch.GetHeaders("Proxy-Authenticate"), "Proxy-Authorization", "INVITE", ruri, "alicepw", "00000002"))
	alice.send(nc2, cc.addr)
	inv, from = bob.recvRequest()
	require.Equal(t, "call-via-c2", inv.CallID().Value())
	bob.answer(inv, from, 200, "OK")
	require.Equal(t, 200, alice.recvResponse().StatusCode)

	// A replay of the nc 1 INVITE (new Call-ID and branch, same
	// credentials) at C: a stale challenge, nothing relayed.
	replay := strings.NewReplacer("call-via-b", "call-replay", "z9hG4bK-nc1", "z9hG4bK-replay").Replace(nc1)
	alice.send(replay, cc.addr)
	r := alice.recvResponse()
	require.Equal(t, 407, r.StatusCode, r.String())
	assert.Contains(t, r.GetHeader("Proxy-Authenticate").Value(), "stale=true")
}

// runTrunkCalls places calls through every proxy at once with SIPp (calls
// per proxy, held 3 s so all are placed before any ends) and waits for them.
func runTrunkCalls(t *testing.T, procs []*proxyProc, calls int) []sipp.Result {
	t.Helper()
	var ps []*sipp.Process
	for _, p := range procs {
		ps = append(ps, sipp.Start(t, sipp.Config{Scenario: "testdata/trunk_uac.xml", Remote: p.addr.String(),
			Service: "+15550000", Calls: calls, Rate: 50, Limit: calls, Timeout: 40 * time.Second}))
	}
	var out []sipp.Result
	for _, p := range ps {
		out = append(out, p.Wait(40*time.Second))
	}
	return out
}

// A limit of 5 calls to the gateways holds over three instances that SIPp
// drives at once: 18 calls placed, 5 answered, never more than 5 held.
func TestScaleTrunkLimitAcrossInstances(t *testing.T) {
	testenv.SIPp(t)
	gw := startGateway(t)
	c := newCluster(t, func(d string) { cli(t, "-data", d, "gw", "add", "1", gw.addr(), "--prefix", "+1") })
	flags := []string{"-trusted", "127.0.0.1", "-trunk-calls", "5"}
	procs := []*proxyProc{c.start(t, "a", flags...), c.start(t, "b", flags...), c.start(t, "c", flags...)}
	for i, r := range runTrunkCalls(t, procs, 6) {
		require.Equal(t, 6, r.Successful, "sipp %d: every call answered or refused cleanly\n%s\n%s", i, r.Output, r.Errors)
	}
	// The SIPps place their calls within a fraction of the 3 s they hold
	// them: the trunk fills up to its limit and refuses the rest. (Were a
	// SIPp slow to start, a call ending would let another in: maxHeld is
	// the property, answered the usual outcome.)
	answered, held, maxHeld := gw.stats()
	assert.Equal(t, 5, maxHeld, "never more than the limit at once, and the limit reached")
	assert.Less(t, answered, 18, "calls beyond the limit were refused")
	t.Logf("%d of 18 calls answered", answered)
	assert.Zero(t, held, "every answered call was ended")
}

// A source that spreads its requests over three instances, under each
// one's rate, is banned by all of them once their sum goes over the
// shared limit (rate 2/s, burst 20: 40 per 10 s window).
func TestScaleRateCountedAcrossInstances(t *testing.T) {
	c := newCluster(t, nil)
	flags := []string{"-rate", "2", "-rate-burst", "20", "-rate-ban", "1m"}
	procs := []*proxyProc{c.start(t, "a", flags...), c.start(t, "b", flags...), c.start(t, "c", flags...)}
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	defer conn.Close()
	// Stay clear of a window boundary (windows are 10 s on Redis's clock,
	// this machine's): the 45 requests must count in one window.
	if rem := 10*time.Second - time.Duration(time.Now().UnixNano())%(10*time.Second); rem < 2*time.Second {
		time.Sleep(rem + 100*time.Millisecond)
	}
	seq := 0
	for _, p := range procs {
		for range 15 {
			seq++
			require.True(t, optionsTo(t, conn, p.addr, seq, 2*time.Second), "request %d answered: each instance alone is under its rate", seq)
		}
	}
	// One request now and then to each instance (below its own rate):
	// each stops answering once it learns the shared ban.
	for i, p := range procs {
		// 2.5 s: two exchanges (one a second); the few requests sent
		// meanwhile stay within the instance's own bucket.
		testenv.Eventually(t, 2500*time.Millisecond, fmt.Sprintf("instance %d bans the source", i), func() bool {
			seq++
			return !optionsTo(t, conn, p.addr, seq, 300*time.Millisecond)
		})
	}
	other, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 2)})
	if err == nil {
		defer other.Close()
		assert.True(t, optionsTo(t, other, procs[0].addr, 1, 2*time.Second), "another source is still answered")
	}
}

// Redis stopped mid-run: calls to the gateways go on, limited by each
// instance alone (the documented fallback), registrations and calls to
// registered users get 503 at once, nothing leaks; Redis restarted (empty):
// the instances recover without a restart.
func TestScaleRedisDownAndBack(t *testing.T) {
	testenv.SIPp(t)
	gw := startGateway(t)
	c := newCluster(t, func(d string) {
		cli(t, "-data", d, "gw", "add", "1", gw.addr(), "--prefix", "+1")
		cli(t, "-data", d, "user", "add", "bob", "bobpw")
	})
	flags := []string{"-trusted", "127.0.0.1", "-trunk-calls", "5"}
	procs := []*proxyProc{c.start(t, "a", flags...), c.start(t, "b", flags...), c.start(t, "c", flags...)}
	bob := newUA(t, "bob", procs[0].addr)
	require.Equal(t, 200, bob.register("127.0.0.1", "bobpw", 600).StatusCode)
	caller := newUA(t, "caller", procs[1].addr)
	caller.invite("sip:bob@127.0.0.1", "before-outage") // trusted: no challenge
	inv, from := bob.recvRequest()
	bob.answer(inv, from, 200, "OK")
	require.Equal(t, 200, caller.recvResponse().StatusCode)
	// Warm up every path the outage takes (the database pool opens its
	// connections on demand), then take the baseline.
	for i, r := range runTrunkCalls(t, procs, 6) {
		require.Equal(t, 6, r.Successful, "warm-up sipp %d\n%s\n%s", i, r.Output, r.Errors)
	}
	before, _, maxHeld := gw.stats()
	require.Equal(t, 5, maxHeld, "with Redis up the limit holds over the three")
	var base []procUsage
	for _, p := range procs {
		base = append(base, usageOf(t, p.cmd.Process.Pid))
	}

	c.redis.Stop()
	for i, r := range runTrunkCalls(t, procs, 6) {
		require.Equal(t, 6, r.Successful, "sipp %d: every call answered or refused within its bound\n%s\n%s", i, r.Output, r.Errors)
	}
	answered, _, maxHeld := gw.stats()
	assert.Equal(t, 15, answered-before, "each instance takes its own 5: the local limit")
	assert.LessOrEqual(t, maxHeld, 15)
	assert.Equal(t, 503, bob.register("127.0.0.1", "bobpw", 600).StatusCode, "no binding can be stored")
	caller.invite("sip:bob@127.0.0.1", "during-outage")
	assert.Equal(t, 503, caller.recvResponse().StatusCode, "no binding can be read")

	c.redis.Start()           // empty: no persistence
	for i, p := range procs { // each instance's client reconnects on its own
		bob.proxy = p.addr
		if !testenv.Poll(10*time.Second, func() bool { return bob.register("127.0.0.1", "bobpw", 600).StatusCode == 200 }) {
			t.Fatalf("registration through instance %d does not work again after Redis restarted", i)
		}
	}
	caller2 := newUA(t, "caller2", procs[2].addr)
	caller2.invite("sip:bob@127.0.0.1", "after-outage")
	inv, from = bob.recvRequest()
	require.Equal(t, "after-outage", inv.CallID().Value())
	bob.answer(inv, from, 200, "OK")
	require.Equal(t, 200, caller2.recvResponse().StatusCode)
	for i, p := range procs {
		pid := p.cmd.Process.Pid
		ok := testenv.Poll(5*time.Second, func() bool { return usageOf(t, pid).fds <= base[i].fds })
		now := usageOf(t, pid)
		assert.True(t, ok, "instance %d: %d fds after the outage, %d before\nbefore: %v\nafter:  %v", i, now.fds, base[i].fds,
			base[i].fdNames, now.fdNames)
		t.Logf("instance %d: fds %d → %d, threads %d → %d", i, base[i].fds, now.fds, base[i].threads, now.threads)
	}
}

// An instance killed with calls up: its part of the trunk count expires
// with its heartbeat, and the other instances get the trunk back.
func TestScaleKilledInstanceCountsExpire(t *testing.T) {
	gw := startGateway(t)
	c := newCluster(t, func(d string) { cli(t, "-data", d, "gw", "add", "1", gw.addr(), "--prefix", "+1") })
	flags := []string{"-trusted", "127.0.0.1", "-trunk-calls", "2"}
	a, doomed := c.start(t, "a", flags...), c.start(t, "doomed", flags...)
	u := newUA(t, "caller", a.addr)
	require.Equal(t, 200, gwCall(t, u, doomed.addr, "held-1"))
	require.Equal(t, 200, gwCall(t, u, doomed.addr, "held-2"))
	require.Equal(t, 503, gwCall(t, u, a.addr, "refused"), "the trunk is full over both instances")

	require.NoError(t, doomed.cmd.Process.Kill())
	<-doomed.done
	n := 0
	testenv.Eventually(t, 20*time.Second, "the killed instance's calls stop counting", func() bool {
		n++
		return gwCall(t, u, a.addr, fmt.Sprintf("retry-%d", n)) == 200
	})
	t.Logf("trunk free again after %d attempts", n)
}

// The proxy command docs/SCALING.md shows parses (its flags are the ones
// the tests above run with real processes).
func TestScalingDocCommandParses(t *testing.T) {
	b, err := os.ReadFile("../../docs/SCALING.md")
	require.NoError(t, err)
	text := strings.ReplaceAll(string(b), "\\\n", " ")
	n := 0
	for _, line := range strings.Split(text, "\n") {
		words := strings.Fields(line)
		if len(words) < 3 || words[0] != "go" || words[1] != "run" || words[2] != "./examples/proxy" {
			continue
		}
		n++
		cfg, cmd, err := parseConfig(words[3:])
		require.NoError(t, err, "docs/SCALING.md: %s", line)
		assert.Empty(t, cmd)
		assert.NotEmpty(t, cfg.Location)
		assert.NotEmpty(t, cfg.Shared)
	}
	require.Equal(t, 1, n, "one proxy command in docs/SCALING.md")
}

// -location and -shared take redis:// URLs only; -trunk-calls a count.
func TestScaleFlagsChecked(t *testing.T) {
	for _, tc := range []struct {
		args []string
		err  string
	}{
		{[]string{"-location", "redis://127.0.0.1:6379"}, ""},
		{[]string{"-shared", "rediss://user:pw@redis.example.com:6380/0", "-trunk-calls", "30"}, ""},
		{[]string{"-location", "postgres://127.0.0.1/x"}, "location:"},
		{[]string{"-shared", "127.0.0.1:6379"}, "shared:"},
		{[]string{"-shared", "redis://user:secretpw@"}, "redis://user:***@"},
		{[]string{"-trunk-calls", "-1"}, "trunk_calls:"},
	} {
		_, _, err := parseConfig(append([]string{"-data", t.TempDir()}, tc.args...))
		if tc.err == "" {
			assert.NoError(t, err, "%v", tc.args)
			continue
		}
		require.Error(t, err, "%v", tc.args)
		assert.Contains(t, err.Error(), tc.err, "%v", tc.args)
		assert.NotContains(t, err.Error(), "secretpw", "the password is not shown")
	}
}
