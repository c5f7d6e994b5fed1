package tm

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"
)

// orderRig is a two-loop server whose request route records the CSeq of
// each request it sees, and a Call-ID owned by loop 1.
func orderRig(t *testing.T) (*rig, string, *[]uint32) {
	var seen []uint32
	r := newRigN(t, 2, Config{}, Routes{Request: func(c *Context) {
		seen = append(seen, c.Req().CSeq().SeqNo)
		_ = c.Reply(200, "")
	}})
	for i := 0; ; i++ {
		id := fmt.Sprintf("order-%d", i)
		if r.s.owner(id) == r.s.loops[1] {
			return r, id, &seen
		}
	}
}

func orderMsg(callID string, cseq int) []byte {
	return []byte(request("OPTIONS", "sip:bob@127.0.0.1:5062", callID, fmt.Sprintf("z9hG4bK-o%d", cseq), cseq, ""))
}

// Receive handles the messages of one loop in call order, behind those
// another loop handed over to it earlier: a datagram read by loop 1 does
// not overtake the one of the same call that loop 0 read just before and
// posted to loop 1 (one UDP socket is read by every loop).
func TestReceiveDatagramQueuesBehindHandoff(t *testing.T) {
	r, id, seen := orderRig(t)
	l0, l1 := r.g.Loop(0), r.g.Loop(1)
	r.s.Receive(l0, orderMsg(id, 1), uacAddr, r.tp) // owned by loop 1: handed over
	r.s.Receive(l1, orderMsg(id, 2), uacAddr, r.tp) // read by loop 1 itself, before it ran the handoff
	require.Empty(t, *seen, "the second message waits behind the first")
	r.run()
	require.Equal(t, []uint32{1, 2}, *seen)
	require.Zero(t, r.s.loops[1].queued.Load(), "nothing left counted as queued")
}

// A connection's messages are posted to its loop one task each; when they
// have to queue behind a handoff, they stay in order among themselves: the
// first one queued again makes the next one queue too.
func TestReceiveConnectionTasksKeepOrder(t *testing.T) {
	r, id, seen := orderRig(t)
	l0, l1 := r.g.Loop(0), r.g.Loop(1)
	other := ""
	for i := 0; other == ""; i++ {
		if c := fmt.Sprintf("other-%d", i); r.s.owner(c) == r.s.loops[1] {
			other = c
		}
	}
	for cseq := 1; cseq <= 3; cseq++ {
		msg := orderMsg(id, cseq)
		require.NoError(t, l1.Post(func() { r.s.Receive(l1, msg, uacAddr, r.tp) }))
	}
	r.s.Receive(l0, orderMsg(other, 9), uacAddr, r.tp) // a handoff posted behind them
	r.run()                                            // the three tasks find it pending: they queue behind it, in order
	require.Equal(t, []uint32{9, 1, 2, 3}, *seen)
}

// With nothing handed over, a message owned by the loop that reads it is
// handled at once, with no copy or extra task.
func TestReceiveOwnedRunsAtOnce(t *testing.T) {
	r, id, seen := orderRig(t)
	r.s.Receive(r.g.Loop(1), orderMsg(id, 1), uacAddr, r.tp)
	require.Equal(t, []uint32{1}, *seen)
	require.Zero(t, r.g.Loop(1).Pending())
}
