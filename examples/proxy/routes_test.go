package main

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/asyncsip/asyncsip/async"
	"github.com/asyncsip/asyncsip/modules/auth"
	"github.com/asyncsip/asyncsip/modules/rest"
	"github.com/asyncsip/asyncsip/modules/rest/resttest"
	"github.com/asyncsip/asyncsip/siptest"
)

// dbOps are the awaits that run for real against the test's SQLite file.
var dbOps = []string{"auth.lookup", "registrar.save", "location.lookup", "lcr.lookup"}

// harnessPeer is the address siptest sends from by default
// (siptest.DefaultUAC). The routing tests trust it, as a proxy trusts a
// PBX or carrier in front of it; security_test.go sends from untrusted
// addresses (and hostile_test.go attacks the real server).
const harnessPeer = "127.0.0.1:5061"

// newTestProxy returns a proxy on a fresh SQLite file with users alice and
// bob, cfg's zero fields taking the defaults of defaultConfig.
func newTestProxy(t *testing.T, cfg Config) *Proxy {
	t.Helper()
	d := defaultConfig()
	cfg.Domain = cmp.Or(cfg.Domain, "example.com")
	cfg.MaxContacts = cmp.Or(cfg.MaxContacts, d.MaxContacts)
	cfg.MaxFork = cmp.Or(cfg.MaxFork, d.MaxFork)
	cfg.AuthFailures = cmp.Or(cfg.AuthFailures, d.AuthFailures)
	cfg.AuthBan = cmp.Or(cfg.AuthBan, d.AuthBan)
	cfg.DBTimeout, cfg.RESTTimeout = 2*time.Second, time.Second
	ctx := context.Background()
	store, err := OpenStore(ctx, filepath.Join(t.TempDir(), "proxy.db"), cfg.Domain)
	require.NoError(t, err)
	t.Cleanup(func() { store.Close() })
	trust, err := newTrustSet(cfg.Trusted)
	require.NoError(t, err)
	p := &Proxy{cfg: cfg, store: store, trust: trust, log: slog.Default(),
		ch: newChallenger(cfg, []byte("test secret 0123456789"), trust, slog.Default())}
	if cfg.RESTHook != "" {
		p.rest, err = rest.NewClient(rest.Config{Timeout: time.Second})
		require.NoError(t, err)
		t.Cleanup(func() { p.rest.Close(ctx) })
	}
	require.NoError(t, store.AddUser(ctx, "alice", "alicepw"))
	require.NoError(t, store.AddUser(ctx, "bob", "bobpw"))
	return p
}

func newHarness(t *testing.T, p *Proxy, opts ...siptest.HarnessOption) *siptest.Harness {
	return siptest.NewHarness(t, p.Routes(), append([]siptest.HarnessOption{siptest.WithRealOps(dbOps...)}, opts...)...)
}

// registerAs answers the proxy's challenge with user's password.
func registerAs(t *testing.T, h *siptest.Harness, user, password, contact string, expires int) *siptest.Result {
	t.Helper()
	aor := "sip:" + user + "@example.com"
	callID := "reg-" + user + contact
	res := h.Send(siptest.NewRegister(aor, contact, expires, siptest.WithCallID(callID), siptest.WithCSeq(1)))
	siptest.AssertReplied(t, res, 401)
	ch := res.LastReply().GetHeaders("WWW-Authenticate")
	require.Len(t, ch, 2, "SHA-256 and MD5 offered")
	alg := auth.Algorithm(param(ch[0].Value(), "algorithm"))
	assert.Equal(t, auth.SHA256, alg, "SHA-256 first (RFC 8760)")
	ha1, _ := auth.HA1(alg, user, "example.com", password)
	cred := auth.Credentials{Username: user, Realm: "example.com", Nonce: param(ch[0].Value(), "nonce"),
		URI: "sip:example.com", Algorithm: alg, QOP: "auth", NC: "00000001", CNonce: "abc"}
	cred.Response, _ = auth.Response(cred, "REGISTER", ha1)
	authz := fmt.Sprintf(`Digest username="%s", realm="example.com", nonce="%s", uri="sip:example.com", response="%s", algorithm=%s, qop=auth, nc=00000001, cnonce="abc"`,
		user, cred.Nonce, cred.Response, alg)
	return h.Send(siptest.NewRegister(aor, contact, expires, siptest.WithCallID(callID), siptest.WithCSeq(2),
		siptest.WithHeader("Authorization", authz)))
}

