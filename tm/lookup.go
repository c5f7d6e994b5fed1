package tm

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/emiago/sipgo/sip"

	"github.com/asyncsip/asyncsip/async"
)

// Next-hop resolution, synchronous and asynchronous.
//
// Config.Resolver is synchronous (literalResolver by default): it answers IP literals, localhost and
// whatever a cache already holds. A next hop it cannot answer (a host name)
// goes to Config.Lookup, an async op (RFC 3263: NAPTR, SRV, A/AAAA), which
// Relay awaits on the transaction's own context: the route is suspended
// while the lookup runs, so no loop ever blocks on DNS, and a CANCEL or the
// suspension bound aborts the lookup like any other op. A lookup answered
// from a cache completes synchronously and Relay goes on inline. Results are
// kept for the transaction (Context.hops), so a serial fork to the same host
// does not look it up again.

// NextHop is where a looked-up next hop sends: an address with its port,
// and the transport RFC 3263 chose ("UDP", "TCP", "TLS", "WS", "WSS"; ""
// lets tm choose).
type NextHop struct {
	// Addr is the address and port to send to.
	Addr netip.AddrPort
	// Transport is the transport to use, "" for tm's choice.
	Transport string
}

// ErrUnresolvable: a next-hop host does not exist in DNS (NXDOMAIN) or has
// no usable record. A Config.Lookup wraps it for these permanent failures,
// which a request route left at that answers 404; any other lookup error
// (timeout, server failure, overload) answers 503.
var ErrUnresolvable = errors.New("tm: next-hop host does not resolve")

// relayResolving relays to uris once every next hop that needs a lookup has
// one. It awaits the first missing lookup and, when it completes, calls
// itself again; the lookups of a parallel fork therefore run one after the
// other, each usually a cache hit after the first.
func (c *Context) relayResolving(uris []sip.Uri) error {
	if c.s.cfg.Lookup == nil {
		return c.relayTo(uris)
	}
	for i := range uris {
		key, host, ok := c.lookupNeeded(&uris[i])
		if !ok {
			continue
		}
		async.Await(c, c.s.cfg.Lookup(key), func(h NextHop, err error) {
			if err != nil {
				_ = c.relayFailed(fmt.Errorf("%w: %s: %w", ErrNoRoute, host, err))
				return
			}
			if c.hops == nil {
				c.hops = make(map[string]NextHop, 2)
			}
			c.hops[key] = h
			_ = c.relayResolving(uris)
		}, async.Name("tm.lookup "+host))
		return nil
	}
	return c.relayTo(uris)
}

// lookupNeeded reports whether the next hop of a branch to ruri needs a
// lookup (the same choice as nextHop: destination, first Route, else the
// Request-URI), and returns the URI to look up, which is also its key in
// c.hops, and its host.
func (c *Context) lookupNeeded(ruri *sip.Uri) (key, host string, ok bool) {
	u := ruri
	switch {
	case c.dst != "":
		d, err := parseTarget(c.dst)
		if err != nil {
			return "", "", false // nextHop reports it
		}
		u = &d
	case c.firstRoute() != nil:
		u = &c.firstRoute().Address
	case c.flow.IsValid() && c.flow != c.src:
		// nextHop sends on the connection a flow token named while it is
		// open: the Request-URI (often an unresolvable ".invalid" host of a
		// WebSocket client) is not looked up.
		if tp, err := c.s.transportFor(c.flow, c.flowProto); err == nil {
			if ct, ok := tp.(ConnTracker); ok && ct.HasConn(c.flow) {
				return "", "", false
			}
		}
	}
	key = hopKey(u)
	if _, done := c.hops[key]; done {
		return "", "", false
	}
	if _, err := c.s.cfg.Resolver(u.Host); err == nil {
		return "", "", false
	}
	return key, u.Host, true
}

// hopKey is the part of a next-hop URI that RFC 3263 resolution depends on,
// as a URI: scheme, host, port and transport.
func hopKey(u *sip.Uri) string {
	var b strings.Builder
	b.WriteString("sip:")
	if strings.EqualFold(u.Scheme, "sips") {
		b.Reset()
		b.WriteString("sips:")
	}
	b.WriteString(u.Host)
	if u.Port > 0 {
		b.WriteString(":" + strconv.Itoa(u.Port))
	}
	if t, ok := u.UriParams.Get("transport"); ok && t != "" {
		b.WriteString(";transport=" + strings.ToLower(t))
	}
	return b.String()
}

// lookedUp returns the looked-up next hop for u, if Relay awaited one.
func (c *Context) lookedUp(u *sip.Uri) (NextHop, bool) {
	if len(c.hops) == 0 {
		return NextHop{}, false
	}
	h, ok := c.hops[hopKey(u)]
	return h, ok
}

// literalResolver is the default resolver: IP literals and localhost only.
// It tolerates the "2001:db8:::192.0.2.1" form that RFC 3261's ABNF allows
// by mistake (RFC 5118 §4.10) as the address it means.
func literalResolver(host string) (netip.Addr, error) {
	if host == "localhost" {
		return netip.AddrFrom4([4]byte{127, 0, 0, 1}), nil
	}
	h := stripBrackets(host)
	a, err := netip.ParseAddr(h)
	if i := strings.Index(h, ":::"); err != nil && i >= 0 && strings.Count(h, ":::") == 1 && strings.Contains(h[i:], ".") {
		a, err = netip.ParseAddr(strings.Replace(h, ":::", "::", 1))
	}
	if err != nil {
		return netip.Addr{}, fmt.Errorf("%w: %q is not an IP address (set Config.Resolver for DNS)", ErrNoRoute, host)
	}
	return a, nil
}

// resolve turns host and port (0 = 5060) into an address.
func (s *Server) resolve(host string, port int) (netip.AddrPort, error) {
	a, err := s.cfg.Resolver(host)
	if err != nil {
		return netip.AddrPort{}, err
	}
	a = a.Unmap()
	if !a.IsValid() || a.IsUnspecified() || a.IsMulticast() || a == limitedBroadcast {
		// Never a next hop: a response whose next Via names the broadcast
		// address must not be sent there (RFC 4475 §3.3.10 bcast).
		return netip.AddrPort{}, fmt.Errorf("%w: %s is not a unicast address", ErrNoRoute, a)
	}
	if port <= 0 {
		port = 5060
	}
	return netip.AddrPortFrom(a, uint16(port)), nil
}

var limitedBroadcast = netip.AddrFrom4([4]byte{255, 255, 255, 255})
