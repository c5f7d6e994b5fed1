package sipdns

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"
	mdns "github.com/miekg/dns"
)

// sipURI is what resolution needs from a SIP URI.
type sipURI struct {
	sips      bool
	host      string // without brackets
	port      uint16 // 0: none
	transport string // "" or lower case, validated
}

// transports maps our transport names to their NAPTR service and SRV
// prefix (RFC 3263 §4.1, RFC 7118 §11 for WebSocket).
var transports = map[string]struct{ naptr, srv string }{
	"udp": {"SIP+D2U", "_sip._udp."},
	"tcp": {"SIP+D2T", "_sip._tcp."},
	"tls": {"SIPS+D2T", "_sips._tcp."},
	"ws":  {"SIP+D2W", "_sip._ws."},
	"wss": {"SIPS+D2W", "_sips._ws."},
}

// secure reports whether a transport may carry a SIPS URI.
func secure(transport string) bool { return transport == "tls" || transport == "wss" }

// parseSIPURI parses "sip:…", "sips:…" or a bare "host[:port]".
func parseSIPURI(s string) (sipURI, error) {
	var u sip.Uri
	in := s
	if !strings.HasPrefix(strings.ToLower(s), "sip:") && !strings.HasPrefix(strings.ToLower(s), "sips:") {
		in = "sip:" + s
	}
	if err := sip.ParseUri(in, &u); err != nil {
		return sipURI{}, fmt.Errorf("%w: %q: %v", ErrBadURI, s, err)
	}
	host := u.Host
	if maddr, ok := u.UriParams.Get("maddr"); ok && maddr != "" {
		host = maddr // RFC 3263 §4: maddr, when present, is the target
	}
	r := sipURI{sips: strings.EqualFold(u.Scheme, "sips"), host: strings.TrimSuffix(strings.Trim(host, "[]"), ".")}
	if r.host == "" {
		return sipURI{}, fmt.Errorf("%w: %q has no host", ErrBadURI, s)
	}
	if u.Port < 0 || u.Port > 65535 {
		return sipURI{}, fmt.Errorf("%w: %q: port %d", ErrBadURI, s, u.Port)
	}
	r.port = uint16(u.Port)
	if tp, ok := u.UriParams.Get("transport"); ok {
		r.transport = strings.ToLower(tp)
		if r.sips && r.transport == "tcp" {
			r.transport = "tls" // sips:…;transport=tcp means TLS (RFC 3261 §26.2.2)
		}
		if r.sips && r.transport == "ws" {
			r.transport = "wss"
		}
		if _, ok := transports[r.transport]; !ok {
			return sipURI{}, fmt.Errorf("%w: %q: transport %q not supported", ErrBadURI, s, tp)
		}
		if r.sips && !secure(r.transport) {
			return sipURI{}, fmt.Errorf("%w: %q: a SIPS URI over %s", ErrBadURI, s, r.transport)
		}
	}
	return r, nil
}

// querier answers one question: from the cache only (the synchronous pass)
// or from the cache and then the servers. ttl is what is left of the
// answer's validity.
type querier interface {
	query(ctx context.Context, name string, qtype uint16) (rrs []mdns.RR, ttl time.Duration, err error)
}

// errMiss stops the synchronous pass: an answer is not in the cache.
var errMiss = errors.New("dns: cache miss")

// fatal reports errors that end a resolution at once instead of making it
// fall back to the next step.
func fatal(err error) bool {
	return errors.Is(err, errMiss) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, ErrClosed)
}

// negative reports answers that make RFC 3263 fall back to the next step.
func negative(err error) bool { return errors.Is(err, ErrNoRecords) || errors.Is(err, ErrNXDomain) }

// resolution is one run of RFC 3263 §4 for one URI.
type resolution struct {
	r *Resolver
	q querier
}