func TestRegistrar(t *testing.T) {
	p := newTestProxy(t, Config{})
	h := newHarness(t, p)

	res := registerAs(t, h, "alice", "alicepw", "sip:alice@10.0.0.1:5060", 600)
	siptest.AssertReplied(t, res, 200)
	require.Len(t, res.Final().GetHeaders("Contact"), 1)
	assert.Contains(t, res.Final().GetHeaders("Contact")[0].Value(), "expires=600")

	res = registerAs(t, h, "alice", "alicepw", "sip:alice@10.0.0.2:5060", 300)
	siptest.AssertReplied(t, res, 200)
	assert.Len(t, res.Final().GetHeaders("Contact"), 2, "both bindings returned")

	res = registerAs(t, h, "bob", "wrong", "sip:bob@10.0.0.3:5060", 600)
	siptest.AssertReplied(t, res, 403)
	rows, err := p.store.List(context.Background(), "location")
	require.NoError(t, err)
	assert.Equal(t, 2, rows.Len(), "a refused REGISTER stores nothing")

	// Un-register one contact.
	res = registerAs(t, h, "alice", "alicepw", "sip:alice@10.0.0.2:5060", 0)
	siptest.AssertReplied(t, res, 200)
	assert.Len(t, res.Final().GetHeaders("Contact"), 1)
}

func TestRegisterBadRequests(t *testing.T) {
	cases := []struct {
		name string
		req  *sip.Request
		code int
	}{
		{"too brief", siptest.NewRegister("sip:alice@example.com", "sip:alice@10.0.0.1", 10,
			siptest.WithHeader("Authorization", `Digest username="alice", realm="example.com", nonce="n", uri="sip:example.com", response="x"`)), 423},
		{"wildcard with expiry", siptest.NewRegister("sip:alice@example.com", "*", 60,
			siptest.WithHeader("Authorization", `Digest username="alice", realm="example.com", nonce="n", uri="sip:example.com", response="x"`)), 400},
		{"someone else's AOR", siptest.NewRegister("sip:bob@example.com", "sip:bob@10.0.0.1", 600,
			siptest.WithHeader("Authorization", `Digest username="alice", realm="example.com", nonce="n", uri="sip:example.com", response="x"`)), 403},
		{"stale or forged nonce", siptest.NewRegister("sip:alice@example.com", "sip:alice@10.0.0.1", 600,
			siptest.WithHeader("Authorization", `Digest username="alice", realm="example.com", nonce="forged", uri="sip:example.com", response="x"`)), 403},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, newTestProxy(t, Config{}))
			siptest.AssertReplied(t, h.Send(tc.req), tc.code)
		})
	}
}

func TestCallForksToEveryContact(t *testing.T) {
	p := newTestProxy(t, Config{Trusted: []string{harnessPeer}})
	h := newHarness(t, p)
	siptest.AssertReplied(t, registerAs(t, h, "bob", "bobpw", "sip:bob@10.0.0.5:5060", 600), 200)
	siptest.AssertReplied(t, registerAs(t, h, "bob", "bobpw", "sip:bob@10.0.0.6:5062", 600), 200)

	res := h.Send(siptest.NewRequest("INVITE", "sip:bob@example.com"))
	require.Len(t, res.Relayed(), 2, res.String())
	siptest.AssertRelayedTo(t, res, "sip:bob@10.0.0.5:5060")
	siptest.AssertRelayedTo(t, res, "sip:bob@10.0.0.6:5062")
	res.Branch(0).Respond(180)
	res.Branch(1).Respond(200)
	siptest.AssertReplies(t, res, []int{100, 180, 200})
	assert.True(t, res.Branch(0).Cancelled(), "the other phone stops ringing")
}

