// Package rtpenginetest tests code that uses modules/rtpengine without a
// real rtpengine.
//
// Fake answers the rtpengine ops that routes await under siptest, as a
// siptest.Fake: an offer or answer gets the SDP rewritten to the fake's
// media address and ports, a delete forgets the call, a query reports it;
// every command is recorded, and failures are scripted per command:
//
//	rtp := rtpenginetest.NewFake()
//	h := siptest.NewHarness(t, routes, siptest.WithFakes(rtp))
//	res := h.Send(siptest.NewInvite("sip:bob@example.com", siptest.WithSDP(sdp)))
//	// rtp.Commands()[0].Name == "offer"; the relayed INVITE carries rtp's SDP
//
// Server is an in-process ng server on 127.0.0.1 (UDP) for tests of the
// client itself: the same behaviour as Fake on the wire, plus silence
// (Drop), delays and refusals, to test retransmission, timeouts and
// failover.
package rtpenginetest
