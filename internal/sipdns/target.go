package sipdns

import (
	"net/netip"
	"strings"
	"time"

	"github.com/asyncsip/asyncsip/async"
	"github.com/asyncsip/asyncsip/tm"
)

// Target is one next hop found by Resolve: an address, a port and a
// transport, in the order RFC 3263 says to try them.
type Target struct {
	// Host is the name the address was found for (the SRV target, or the
	// URI's host); the address itself for a numeric host.
	Host string
	// Addr is the IPv4 or IPv6 address.
	Addr netip.Addr
	// Port is the port to send to.
	Port uint16
	// Transport is "udp", "tcp", "tls", "ws" or "wss".
	Transport string
	// TTL is how long the answers behind this target stay valid (the
	// smallest remaining TTL along NAPTR → SRV → A); 0 for a numeric host.
	TTL time.Duration
}

// AddrPort returns the target's address and port.
func (t Target) AddrPort() netip.AddrPort { return netip.AddrPortFrom(t.Addr, t.Port) }

// URI returns the target as a next-hop URI for tm.Context.SetDestination:
// "sip:192.0.2.1:5060", with ";transport=…" for any transport but UDP.
func (t Target) URI() string {
	s := "sip:" + netip.AddrPortFrom(t.Addr, t.Port).String()
	if t.Transport != "" && t.Transport != "udp" {
		s += ";transport=" + t.Transport
	}
	return s
}

// String returns "host/addr:port/transport".
func (t Target) String() string {
	return t.Host + "/" + netip.AddrPortFrom(t.Addr, t.Port).String() + "/" + t.Transport
}

// defaultPort is the port for a transport without SRV (RFC 3263 §4.2).
func defaultPort(transport string) uint16 {
	switch transport {
	case "tls":
		return 5061
	case "ws":
		return 80
	case "wss":
		return 443
	}
	return 5060
}

// NextHop returns an op that resolves uri (RFC 3263, see Resolve) to the
// first target, for tm.Config.Lookup: the default next-hop lookup of the
// asyncsip facade. A name that does not exist or has no usable record
// gives an error matching tm.ErrUnresolvable.
func (r *Resolver) NextHop(uri string) async.Op[tm.NextHop] {
	return async.Map(r.Resolve(uri), func(ts []Target) (tm.NextHop, error) {
		if len(ts) == 0 {
			return tm.NextHop{}, ErrNoRecords
		}
		t := ts[0]
		return tm.NextHop{Addr: t.AddrPort(), Transport: strings.ToUpper(t.Transport)}, nil
	})
}
