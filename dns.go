package asyncsip

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	"github.com/asyncsip/asyncsip/async"
	"github.com/asyncsip/asyncsip/internal/sipdns"
	"github.com/asyncsip/asyncsip/tm"
)

// DNSConfig configures the resolver that Server uses for next-hop host
// names (Config.DNS). The zero value resolves with the nameservers of
// /etc/resolv.conf. A name that does not exist (NXDOMAIN, no address)
// answers a request left at its Relay 404; a timeout or a server failure
// answers 503.
type DNSConfig struct {
	// Disabled turns host-name resolution off: only Resolver's answers (IP
	// literals and localhost by default) are next hops, any other host
	// answers 503 (tm.ErrNoRoute).
	Disabled bool
	// CacheOnly never queries: a host resolves only from what the cache
	// holds, which the routes fill by awaiting Server.DNS().Resolve; any
	// other host answers 503 (an error matching tm.ErrNoRoute).
	CacheOnly bool
	// Servers are the recursive servers, "ip:port" ("127.0.0.1:53"), asked
	// in order; empty means the nameservers of /etc/resolv.conf (when that
	// file is unusable New logs a warning and resolution is disabled).
	Servers []string
	// Timeout bounds one query to one server (default 2 s); a resolution
	// with no answer fails after Timeout × Attempts per server.
	Timeout time.Duration
	// Attempts is how many rounds over Servers are tried (default 2).
	Attempts int
	// CacheSize bounds the cached answers (default 10000; < 0: no cache).
	CacheSize int
	// MaxTTL caps how long an answer is cached (default 1 h); NegativeTTL
	// is how long "no such name" is (default 30 s; < 0: not cached).
	MaxTTL, NegativeTTL time.Duration
	// IPv4Only skips AAAA queries. It is implied when every listener is
	// bound to an IPv4 address.
	IPv4Only bool
}

// newResolver builds the next-hop resolution of tm.Config from Config:
// the user's Resolver and Lookup win; otherwise the built-in RFC 3263
// resolver (Config.DNS) answers host names, asynchronously (Lookup) or
// from its cache only (Resolver).
func (s *Server) newResolver() (func(string) (netip.Addr, error), func(string) async.Op[tm.NextHop], error) {
	cfg := s.cfg
	user := cfg.Core.Resolver
	if cfg.Core.Lookup != nil || cfg.DNS.Disabled {
		return user, cfg.Core.Lookup, nil
	}
	d := cfg.DNS
	r, err := sipdns.NewResolver(sipdns.Config{
		Servers: d.Servers, Timeout: d.Timeout, Attempts: d.Attempts, CacheSize: d.CacheSize,
		MaxTTL: d.MaxTTL, NegativeTTL: d.NegativeTTL,
		Transports: dnsTransports(cfg.Listen), IPv4Only: d.IPv4Only || ipv4Only(cfg.Listen),
	})
	if err != nil {
		if len(d.Servers) == 0 {
			// No usable /etc/resolv.conf: serve without DNS rather than not at all.
			s.log.Warn("asyncsip: next-hop host names will not resolve (set Config.DNS.Servers)", "err", err)
			return user, nil, nil
		}
		return nil, nil, fmt.Errorf("asyncsip: dns: %w", err)
	}
	s.dns = r
	if d.CacheOnly {
		if user == nil {
			return r.Lookup, nil, nil
		}
		return func(host string) (netip.Addr, error) {
			if a, err := user(host); err == nil {
				return a, nil
			}
			return r.Lookup(host)
		}, nil, nil
	}
	return user, r.NextHop, nil
}

// dnsTransports are the transports the listeners can send on, in the
// resolver's order of preference: SRV and NAPTR records for others are
// skipped.
func dnsTransports(listen []string) []string {
	have := map[string]bool{}
	for _, l := range listen {
		network, _, _ := parseListen(l)
		have[network] = true
	}
	var out []string
	for _, tp := range []string{"udp", "tcp", "tls", "ws", "wss"} {
		if have[tp] {
			out = append(out, tp)
		}
	}
	return out
}

// ipv4Only reports whether every listener is bound to an IPv4 address (an
// AAAA answer could not be sent to).
func ipv4Only(listen []string) bool {
	for _, l := range listen {
		_, addr, _ := parseListen(l)
		ap, err := netip.ParseAddrPort(addr)
		if err != nil || !ap.Addr().Unmap().Is4() {
			return false
		}
	}
	return true
}

// DNS returns the built-in resolver of next-hop host names (a
// *dns.Resolver of modules/dns), or nil when Config.Lookup is set,
// Config.DNS.Disabled, or no DNS server is known. Routes may await its
// Resolve for every target of a name (failover), and with
// Config.DNS.CacheOnly that is what fills the cache that Relay reads. It is
// closed by Shutdown.
func (s *Server) DNS() *sipdns.Resolver { return s.dns }

// closeDNS closes the built-in resolver: its queries in progress end.
func (s *Server) closeDNS(ctx context.Context) {
	if s.dns == nil {
		return
	}
	if err := s.dns.Close(ctx); err != nil {
		s.log.Warn("asyncsip: closing the DNS resolver", "err", err)
	}
}
