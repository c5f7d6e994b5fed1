package tm

import (
	"testing"

	"github.com/emiago/sipgo/sip"
	"github.com/stretchr/testify/require"
)

// A request relayed lazily (lazy.go, splice.go), seen from a reply route:
// the loop's index holds the response by then, c.Req() is made from the
// Context's own bytes, and Branch.Req() parses the spliced branch as sent.
func TestLazyReqInReplyRoute(t *testing.T) {
	var ruri, callID, fromTag string
	var viaBranch, rr string
	var lazyBefore bool
	r := newRig(t, Config{}, Routes{
		Request: func(c *Context) {
			lazyBefore = c.lazy()
			_ = c.Relay()
		},
		Reply: func(c *Context) {
			req := c.Req()
			ruri, callID = req.Recipient.String(), string(*req.CallID())
			fromTag, _ = req.From().Params.Get("tag")
			br := c.Branch().Req()
			viaBranch, _ = br.Via().Params.Get("branch")
			if h := br.GetHeader("Record-Route"); h != nil {
				rr = h.Value()
			}
		},
	})
	r.recv(uacAddr, invite("lazy-reply", "z9hG4bK-lr1"))
	out := r.expect("127.0.0.1:5061 100", "127.0.0.1:5062 INVITE")
	require.True(t, lazyBefore, "the request route ran without a sipgo request")
	sentInv := out[1].msg.(*sip.Request)
	r.recvMsg(uasAddr, respond(sentInv, 180, "b1"))
	r.expect("127.0.0.1:5061 180")
	require.Equal(t, "sip:bob@127.0.0.1:5062", ruri)
	require.Equal(t, "lazy-reply", callID)
	require.Equal(t, "a1", fromTag)
	wantBranch, _ := sentInv.Via().Params.Get("branch")
	require.Equal(t, wantBranch, viaBranch, "Branch.Req() is the branch as sent")
	require.Equal(t, sentInv.GetHeader("Record-Route").Value(), rr)
	require.NotEmpty(t, rr)
}

// A CANCEL of a lazily relayed INVITE: the CANCEL for the spliced branch
// is built from its wire (clientTx.request) with the INVITE's branch.
func TestLazyCancelSplicedBranch(t *testing.T) {
	r := newRig(t, Config{}, Routes{Request: relayAll})
	r.recv(uacAddr, invite("lazy-cancel", "z9hG4bK-lc1"))
	out := r.expect("127.0.0.1:5061 100", "127.0.0.1:5062 INVITE")
	inv := out[1].msg.(*sip.Request)
	r.recvMsg(uasAddr, respond(inv, 180, "b1"))
	r.expect("127.0.0.1:5061 180")
	r.recv(uacAddr, request("CANCEL", "sip:bob@127.0.0.1:5062", "lazy-cancel", "z9hG4bK-lc1", 1, ""))
	out = r.expect("127.0.0.1:5061 200", "127.0.0.1:5062 CANCEL")
	can := out[1].msg.(*sip.Request)
	ib, _ := inv.Via().Params.Get("branch")
	cb, _ := can.Via().Params.Get("branch")
	require.Equal(t, ib, cb, "CANCEL uses the INVITE's branch")
	require.Equal(t, inv.Recipient.String(), can.Recipient.String())
}
