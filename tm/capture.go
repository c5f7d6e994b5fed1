package tm

import (
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/asyncsip/asyncsip/async"
	"github.com/asyncsip/asyncsip/reactor"
)

// This file is the observation seam of the transaction layer: the capture
// hook, the wire counters of messages by method and status class, and the
// async.Observer that every Await on a Context reports to. Every message in
// passes here from Receive (observeIn) and every message out from
// Server.send (send.go), the one place tm hands bytes to a transport.

// CaptureDirection says whether a captured message was received or sent.
type CaptureDirection uint8

// Capture directions.
const (
	CaptureIn  CaptureDirection = iota + 1 // received from Remote
	CaptureOut                             // sent to Remote
)

func (d CaptureDirection) String() string {
	switch d {
	case CaptureIn:
		return "in"
	case CaptureOut:
		return "out"
	}
	return "unknown"
}

// CaptureEvent is one message seen on the wire by the server, for
// Config.Capture: every datagram received (before parsing, so malformed
// ones too; keep-alives excepted) and every message sent, retransmissions
// included.
type CaptureEvent struct {
	// Dir is CaptureIn or CaptureOut.
	Dir CaptureDirection
	// Local is the address of our socket; Remote is the peer's.
	Local, Remote netip.AddrPort
	// Time is the wall-clock time the message was received or handed to
	// the transport.
	Time time.Time
	// Protocol is the transport token: "UDP", "TCP", "TLS", "WS".
	Protocol string
	// Loop is the ID of the loop the message was handled on.
	Loop int
	// Data is the message as on the wire. It is only valid during the
	// call: copy what you keep.
	Data []byte
}

// numMethods is the number of method slots in the wire counters: the
// methods of methodNames plus "other".
const numMethods = 15

// methodNames are the request methods counted by name (RFC 3261 and its
// extensions); anything else counts as "other".
var methodNames = [numMethods]string{
	"INVITE", "ACK", "BYE", "CANCEL", "REGISTER", "OPTIONS", "SUBSCRIBE",
	"NOTIFY", "PUBLISH", "INFO", "PRACK", "UPDATE", "MESSAGE", "REFER", "other",
}

// wireCounts are one loop's message counters: written by that loop only,
// read by anyone (atomics, no lock). Each loop has its own block so loops
// never share a cache line.
type wireCounts struct {
	req  [2][numMethods]atomic.Uint64 // [in, out][method]
	resp [2][6]atomic.Uint64          // [in, out][1xx..6xx]
	_    [64]byte
}

// observe is the Server's observation state, set up once in NewServer.
type observe struct {
	capture func(CaptureEvent)
	counts  []*wireCounts // by loop ID
}

func (o *observe) init(loops int, capture func(CaptureEvent)) {
	o.capture = capture
	o.counts = make([]*wireCounts, loops)
	for i := range o.counts {
		o.counts[i] = new(wireCounts)
	}
}

// inbound counts and captures a message received on l over tp (not a
// keep-alive).
func (o *observe) inbound(l *reactor.Loop, data []byte, from netip.AddrPort, tp Transport) {
	if len(data) == 0 || data[0] == '\r' || data[0] == '\n' {
		return // keep-alive
	}
	o.count(l, 0, data)
	if o.capture != nil {
		o.emit(CaptureIn, l, tp, from, data)
	}
}

// outbound counts and captures a message about to be sent on l over tp.
func (o *observe) outbound(l *reactor.Loop, b []byte, to netip.AddrPort, tp Transport) {
	o.count(l, 1, b)
	if o.capture != nil {
		o.emit(CaptureOut, l, tp, to, b)
	}
}

// count adds one message to loop l's counters; dir is 0 (in) or 1 (out).
func (o *observe) count(l *reactor.Loop, dir int, b []byte) {
	id := l.ID()
	if id < 0 || id >= len(o.counts) {
		return
	}
	wc := o.counts[id]
	if class := statusClass(b); class > 0 {
		wc.resp[dir][class-1].Add(1)
		return
	}
	wc.req[dir][methodIndex(b)].Add(1)
}

func (o *observe) emit(dir CaptureDirection, l *reactor.Loop, tp Transport, remote netip.AddrPort, b []byte) {
	o.capture(CaptureEvent{
		Dir: dir, Local: tp.LocalAddr(), Remote: remote, Time: time.Now(),
		Protocol: tp.Protocol(), Loop: l.ID(), Data: b,
	})
}

// statusClass returns 1..6 for a response's start line, 0 for a request.
func statusClass(b []byte) int {
	if len(b) > 8 && string(b[:8]) == "SIP/2.0 " && b[8] >= '1' && b[8] <= '6' {
		return int(b[8] - '0')
	}
	return 0
}

// methodIndex returns the slot of the request method that starts b.
func methodIndex(b []byte) int {
	i := 0
	for i < len(b) && i < 10 && b[i] != ' ' {
		i++
	}
	switch string(b[:i]) { // compiled without allocating
	case "INVITE":
		return 0
	case "ACK":
		return 1
	case "BYE":
		return 2
	case "CANCEL":
		return 3
	case "REGISTER":
		return 4
	case "OPTIONS":
		return 5
	case "SUBSCRIBE":
		return 6
	case "NOTIFY":
		return 7
	case "PUBLISH":
		return 8
	case "INFO":
		return 9
	case "PRACK":
		return 10
	case "UPDATE":
		return 11
	case "MESSAGE":
		return 12
	case "REFER":
		return 13
	}
	return numMethods - 1
}

// MessageStats counts the messages on the wire since the server started,
// retransmissions included. Received messages are counted before parsing:
// a malformed request counts under its first token ("other").
type MessageStats struct {
	// RequestsIn and RequestsOut count requests by method; methods outside
	// the RFC 3261 set and its common extensions count as "other".
	RequestsIn, RequestsOut map[string]uint64
	// ResponsesIn and ResponsesOut count responses by class: [0] is 1xx,
	// [5] is 6xx.
	ResponsesIn, ResponsesOut [6]uint64
}

// Messages returns the wire counters summed over the loops. It is safe to
// call from any goroutine.
func (s *Server) Messages() MessageStats {
	m := MessageStats{
		RequestsIn:  make(map[string]uint64, numMethods),
		RequestsOut: make(map[string]uint64, numMethods),
	}
	for _, wc := range s.obs.counts {
		for i, name := range methodNames {
			m.RequestsIn[name] += wc.req[0][i].Load()
			m.RequestsOut[name] += wc.req[1][i].Load()
		}
		for i := range m.ResponsesIn {
			m.ResponsesIn[i] += wc.resp[0][i].Load()
			m.ResponsesOut[i] += wc.resp[1][i].Load()
		}
	}
	return m
}

// Observer returns the server's async observer (Config.Observer): it makes
// Context an async.ObservedSuspender, so every Await made on it is reported
// (latency and errors by op name) without an async.Observe option.
func (c *Context) Observer() async.Observer { return c.s.cfg.Observer }
