package main

import (
	"context"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/emiago/sipgo/sip"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/asyncsip/asyncsip/internal/testenv"
	"github.com/asyncsip/asyncsip/siptest"
)

// A call set up before a restart can be ended after it: the key that signs
// the Record-Route lives in the data dir (route.key, 0600) and is read
// again; a BYE whose Route was tampered with is refused. The data dir is
// 0700 and its secrets and database 0600.
func TestRouteKeySurvivesRestart(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data") // created by the proxy
	port := testenv.FreeUDPPort(t)
	flags := []string{"-data", data, "-listen", fmt.Sprintf("udp:127.0.0.1:%d", port)}
	lp := startLive(t, nil, flags...)
	bob := newSock(t, phoneIP, "bob", 0)
	require.Equal(t, 200, bob.registerAs(lp, "bob", "bobpw", bob.contact()).StatusCode)
	alice := newSock(t, phoneIP, "alice", 0)
	alice.callAs(lp, "alice", "alicepw", lp.uri("bob"), "restart-call")
	inv, from := bob.request()
	rr := inv.GetHeaders("Record-Route")
	require.Len(t, rr, 1)
	bob.reply(inv, from, 200)
	require.Equal(t, 200, alice.final("restart-call").StatusCode)
	lp.stop()

	info, err := os.Stat(data)
	require.NoError(t, err)
	assert.Equal(t, fs.FileMode(0o700), info.Mode().Perm(), "data dir")
	for _, f := range []string{"proxy.db", "route.key", "nonce.secret"} {
		info, err := os.Stat(filepath.Join(data, f))
		require.NoError(t, err, f)
		assert.Equal(t, fs.FileMode(0o600), info.Mode().Perm(), f)
	}

	lp = startLive(t, nil, flags...)
	bye := func(branch, route string) string {
		return fmt.Sprintf("BYE %s SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=%s;rport\r\nMax-Forwards: 70\r\n"+
			"Route: %s\r\nFrom: %s;tag=uas-bob\r\nTo: %s\r\nCall-ID: restart-call\r\nCSeq: 1 BYE\r\nContent-Length: 0\r\n\r\n",
			inv.Contact().Address.String(), bob.hostport(), branch, route, inv.To().Value(), inv.From().Value())
	}
	// A tampered signature first: refused.
	route := rr[0].Value()
	i := strings.LastIndexAny(route, "0123456789abcdefABCDEF")
	require.Positive(t, i, route)
	flip := map[byte]byte{'0': '1'}[route[i]]
	if flip == 0 {
		flip = '0'
	}
	bob.send(bye("z9hG4bK-bye-forged", route[:i]+string(flip)+route[i+1:]), lp.udp)
	assert.Equal(t, 403, bob.final("restart-call").StatusCode, "a tampered Route")
	bob.send(bye("z9hG4bK-bye-1", route), lp.udp)
	got, gfrom := alice.request()
	require.Equal(t, sip.BYE, got.Method, "the BYE of a call set up before the restart")
	alice.reply(got, gfrom, 200)
	assert.Equal(t, 200, bob.final("restart-call").StatusCode)
}

func TestSecurityDefaults(t *testing.T) {
	cfg := defaultConfig()
	assert.False(t, cfg.FailOpen, "fail_open")
	assert.Equal(t, 10, cfg.MaxContacts)
	assert.Equal(t, 10, cfg.MaxFork)
	assert.Equal(t, 32, cfg.RESTConcurrency)
	assert.Equal(t, 64, cfg.RESTQueue)
	assert.Equal(t, 20, cfg.Rate)
	assert.Equal(t, 10, cfg.AuthFailures)
	assert.True(t, cfg.BindNonce)
	assert.Empty(t, cfg.Trusted)
	require.NoError(t, cfg.validate())
}

