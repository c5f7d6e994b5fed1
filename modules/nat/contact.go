package nat

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/emiago/sipgo/sip"
)

// FixContact returns the first Contact URI of req rewritten for storage
// when the UA that sent req from src is behind a NAT, so that requests
// towards it (a forked INVITE, a ping) go to the NAT's public side.
//
// The rule is the one of Behind: the UA is behind a NAT when its Contact
// host is an IP address and it, or the Contact's port (default 5060, 5061
// for sips: or transport=tls), differs from src — the address and port the
// request came from, the ones a Via received/rport would record. It needs
// no list of private ranges: a private Contact (RFC 1918, RFC 6598, a
// loopback or unique local address) that equals the source is a UA on the
// proxy's own network and needs no fix; a public Contact whose port the
// NAT changed does. A Contact naming a host name is left alone (nothing to
// compare), except a browser's "….invalid" one (RFC 7118), which is fixed.
//
// The fixed URI keeps the scheme, user, password, URI parameters and
// headers and takes src's address (IPv4-mapped IPv6 unmapped, IPv6 in
// brackets) and port. When the request came over a stream transport (top
// Via TCP, TLS, WS or WSS) and the Contact has no transport parameter, one
// is added, so that requests to the fixed contact use the same transport
// (the UA's ephemeral port listens on nothing else).
//
// Without a Contact, it returns "", false, nil; a "*" Contact returns "*",
// false, nil. A Contact that does not parse, or is not a sip:/sips: URI,
// is an error.
func FixContact(req *sip.Request, src netip.AddrPort) (fixed string, behind bool, err error) {
	h := req.GetHeader("Contact")
	if h == nil {
		return "", false, nil
	}
	var u sip.Uri
	params := sip.NewParams()
	if _, err := sip.ParseAddressValue(firstContact(h.Value()), &u, &params); err != nil {
		return "", false, fmt.Errorf("nat: contact %q: %w", h.Value(), err)
	}
	if u.Wildcard {
		return "*", false, nil
	}
	if (u.Scheme != "sip" && u.Scheme != "sips") || u.Host == "" {
		return "", false, fmt.Errorf("nat: contact %q: not a SIP URI", h.Value())
	}
	transport := ""
	if v := req.Via(); v != nil {
		transport = v.Transport
	}
	f, behind := FixURI(&u, src, transport)
	return f.String(), behind, nil
}

// FixURI is FixContact for one Contact URI u of a request that came from
// src over transport (its top Via's, "UDP", "TCP"…): a registrar fixes each
// Contact of a REGISTER with it. It returns u itself when not behind a NAT,
// else a fixed copy.
func FixURI(u *sip.Uri, src netip.AddrPort, transport string) (*sip.Uri, bool) {
	if u.Wildcard || !src.IsValid() || !differs(u.Host, uriPort(u), src) {
		return u, false
	}
	f := u.Clone()
	f.Host = src.Addr().Unmap().String()
	f.Port = int(src.Port())
	if _, ok := f.UriParams.Get("transport"); !ok && transport != "" && !strings.EqualFold(transport, "UDP") {
		if f.UriParams == nil {
			f.UriParams = sip.NewParams()
		}
		f.UriParams.Add("transport", strings.ToLower(transport))
	}
	return f, true
}

// firstContact returns the first contact of a Contact header value that
// may list several (a comma outside quotes and angle brackets).
func firstContact(v string) string {
	inQuotes, inBrackets := false, false
	for i, c := range v {
		switch {
		case c == '"':
			inQuotes = !inQuotes
		case inQuotes:
		case c == '<':
			inBrackets = true
		case c == '>':
			inBrackets = false
		case c == ',' && !inBrackets:
			return v[:i]
		}
	}
	return v
}

// uriPort is u's port, or the default of its scheme and transport.
func uriPort(u *sip.Uri) int {
	if u.Port != 0 {
		return u.Port
	}
	if t, _ := u.UriParams.Get("transport"); u.Scheme == "sips" || strings.EqualFold(t, "tls") {
		return 5061
	}
	return 5060
}

// differs reports whether host:port, host an IP address, is not src; a host
// name never differs (nothing to compare), except a ".invalid" one: a SIP
// WebSocket client (a browser) names itself so in its Contact (RFC 7118
// §5.2, RFC 6761 §6.4), a name that never resolves, so it is reachable
// only where its request came from.
func differs(host string, port int, src netip.AddrPort) bool {
	addr, err := netip.ParseAddr(trimBrackets(host))
	if err != nil {
		return strings.HasSuffix(strings.ToLower(strings.TrimSuffix(host, ".")), ".invalid")
	}
	return addr.Unmap() != src.Addr().Unmap() || port != int(src.Port())
}
