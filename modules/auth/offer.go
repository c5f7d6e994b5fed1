package auth

import (
	"fmt"
	"strings"
)

// Offer is a parsed WWW-Authenticate or Proxy-Authenticate digest
// challenge: what a client needs to answer it.
type Offer struct {
	Realm, Nonce, Opaque string
	Algorithm            Algorithm
	// QOP lists the qop values offered (lower case); empty for RFC 2069.
	QOP []string
	// Stale reports stale=true: the nonce, not the password, was wrong.
	Stale bool
}

// ParseChallenge parses a `Digest realm="…", nonce="…", …` challenge
// value. It needs realm and nonce and refuses an algorithm this package
// cannot compute.
func ParseChallenge(value string) (Offer, error) {
	var o Offer
	err := parseDigest(value, func(key, val string) {
		switch key {
		case "realm":
			o.Realm = val
		case "nonce":
			o.Nonce = val
		case "opaque":
			o.Opaque = val
		case "algorithm":
			o.Algorithm = Algorithm(strings.ToUpper(val))
		case "qop":
			for q := range strings.SplitSeq(val, ",") {
				if q = strings.ToLower(strings.TrimSpace(q)); q != "" {
					o.QOP = append(o.QOP, q)
				}
			}
		case "stale":
			o.Stale = strings.EqualFold(val, "true")
		}
	})
	if err != nil {
		return o, err
	}
	if o.Realm == "" || o.Nonce == "" {
		return o, fmt.Errorf("%w: realm and nonce are required", ErrMalformed)
	}
	if o.Algorithm == "" {
		o.Algorithm = MD5
	}
	if _, err := hasher(o.Algorithm); err != nil {
		return o, err
	}
	return o, nil
}

// Answer computes the credentials that answer o for a request (method,
// uri) as user with password, using qop=auth when offered with nonce-count
// nc and client nonce cnonce (the RFC 2069 form otherwise).
func (o Offer) Answer(user, password, method, uri string, nc uint32, cnonce string) (Credentials, error) {
	ha1, err := HA1(o.Algorithm, user, o.Realm, password)
	if err != nil {
		return Credentials{}, err
	}
	c := Credentials{Username: user, Realm: o.Realm, Nonce: o.Nonce, URI: uri, Algorithm: o.Algorithm, Opaque: o.Opaque}
	for _, q := range o.QOP {
		if q == "auth" {
			c.QOP, c.CNonce = "auth", cnonce
			c.NC = fmt.Sprintf("%08x", nc)
		}
	}
	c.Response, err = Response(c, method, ha1)
	return c, err
}
