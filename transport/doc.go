// Package transport carries SIP messages between the network and the
// transaction layer: UDP sockets, TCP, TLS and WebSocket (RFC 7118)
// connections, their limits and counters.
//
// Every transport here implements tm.Transport (Send, Protocol, Advertised,
// LocalAddr) without importing tm: what it receives goes to the Core's
// callbacks, which the facade (package asyncsip) points at tm.Server.
//
// Ordering is this package's business. The core handles the messages passed
// to Core.Receive on one loop in the order of the calls, so each transport
// calls it in the order its messages should be handled:
//
//   - UDP: on the loop that read the datagram, as it is read (reactor.ListenUDP).
//   - Streams: a reader goroutine per connection frames whole messages and
//     posts one task per message to the connection's loop, in the order read;
//     a connection's messages therefore reach the core in order (an ACK is
//     never overtaken by the BYE behind it).
//
// Wiring, as the facade does it:
//
//	core := transport.Core{Receive: ..., ConnectionFailed: ...}
//	udp, err := transport.ListenUDP(group, reactor.UDPConfig{Addr: "127.0.0.1:5060"}, "", core)
//	hub := transport.NewHub(group, core, transport.StreamConfig{}, 65507, logger)
//	tcp, err := hub.Listen("TCP", "127.0.0.1:5060", "")
//	tcp.Serve()
//	...
//	hub.Close(); udp.Close()
package transport
