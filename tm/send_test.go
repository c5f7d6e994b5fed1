package tm

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

// Every message tm hands a transport goes through Server.send: Sent is the
// wire counters' total, retransmissions and ACKs included (before, Sent
// skipped timer retransmissions and a re-sent ACK, and SendErrors missed a
// failed retransmission), and Capture sees each one.
func TestSendCountsEveryMessage(t *testing.T) {
	var evs []captured
	r := newRig(t, Config{Capture: captureInto(&evs)}, Routes{Request: relayAll})
	r.recv(uacAddr, invite("send-1", "z9hG4bK-send1"))
	out := r.expect("127.0.0.1:5061 100", "127.0.0.1:5062 INVITE")
	r.advance(500 * time.Millisecond) // Timer A
	r.expect("127.0.0.1:5062 INVITE")
	r.tp.fail = true
	r.advance(time.Second) // Timer A again, refused by the transport
	r.tp.fail = false
	r.expect()
	busy := respond(out[1].msg, 486, "b1").String()
	r.recv(uasAddr, busy)
	r.expect("127.0.0.1:5062 ACK", "127.0.0.1:5061 486")
	r.recv(uasAddr, busy) // the final again: the ACK again
	r.expect("127.0.0.1:5062 ACK")

	st := r.s.Stats()
	m := r.s.Messages()
	var wire uint64
	for _, n := range m.RequestsOut {
		wire += n
	}
	for _, n := range m.ResponsesOut {
		wire += n
	}
	assert.EqualValues(t, 7, st.Sent, "100, INVITE ×3, ACK, 486, ACK")
	assert.Equal(t, wire, st.Sent, "Sent and the wire counters count the same messages")
	assert.EqualValues(t, 1, st.SendErrors, "the refused retransmission")
	out2 := 0
	for _, e := range evs {
		if e.ev.Dir == CaptureOut {
			out2++
		}
	}
	assert.Equal(t, 7, out2, "Capture sees every message sent")
}
