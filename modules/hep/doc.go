// Package hep sends the SIP messages an asyncsip server receives and sends
// to a HEP collector (Homer's heplify-server, or any HEPv3 receiver), as
// Kamailio's siptrace and OpenSIPS's proto_hep do.
//
// The Exporter's Capture method is a tm capture hook. It runs on the loops:
// it encodes each message into a HEPv3 packet (addresses, ports, time,
// protocol type SIP, agent ID, optional password and Call-ID correlation)
// and queues it without blocking; a single goroutine writes the queue to a
// UDP socket. When the queue is full, captures are dropped and counted.
//
//	hx, err := hep.New(hep.Config{Collector: "10.0.0.5:9060", AgentID: 2001})
//	srv, err := asyncsip.New(asyncsip.Config{Core: tm.Config{Capture: hx.Capture}})
//	...
//	srv.Shutdown(ctx)
//	hx.Close()
package hep
