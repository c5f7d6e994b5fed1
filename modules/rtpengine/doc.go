// Package rtpengine is an asynchronous client of rtpengine's ng control
// protocol, and the route helpers that put a proxy's calls' media through
// rtpengine.
//
// A Client sends offer, answer, delete, query and ping commands (and any
// other with Do) as async ops. Each loop that runs a command opens its own
// UDP socket and watches it: no goroutine per command and none per client,
// the reply is read and matched by its cookie on the loop that sent it.
// Commands are retransmitted with back-off and bounded by a total timeout.
// Several instances share new calls by weight; an instance that does not
// answer is marked down and an offer moves on to the next one. All commands
// of a call go to the instance that took its offer (call affinity, shared by
// all loops, bounded, with expiry); after a failover the call stays where it
// moved:
//
//	rtp, _ := rtpengine.New(rtpengine.Config{Instances: []rtpengine.Instance{{Addr: "udp:127.0.0.1:2223"}}})
//	routes := tm.Routes{
//		Request: func(c *tm.Context) {
//			switch c.Method() {
//			case sip.INVITE:
//				rtpengine.Offer(c, rtp, &rtpengine.Flags{ReplaceOrigin: true}, func(err error) {
//					if err != nil {
//						_ = c.Reply(503, "Media relay unavailable")
//						return
//					}
//					_ = c.Relay()
//				})
//			case sip.BYE:
//				rtpengine.Delete(c, rtp, nil, func(error) { _ = c.Relay() })
//			default:
//				_ = c.Relay()
//			}
//		},
//		Reply: func(c *tm.Context) {
//			if c.Resp.StatusCode == 183 || c.Resp.StatusCode == 200 {
//				rtpengine.Answer(c, rtp, nil, func(error) {}) // the response goes on after
//			}
//		},
//		Failure: func(c *tm.Context) { // rejected, or cancelled (tm answers the CANCEL itself)
//			rtpengine.Delete(c, rtp, nil, func(error) {})
//		},
//	}
//
// Flags types the options users need (ICE, DTLS, transport-protocol
// conversion between RTP/AVP and RTP/SAVPF, replace-origin,
// replace-session-connection, direction, record-call, SDES, codec strip /
// offer / transcode); Extra passes any other key. rtpengine's refusals are
// *Error values carrying its error-reason. Stats, Observer and Collector
// give per-instance requests, outcomes, retransmissions, failovers and
// latency.
//
// Package rtpenginetest has a fake for siptest route tests and an
// in-process fake ng server.
package rtpengine
