package main

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/asyncsip/asyncsip/internal/testenv"
)

// contacts returns the Contact URIs of r.
func contacts(r *sip.Response) []string {
	var out []string
	for _, h := range r.GetHeaders("Contact") {
		if ch, ok := h.(*sip.ContactHeader); ok {
			out = append(out, ch.Address.String())
		}
	}
	return out
}

// With nat_fix, bob "behind a NAT" (his Contact names 10.0.0.5:5060, he
// sends from his socket on 127.0.0.5) is stored at his real source; a call
// to him reaches that socket, and his de-registration from it removes the
// binding.
func TestNATFixedContactIsCalled(t *testing.T) {
	lp := startLive(t, nil, "-nat-fix")
	bob := newSock(t, phoneIP, "bob", 486)
	r := bob.registerAs(lp, "bob", "bobpw", "sip:bob@10.0.0.5:5060;ob")
	require.Equal(t, 200, r.StatusCode, r.String())
	fixed := fmt.Sprintf("sip:bob@%s;ob", bob.hostport())
	assert.Equal(t, []string{fixed}, contacts(r))

	alice := newSock(t, phoneIP, "alice", 0)
	alice.callAs(lp, "alice", "alicepw", lp.uri("bob"), "nat-call")
	inv, _ := bob.request()
	assert.Equal(t, sip.INVITE, inv.Method)
	assert.Equal(t, fixed, inv.Recipient.String(), "the INVITE went to bob's real socket")
	assert.Equal(t, 486, alice.final("nat-call").StatusCode)

	m := msg{method: "REGISTER", ruri: "sip:127.0.0.1", to: "sip:bob@127.0.0.1", local: bob.addr(),
		from: "bob", callID: "nat-unreg", contacts: []string{"sip:bob@10.0.0.5:5060;ob"}}
	unreg := func(m msg) string {
		return strings.Replace(m.String(), "\r\nExpires: 600\r\n", "\r\nExpires: 0\r\n", 1)
	}
	bob.send(unreg(m), lp.udp)
	r = bob.final("nat-unreg")
	require.Equal(t, 401, r.StatusCode)
	m.cseq, m.branch = 2, ""
	m.headers = []string{digestFor(t, r, "bob", "bobpw", "REGISTER", "sip:127.0.0.1", 1)}
	bob.send(unreg(m), lp.udp)
	require.Equal(t, 200, bob.final("nat-unreg").StatusCode)
	assert.Zero(t, lp.bindings(t, "bob"), "the fixed binding removed")
}

// Without nat_fix (the default), the Contact is stored as registered.
func TestNATFixOffStoresContactAsIs(t *testing.T) {
	lp := startLive(t, nil)
	bob := newSock(t, phoneIP, "bob", 0)
	r := bob.registerAs(lp, "bob", "bobpw", "sip:bob@10.0.0.5:5060")
	require.Equal(t, 200, r.StatusCode, r.String())
	assert.Equal(t, []string{"sip:bob@10.0.0.5:5060"}, contacts(r))
}

// With nat_ping, bob's NATed binding gets OPTIONS keep-alives at his real
// socket (the fixed contact as Request-URI); once his socket is gone, 3
// unanswered pings remove the binding from the location table.
func TestNATPingDropsSilentBinding(t *testing.T) {
	lp := startLive(t, nil, "-nat-fix", "-nat-ping", "1s")
	bob := newSock(t, phoneIP, "bob", 486) // answers OPTIONS 200
	require.Equal(t, 200, bob.registerAs(lp, "bob", "bobpw", "sip:bob@10.0.0.5:5060").StatusCode)
	fixed := "sip:bob@" + bob.hostport()
	ping, _ := bob.request()
	assert.Equal(t, sip.OPTIONS, ping.Method)
	assert.Equal(t, fixed, ping.Recipient.String())
	require.Equal(t, 1, lp.bindings(t, "bob"), "an answered ping keeps the binding")

	require.NoError(t, bob.conn.Close()) // bob vanishes
	// The log line follows the deletion (polling the database instead
	// would race the proxy's writer: SQLITE_BUSY).
	testenv.Eventually(t, 20*time.Second, "the silent binding removed", func() bool {
		return len(lp.grep("event=unreachable", "user=bob", "removed=1")) > 0
	})
	assert.Zero(t, lp.bindings(t, "bob"))
}

// nat_ping is 0 (off) or 1s..10m.
func TestNATPingBounds(t *testing.T) {
	for _, v := range []string{"500ms", "11m", "-1s"} {
		_, _, err := parseConfig([]string{"-nat-ping", v})
		assert.ErrorContains(t, err, "nat_ping", v)
	}
	cfg, _, err := parseConfig([]string{"-nat-ping", "0"})
	require.NoError(t, err)
	assert.Zero(t, cfg.NATPing)
	assert.False(t, cfg.NATFix, "nat_fix off by default")
}