func (rs resolution) run(ctx context.Context, u sipURI) ([]Target, error) {
	if a, err := netip.ParseAddr(u.host); err == nil { // numeric host: as is (§4.1, §4.2)
		tp := rs.defaultTransport(u)
		port := u.port
		if port == 0 {
			port = defaultPort(tp)
		}
		return []Target{{Host: u.host, Addr: a.Unmap(), Port: port, Transport: tp}}, nil
	}
	if u.port != 0 { // explicit port: A/AAAA only
		return rs.hostTargets(ctx, u.host, u.port, rs.defaultTransport(u), -1)
	}
	if u.transport != "" { // explicit transport: its SRV, then A/AAAA
		ts, found, err := rs.srvTargets(ctx, u.host, u.transport)
		if found || (err != nil && !negative(err)) {
			return ts, err
		}
		return rs.hostTargets(ctx, u.host, defaultPort(u.transport), u.transport, -1)
	}
	ts, found, err := rs.naptrTargets(ctx, u)
	if found || (err != nil && !negative(err)) {
		return ts, err
	}
	var errs []error
	for _, tp := range rs.r.transports {
		if u.sips && !secure(tp) {
			continue
		}
		ts1, found1, err := rs.srvTargets(ctx, u.host, tp)
		if err != nil && (fatal(err) || errors.Is(err, ErrTimeout)) {
			return nil, err // a server that timed out would time out again
		}
		if found1 {
			found = true
			ts = append(ts, ts1...)
		}
		if err != nil {
			errs = append(errs, err)
		}
	}
	if found {
		if len(ts) == 0 {
			return nil, errors.Join(errs...)
		}
		return ts, nil
	}
	if len(errs) > 0 && !negative(errs[0]) {
		return nil, errs[0] // the server failed or timed out: A/AAAA will too
	}
	tp := rs.defaultTransport(u)
	return rs.hostTargets(ctx, u.host, defaultPort(tp), tp, -1)
}

// defaultTransport is the URI's transport, else UDP (TLS for SIPS).
func (rs resolution) defaultTransport(u sipURI) string {
	if u.transport != "" {
		return u.transport
	}
	if u.sips {
		return "tls"
	}
	return "udp"
}

// naptrTargets follows the usable NAPTR records of the URI's host in
// order/preference order. found is false when there is none to follow.
func (rs resolution) naptrTargets(ctx context.Context, u sipURI) (ts []Target, found bool, err error) {
	rrs, ttl, err := rs.q.query(ctx, u.host, mdns.TypeNAPTR)
	if err != nil {
		return nil, false, err
	}
	var ns []*mdns.NAPTR
	for _, rr := range rrs {
		n, ok := rr.(*mdns.NAPTR)
		if !ok || !strings.EqualFold(n.Flags, "s") || rs.r.naptrTransport(n.Service) == "" {
			continue
		}
		if u.sips && !secure(rs.r.naptrTransport(n.Service)) {
			continue
		}
		ns = append(ns, n)
	}
	slices.SortStableFunc(ns, func(a, b *mdns.NAPTR) int {
		return cmp.Or(cmp.Compare(a.Order, b.Order), cmp.Compare(a.Preference, b.Preference))
	})
	var errs []error
	for _, n := range ns {
		tp := rs.r.naptrTransport(n.Service)
		ts1, _, err := rs.srvName(ctx, strings.TrimSuffix(n.Replacement, "."), tp, ttl)
		if err != nil && fatal(err) {
			return nil, false, err
		}
		if err != nil {
			errs = append(errs, err)
		}
		ts = append(ts, ts1...)
	}
	if len(ts) == 0 {
		if len(errs) > 0 {
			return nil, len(ns) > 0, errors.Join(errs...)
		}
		return nil, false, ErrNoRecords
	}
	return ts, true, nil
}

// srvTargets resolves the SRV records of transport at host.
func (rs resolution) srvTargets(ctx context.Context, host, transport string) ([]Target, bool, error) {
	return rs.srvName(ctx, transports[transport].srv+host, transport, -1)
}

