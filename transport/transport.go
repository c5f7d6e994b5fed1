package transport

import (
	"net"
	"net/netip"
	"strconv"
	"strings"

	"github.com/asyncsip/asyncsip/reactor"
)

// Transport is the method set of tm.Transport, declared here so that this
// package does not import tm: a value of this interface converts to a
// tm.Transport as it is.
type Transport interface {
	// Send writes one message to `to`, on loop l. It must not block.
	Send(l *reactor.Loop, b []byte, to netip.AddrPort) error
	// Protocol is the Via transport token: "UDP", "TCP", "TLS", "WS", "WSS".
	Protocol() string
	// Advertised is the host and port put in Via and Record-Route.
	Advertised() (host string, port int)
	// LocalAddr is the bound address.
	LocalAddr() netip.AddrPort
}

// Core is what the transports hand their traffic to: in a running proxy,
// tm.Server's methods of the same names.
type Core struct {
	// Receive handles one message received from `from` over tp, on loop l;
	// data is only read during the call. The transports call it on one
	// loop per source, in the order the messages should be handled (see
	// the package comment).
	Receive func(l *reactor.Loop, data []byte, from netip.AddrPort, tp Transport)
	// ConnectionFailed reports that a connect to dst over tp failed and what
	// was queued for it was dropped. It is called from any goroutine.
	ConnectionFailed func(tp Transport, dst netip.AddrPort)
}

// Advertised is the host and port a listener bound to la puts in Via and
// Record-Route: adv ("host" or "host:port", the port replacing the bound
// one) when set, else the bound address (127.0.0.1 or ::1 when it is
// unspecified).
func Advertised(la netip.AddrPort, adv string) (string, int) {
	port := int(la.Port())
	if adv != "" {
		if h, p, err := net.SplitHostPort(adv); err == nil {
			if n, err := strconv.Atoi(p); err == nil && n > 0 && n <= 65535 {
				return strings.Trim(h, "[]"), n
			}
		}
		return strings.Trim(adv, "[]"), port
	}
	a := la.Addr()
	if a.IsUnspecified() {
		if a.Is6() && !a.Is4In6() {
			return "::1", port
		}
		return "127.0.0.1", port
	}
	return a.Unmap().String(), port // sipgo adds brackets to IPv6 hosts
}
