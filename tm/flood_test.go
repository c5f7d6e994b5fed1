package tm

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Regression tests for floods: what a refused or stray request leaves
// behind must not grow with the flood (issue 11, overload).

// Over MaxTransactions, requests are refused 503 without a transaction: a
// refused transaction used to stay in the table for Timer J (32 s), so the
// table grew with the flood instead of staying at the cap.
func TestOverCapLeavesNoTransaction(t *testing.T) {
	sp := &suspender{}
	r := newRig(t, Config{MaxTransactions: 2}, Routes{Request: sp.route(nil)})
	for i := 0; i < 1000; i++ {
		r.recv(uacAddr, request("MESSAGE", "sip:bob@127.0.0.1:5062", fmt.Sprint("cap-", i), fmt.Sprint("z9hG4bK-cap", i), 1, ""))
	}
	out := r.take()
	require.Len(t, out, 998)
	for _, s := range out {
		require.Equal(t, "503", short(s.msg))
		require.NotEmpty(t, s.msg.GetHeaders("Retry-After"))
	}
	assert.Len(t, r.s.loops[0].stx, 2, "the table stays at the cap")
	assert.EqualValues(t, 998, r.s.Stats().Overload)

	// The ACK for a 503 sent without a transaction ends at the proxy.
	inv := invite("cap-inv", "z9hG4bK-capinv")
	r.recv(uacAddr, inv)
	resp := r.expect("127.0.0.1:5061 503")[0].msg
	tag, _ := resp.To().Params.Get("tag")
	ack := replaceOnce(replaceOnce(inv, "INVITE sip:", "ACK sip:"), "CSeq: 1 INVITE", "CSeq: 1 ACK")
	r.recv(uacAddr, replaceOnce(ack, "To: <sip:bob@127.0.0.1>", "To: <sip:bob@127.0.0.1>;tag="+tag))
	r.expect() // not relayed
}

// A CANCEL that matches no INVITE is answered 481 and leaves nothing.
func TestStrayCancelLeavesNothing(t *testing.T) {
	r := newRig(t, Config{}, Routes{Request: relayAll})
	for i := 0; i < 500; i++ {
		r.recv(uacAddr, request("CANCEL", "sip:bob@127.0.0.1:5062", fmt.Sprint("cx-", i), fmt.Sprint("z9hG4bK-cx", i), 1, ""))
	}
	out := r.take()
	require.Len(t, out, 500)
	assert.Equal(t, "481", short(out[0].msg))
	assert.Empty(t, r.s.loops[0].stx)
}