func TestSecurityConfigValidation(t *testing.T) {
	cases := []struct {
		name  string
		flags []string
		json  string
		want  string // "" = accepted
	}{
		{"trusted forms", []string{"-trusted", "192.0.2.10,198.51.100.0/24", "-trusted", "[2001:db8::1]:5060", "-trusted", "203.0.113.7:5080"}, "", ""},
		{"trusted host name", []string{"-trusted", "gw.example.com"}, "", `trusted "gw.example.com": want an IP address, a CIDR prefix`},
		{"trusted in the file", nil, `{"trusted": ["10.0.0.0/8"]}`, ""},
		{"trusted bad prefix", nil, `{"trusted": ["10.0.0.0/99"]}`, `trusted "10.0.0.0/99"`},
		{"max_contacts zero", []string{"-max-contacts", "0"}, "", "max_contacts: 0 is out of range 1..1000"},
		{"max_fork above tm's breadth", []string{"-max-fork", "61"}, "", "max_fork: 61 is out of range 1..60"},
		{"rest_concurrency", nil, `{"rest_concurrency": 0}`, "rest_concurrency: 0 is out of range"},
		{"rest_queue negative", []string{"-rest-queue", "-1"}, "", "rest_queue: -1 is out of range"},
		{"rate off", []string{"-rate", "0"}, "", ""},
		{"rate negative", []string{"-rate", "-5"}, "", "rate: -5 is out of range 0..100000"},
		{"rate_burst zero", nil, `{"rate_burst": 0}`, "rate_burst: 0 is out of range"},
		{"rate_ban string", nil, `{"rate_ban": "10m", "auth_ban": "5m"}`, ""},
		{"rate_ban number", nil, `{"rate_ban": 60}`, `rate_ban: want a duration string`},
		{"auth_ban too short", []string{"-auth-ban", "10ms"}, "", "auth_ban: 10ms is out of range 1s..24h0m0s"},
		{"auth_failures zero", nil, `{"auth_failures": 0}`, "auth_failures: 0 is out of range"},
		{"fail_open and bind_nonce in the file", nil, `{"fail_open": true, "bind_nonce": false}`, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			args := tc.flags
			if tc.json != "" {
				file := filepath.Join(t.TempDir(), "proxy.json")
				require.NoError(t, os.WriteFile(file, []byte(tc.json), 0o600))
				args = append([]string{"-config", file}, args...)
			}
			_, _, err := parseConfig(args)
			if tc.want == "" {
				require.NoError(t, err)
				return
			}
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}

func TestTrustSet(t *testing.T) {
	p := newTestProxy(t, Config{Trusted: []string{"192.0.2.0/24", "198.51.100.7", "203.0.113.9:5080"}})
	ctx := context.Background()
	require.NoError(t, p.store.AddGateway(ctx, 1, "10.1.0.1:5060", "+1", 0))
	require.NoError(t, p.store.AddGateway(ctx, 2, "[2001:db8::5]:5070", "+44", 0))
	require.NoError(t, p.store.AddGateway(ctx, 3, "10.1.0.3", "+33", 0))
	n, err := p.loadGateways(ctx)
	require.NoError(t, err)
	assert.Equal(t, 3, n)
	cases := []struct {
		src     string
		trusted bool
	}{
		{"192.0.2.77:40000", true},
		{"[::ffff:192.0.2.77]:40000", true},
		{"192.0.3.1:5060", false},
		{"198.51.100.7:1", true},
		{"203.0.113.9:5080", true},
		{"203.0.113.9:5081", false}, // IP:port is exact
		{"10.1.0.1:5060", true},     // a gateway, by its IP:port
		{"10.1.0.1:5061", false},
		{"[2001:db8::5]:5070", true},
		{"10.1.0.3:5060", true}, // no port stored: 5060
	}
	for _, tc := range cases {
		assert.Equal(t, tc.trusted, p.trust.has(netip.MustParseAddrPort(tc.src)), tc.src)
	}
}

// Fork breadth: at most max_fork branches, and one branch per next hop.
func TestForkBreadthCapped(t *testing.T) {
	p := newTestProxy(t, Config{MaxFork: 2, Trusted: []string{harnessPeer}})
	h := newHarness(t, p)
	for _, c := range []string{"sip:bob@10.0.0.5:5060", "sip:bob@10.0.0.6:5060", "sip:bob@10.0.0.7:5060"} {
		siptest.AssertReplied(t, registerAs(t, h, "bob", "bobpw", c, 600), 200)
	}
	res := h.Send(siptest.NewRequest("INVITE", "sip:bob@example.com"))
	assert.Len(t, res.Relayed(), 2, res.String())

	assert.Equal(t, []string{"sip:a@10.0.0.5:5060", "sip:c@10.0.0.5:5062", "sip:d@10.0.0.5:5060;transport=tcp"},
		oneBranchPerHop([]string{"sip:a@10.0.0.5:5060", "sip:b@10.0.0.5:5060", "sip:c@10.0.0.5:5062",
			"sip:d@10.0.0.5:5060;transport=tcp", "sip:e@10.0.0.5:5060;transport=TCP"}))
}

// An untrusted caller is challenged; authenticated, its From must be its
// user, and its P-Asserted-Identity is ours (the harness view of rows 1
// and 3; hostile_test.go attacks the real server).
func TestUntrustedCallerAuthenticated(t *testing.T) {
	p := newTestProxy(t, Config{})
	h := newHarness(t, p)
	siptest.AssertReplied(t, registerAs(t, h, "bob", "bobpw", "sip:bob@10.0.0.5:5060", 600), 200)
	const src = "192.0.2.10:5060"
	invite := func(from string, cseq uint32, hdrs ...[2]string) *sip.Request {
		opts := []siptest.MessageOption{siptest.WithSource(src), siptest.WithFrom("sip:" + from + "@example.com"),
			siptest.WithCallID("call-" + from), siptest.WithFromTag("t-" + from), siptest.WithCSeq(cseq)}
		for _, hd := range hdrs {
			opts = append(opts, siptest.WithHeader(hd[0], hd[1]))
		}
		return siptest.NewRequest("INVITE", "sip:bob@example.com", opts...)
	}
	pai := [2]string{"P-Asserted-Identity", "<sip:bob@example.com>"}
	res := h.Send(invite("alice", 1, pai))
	siptest.AssertReplied(t, res, 407)
	siptest.AssertNotRelayed(t, res)
	ch := res.LastReply().Response
	authz := func(user, pw string, nc int) [2]string {
		return [2]string{"Proxy-Authorization", strings.TrimPrefix(
			digestFor(t, ch, user, pw, "INVITE", "sip:bob@example.com", nc), "Proxy-Authorization: ")}
	}
	res = h.Send(invite("alice", 2, pai, authz("alice", "alicepw", 1)))
	require.Len(t, res.Relayed(), 1, res.String())
	out := res.Relayed()[0].Request
	require.Len(t, out.GetHeaders("P-Asserted-Identity"), 1)
	assert.Equal(t, "<sip:alice@example.com>", out.GetHeader("P-Asserted-Identity").Value())
	assert.Empty(t, out.GetHeaders("Proxy-Authorization"))

	res = h.Send(invite("bob", 2, authz("alice", "alicepw", 2)))
	siptest.AssertReplied(t, res, 403)
	siptest.AssertNotRelayed(t, res)
}