// srvName resolves the SRV records at name and the addresses of their
// targets, in RFC 2782 order. found is true when SRV records exist (even
// if none resolves, or they say "." — no service here). ttl < 0: none yet.
func (rs resolution) srvName(ctx context.Context, name, transport string, ttl time.Duration) ([]Target, bool, error) {
	rrs, ttl1, err := rs.q.query(ctx, name, mdns.TypeSRV)
	if err != nil {
		return nil, false, err
	}
	ttl = minTTL(ttl, ttl1)
	var srvs []*mdns.SRV
	for _, rr := range rrs {
		if s, ok := rr.(*mdns.SRV); ok && s.Target != "." {
			srvs = append(srvs, s)
		}
	}
	if len(srvs) == 0 {
		return nil, true, fmt.Errorf("%w: %s: SRV says no service", ErrNoRecords, name)
	}
	var ts []Target
	var errs []error
	for _, s := range orderSRV(srvs, rs.r.intN) {
		ts1, err := rs.hostTargets(ctx, strings.TrimSuffix(s.Target, "."), s.Port, transport, ttl)
		if err != nil {
			if fatal(err) {
				return nil, true, err
			}
			errs = append(errs, err)
			continue
		}
		ts = append(ts, ts1...)
	}
	if len(ts) == 0 {
		return nil, true, fmt.Errorf("no SRV target of %s has an address: %w", name, errors.Join(errs...))
	}
	return ts, true, nil
}

// hostTargets returns a target per A (then AAAA) address of host.
func (rs resolution) hostTargets(ctx context.Context, host string, port uint16, transport string, ttl time.Duration) ([]Target, error) {
	qtypes := []uint16{mdns.TypeA, mdns.TypeAAAA}
	if rs.r.cfg.IPv4Only {
		qtypes = qtypes[:1]
	}
	var ts []Target
	var first error
	for _, qt := range qtypes {
		rrs, ttl1, err := rs.q.query(ctx, host, qt)
		if err != nil {
			if fatal(err) {
				return nil, err
			}
			if first == nil {
				first = err
			}
			if errors.Is(err, ErrNXDomain) || errors.Is(err, ErrTimeout) {
				break // no AAAA either; or the server would time out again
			}
			continue
		}
		t := minTTL(ttl, ttl1)
		for _, rr := range rrs {
			var a netip.Addr
			switch v := rr.(type) {
			case *mdns.A:
				a, _ = netip.AddrFromSlice(v.A.To4())
			case *mdns.AAAA:
				a, _ = netip.AddrFromSlice(v.AAAA.To16())
			}
			if a.IsValid() {
				ts = append(ts, Target{Host: host, Addr: a.Unmap(), Port: port, Transport: transport, TTL: t})
			}
		}
	}
	if len(ts) == 0 {
		if first == nil {
			first = fmt.Errorf("%w: %s has no address", ErrNoRecords, host)
		}
		return nil, first
	}
	return ts, nil
}

// minTTL is the smaller TTL; a < 0 means "none yet".
func minTTL(a, b time.Duration) time.Duration {
	if a < 0 || b < a {
		return b
	}
	return a
}

// orderSRV orders records, in place, by priority and, within a priority,
// by RFC 2782 weighted random selection: each pick chooses a record with
// probability weight/sum of the weights left (zero weights only when
// nothing else is left, or with a tiny chance). intN(n) returns a random
// int in [0, n).
func orderSRV(srvs []*mdns.SRV, intN func(int) int) []*mdns.SRV {
	slices.SortStableFunc(srvs, func(a, b *mdns.SRV) int { // zero weights first (RFC 2782)
		return cmp.Or(cmp.Compare(a.Priority, b.Priority), cmp.Compare(min(a.Weight, 1), min(b.Weight, 1)))
	})
	for i := 0; i < len(srvs); {
		j := i
		for j < len(srvs) && srvs[j].Priority == srvs[i].Priority {
			j++
		}
		// srvs[i:k] is ordered; pick srvs[k] from srvs[k:j], keeping the
		// rest in their order (zero weights stay first).
		for k := i; k < j; k++ {
			sum := 0
			for _, s := range srvs[k:j] {
				sum += int(s.Weight)
			}
			pick := k
			if sum == 0 {
				pick = k + intN(j-k)
			} else {
				r, run := intN(sum+1), 0
				for m := k; m < j; m++ {
					run += int(srvs[m].Weight)
					if run >= r {
						pick = m
						break
					}
				}
			}
			p := srvs[pick]
			copy(srvs[k+1:pick+1], srvs[k:pick])
			srvs[k] = p
		}
		i = j
	}
	return srvs
}
