package tm

import (
	"testing"

	"github.com/emiago/sipgo/sip"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The branch route is a func(*Context) like every route: c.Branch() is the
// branch about to leave, whose request it edits or which it drops; the
// request route sees no current branch before or after it.
func TestBranchRouteEditsAndDrops(t *testing.T) {
	type seen struct {
		kind  RouteKind
		index int
		ruri  string
		reply error
	}
	var got []seen
	var after *Branch
	r := newRig(t, Config{}, Routes{
		Request: func(c *Context) {
			require.Nil(t, c.Branch(), "no branch before the relay")
			_ = c.Relay("sip:bob@127.0.0.1:5062", "sip:carol@127.0.0.1:5063")
			after = c.Branch()
		},
		Branch: func(c *Context) {
			b := c.Branch()
			got = append(got, seen{c.Kind(), b.Index, b.Req().Recipient.String(), c.Reply(500, "")})
			if b.Req().Recipient.User == "carol" {
				b.Drop()
				return
			}
			b.Req().AppendHeader(sip.NewHeader("X-Leg", b.Req().Recipient.User))
		},
	})
	r.recv(uacAddr, invite("br-1", "z9hG4bK-br1"))
	out := r.expect("127.0.0.1:5061 100", "127.0.0.1:5062 INVITE")
	assert.Equal(t, "bob", out[1].msg.(*sip.Request).GetHeader("X-Leg").Value(), "the branch route's edit went out")
	require.Len(t, got, 2)
	assert.Equal(t, RouteBranch, got[0].kind)
	assert.Equal(t, "sip:bob@127.0.0.1:5062", got[0].ruri)
	assert.Equal(t, "sip:carol@127.0.0.1:5063", got[1].ruri)
	assert.ErrorIs(t, got[0].reply, ErrWrongRoute, "a branch route cannot reply")
	assert.Nil(t, after, "no current branch once the branch route is over")
	assert.Len(t, r.s.loops[0].ctx, 1, "one client transaction: the dropped branch never started")
}

// A branch route that drops every branch leaves nothing to send: the
// request is answered 500, as for any unusable relay.
func TestBranchRouteDropsAll(t *testing.T) {
	r := newRig(t, Config{}, Routes{
		Request: relayAll,
		Branch:  func(c *Context) { c.Branch().Drop() },
	})
	r.recv(uacAddr, invite("br-2", "z9hG4bK-br2"))
	r.expect("127.0.0.1:5061 100", "127.0.0.1:5061 500")
}
