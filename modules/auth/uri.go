package auth

import (
	"net/url"
	"strings"

	"github.com/emiago/sipgo/sip"
)

// SameURI reports whether the digest-uri a and the Request-URI b name the
// same resource. SIP and SIPS URIs are compared as RFC 3261 §19.1.4 says:
// scheme and host case-insensitively, user and password exactly after
// %-unescaping, the port only when both or neither have one, a uri-parameter
// present in both must match (user, ttl, method, maddr and transport must
// also be present in both or neither; others present in only one are
// ignored), and the headers must match as sets. Other URIs (tel:, …) must be
// equal after %-unescaping, the scheme case-insensitively.
func SameURI(a, b string) bool {
	if a == b {
		return true
	}
	var ua, ub sip.Uri
	if sip.ParseUri(a, &ua) != nil || sip.ParseUri(b, &ub) != nil {
		return false
	}
	if !strings.EqualFold(ua.Scheme, ub.Scheme) || ua.Wildcard || ub.Wildcard {
		return false
	}
	if ua.Raw() != "" || ub.Raw() != "" {
		return unescape(ua.Raw()) == unescape(ub.Raw())
	}
	return unescape(ua.User) == unescape(ub.User) &&
		unescape(ua.Password) == unescape(ub.Password) &&
		strings.EqualFold(ua.Host, ub.Host) && ua.Port == ub.Port &&
		sameURIParams(ua.UriParams, ub.UriParams) && sameHeaders(ua.Headers, ub.Headers)
}

// mustMatchParams must appear in both URIs or neither (RFC 3261 §19.1.4).
var mustMatchParams = [...]string{"user", "ttl", "method", "maddr", "transport"}

func sameURIParams(a, b sip.HeaderParams) bool {
	ma, mb := paramMap(a), paramMap(b)
	for k, va := range ma {
		if vb, ok := mb[k]; ok && !strings.EqualFold(va, vb) {
			return false
		}
	}
	for _, k := range mustMatchParams {
		_, ina := ma[k]
		_, inb := mb[k]
		if ina != inb {
			return false
		}
	}
	return true
}

func sameHeaders(a, b sip.HeaderParams) bool {
	ma, mb := paramMap(a), paramMap(b)
	if len(ma) != len(mb) {
		return false
	}
	for k, va := range ma {
		if vb, ok := mb[k]; !ok || va != vb {
			return false
		}
	}
	return true
}

func paramMap(p sip.HeaderParams) map[string]string {
	m := make(map[string]string, len(p))
	for _, kv := range p {
		m[strings.ToLower(unescape(kv.K))] = unescape(kv.V)
	}
	return m
}

// unescape undoes %-escapes; a malformed escape leaves s as it is (and so
// unequal to its well-formed spelling).
func unescape(s string) string {
	if !strings.Contains(s, "%") {
		return s
	}
	u, err := url.PathUnescape(s)
	if err != nil {
		return s
	}
	return u
}
