package tm

import (
	"net/netip"

	"github.com/emiago/sipgo/sip"
)

// send is the one place tm hands a message to a transport, on ls (the
// owner loop of what is sent): first sends, retransmissions, ACKs,
// stateless answers and forwards all come here. It counts the message
// (StatsSnapshot.Sent and SendErrors, the wire counters of Messages) and
// gives it to Config.Capture, so transports need no wrapper for either.
func (s *Server) send(ls *loopState, tp Transport, b []byte, to netip.AddrPort) error {
	s.stats.sent.Add(1)
	s.obs.outbound(ls.loop, b, to, tp)
	if err := tp.Send(ls.loop, b, to); err != nil {
		s.stats.sendErrors.Add(1)
		return err
	}
	return nil
}

// sendMsg serializes msg into ls's buffer and sends it.
func (s *Server) sendMsg(ls *loopState, tp Transport, msg sip.Message, to netip.AddrPort) error {
	return s.send(ls, tp, ls.w.bytes(msg), to)
}