func TestLeastCostRoutingWithFailover(t *testing.T) {
	p := newTestProxy(t, Config{Trusted: []string{harnessPeer}})
	ctx := context.Background()
	require.NoError(t, p.store.AddGateway(ctx, 1, "10.1.0.1:5060", "+1", 1))
	require.NoError(t, p.store.AddGateway(ctx, 2, "10.1.0.2:5060", "+1", 2))
	require.NoError(t, p.store.AddGateway(ctx, 3, "10.1.0.3:5060", "+1555", 5))
	require.NoError(t, p.store.AddGateway(ctx, 4, "10.1.0.4:5060", "+44", 0))
	h := newHarness(t, p)

	cases := []struct {
		name    string
		number  string
		answers []int    // each branch's final answer, in order
		want    []string // branch targets in order
		final   int
	}{
		{"longest prefix first", "+15551234", []int{200}, []string{"sip:+15551234@10.1.0.3:5060"}, 200},
		{"priority within a prefix, failover on 503", "+12025550100", []int{503, 200},
			[]string{"sip:+12025550100@10.1.0.1:5060", "sip:+12025550100@10.1.0.2:5060"}, 200},
		// After the last gateway fails, the best of all answers goes
		// upstream (RFC 3261 §16.7: the lowest class, 4xx before 5xx).
		{"failover on 408, then the best answer", "+12025550101", []int{408, 500},
			[]string{"sip:+12025550101@10.1.0.1:5060", "sip:+12025550101@10.1.0.2:5060"}, 408},
		{"busy is not retried", "+12025550102", []int{486}, []string{"sip:+12025550102@10.1.0.1:5060"}, 486},
		{"no gateway", "+3312345", nil, nil, 404},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			res := h.Send(siptest.NewRequest("INVITE", "sip:"+tc.number+"@example.com"))
			for i, code := range tc.answers {
				require.Greater(t, len(res.Relayed()), i, res.String())
				res.Branch(i).Respond(code)
			}
			var got []string
			for _, r := range res.Relayed() {
				got = append(got, r.Target())
			}
			assert.Equal(t, tc.want, got)
			siptest.AssertReplied(t, res, tc.final)
		})
	}
}

func TestRESTHook(t *testing.T) {
	cases := []struct {
		name     string
		failOpen bool
		answer   func(r *resttest.Rule)
		want     int
		relayed  string
	}{
		{"deny", true, func(r *resttest.Rule) { r.JSON(200, Decision{Action: "deny", Code: 603, Reason: "Fraud"}) }, 603, ""},
		{"route", true, func(r *resttest.Rule) { r.JSON(200, Decision{Action: "route", Target: "sip:+1999@10.9.9.9:5070"}) }, 0, "sip:+1999@10.9.9.9:5070"},
		{"timeout fails open to the database", true, func(r *resttest.Rule) { r.Never() }, 0, "sip:+15551234@10.1.0.1:5060"},
		{"timeout fails closed", false, func(r *resttest.Rule) { r.Never() }, 503, ""},
		{"error fails closed", false, func(r *resttest.Rule) { r.Fail(rest.ErrConnRefused) }, 503, ""},
		// A full client (rest_concurrency busy, rest_queue waiting) refuses
		// the call even with fail_open: an overload must not open the door.
		{"overload refused even when failing open", true, func(r *resttest.Rule) { r.Fail(async.ErrOverloaded) }, 503, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := newTestProxy(t, Config{RESTHook: "http://127.0.0.1:1/hook", FailOpen: tc.failOpen, Trusted: []string{harnessPeer}})
			require.NoError(t, p.store.AddGateway(context.Background(), 1, "10.1.0.1:5060", "+1", 0))
			hook := resttest.New()
			tc.answer(hook.On("GET", "http://127.0.0.1:1/hook?*"))
			h := newHarness(t, p, siptest.WithFakes(hook))
			res := h.Send(siptest.NewRequest("INVITE", "sip:+15551234@example.com"))
			require.Len(t, res.Awaits(), 1, res.String())
			assert.Equal(t, "rest.hook", res.Await(0).Name)
			h.Clock.Advance(2 * time.Second) // past the hook's 1 s bound
			if tc.relayed != "" {
				siptest.AssertRelayedTo(t, res, tc.relayed)
				return
			}
			siptest.AssertNotRelayed(t, res)
			siptest.AssertReplied(t, res, tc.want)
		})
	}
}

func TestOptionsToTheProxyAndStrayAck(t *testing.T) {
	h := newHarness(t, newTestProxy(t, Config{}))
	res := h.Send(siptest.NewRequest("OPTIONS", "sip:example.com"))
	siptest.AssertReplied(t, res, 200)
	siptest.AssertHeader(t, res.Final(), "Allow", "INVITE, ACK, CANCEL, BYE, OPTIONS, REGISTER, MESSAGE")
	res = h.Send(siptest.NewRequest("ACK", "sip:bob@example.com"))
	siptest.AssertNotRelayed(t, res)
}
