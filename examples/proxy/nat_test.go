package main

import (
	"fmt"
	"strings"
	"testing"

	"github.com/emiago/sipgo/sip"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
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
