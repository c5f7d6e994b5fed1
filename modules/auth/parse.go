package auth

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/emiago/sipgo/sip"
)

// Credentials are the fields of an Authorization or Proxy-Authorization
// header.
type Credentials struct {
	Username, Realm, Nonce, URI, Response string
	Algorithm                             Algorithm
	CNonce, NC, QOP, Opaque               string
}

// maxHeader bounds what Parse and ParseChallenge accept.
const maxHeader = 4096

// Parse parses a `Digest k=v, k="v", …` Authorization value (RFC 3261
// §25.1 credentials). It refuses repeated parameters, control characters
// and values over 4 KiB, and needs username, nonce, uri and response.
func Parse(value string) (Credentials, error) {
	var c Credentials
	err := parseDigest(value, func(key, val string) {
		switch key {
		case "username":
			c.Username = val
		case "realm":
			c.Realm = val
		case "nonce":
			c.Nonce = val
		case "uri":
			c.URI = val
		case "response":
			c.Response = val
		case "algorithm":
			c.Algorithm = Algorithm(strings.ToUpper(val))
		case "cnonce":
			c.CNonce = val
		case "nc":
			c.NC = val
		case "qop":
			c.QOP = strings.ToLower(val)
		case "opaque":
			c.Opaque = val
		}
	})
	if err != nil {
		return c, err
	}
	switch {
	case c.Username == "", c.Nonce == "", c.URI == "", c.Response == "":
		return c, fmt.Errorf("%w: username, nonce, uri and response are required", ErrMalformed)
	case c.QOP != "" && (c.CNonce == "" || c.NC == ""):
		return c, fmt.Errorf("%w: qop without cnonce or nc", ErrMalformed)
	}
	if c.Algorithm == "" {
		c.Algorithm = MD5
	}
	if _, err := hasher(c.Algorithm); err != nil {
		return c, err
	}
	return c, nil
}

// String formats c as an Authorization header value that Parse reads back.
func (c Credentials) String() string {
	var b strings.Builder
	b.WriteString("Digest ")
	writeParam(&b, "username", c.Username, true)
	writeParam(&b, "realm", c.Realm, true)
	writeParam(&b, "nonce", c.Nonce, true)
	writeParam(&b, "uri", c.URI, true)
	writeParam(&b, "response", c.Response, true)
	writeParam(&b, "algorithm", string(c.Algorithm), false)
	writeParam(&b, "cnonce", c.CNonce, false)
	writeParam(&b, "nc", c.NC, false)
	writeParam(&b, "qop", c.QOP, false)
	writeParam(&b, "opaque", c.Opaque, false)
	return b.String()
}

// writeParam appends `, key=value`, quoting the value when it must be or
// is not a token; an empty optional value is left out.
func writeParam(b *strings.Builder, key, val string, required bool) {
	if val == "" && !required {
		return
	}
	if b.Len() > len("Digest ") {
		b.WriteString(", ")
	}
	b.WriteString(key)
	b.WriteByte('=')
	if !required && isToken(val) && key != "cnonce" && key != "opaque" {
		b.WriteString(val)
		return
	}
	b.WriteByte('"')
	for i := 0; i < len(val); i++ {
		if val[i] == '"' || val[i] == '\\' {
			b.WriteByte('\\')
		}
		b.WriteByte(val[i])
	}
	b.WriteByte('"')
}

// FromRequest finds the credentials in req: Authorization (registrar) or,
// with proxy, Proxy-Authorization. ok is false when there are none; when
// several are present, the first for realm (if non-empty) wins.
func FromRequest(req *sip.Request, proxy bool, realm ...string) (cred Credentials, ok bool, err error) {
	name := "Authorization"
	if proxy {
		name = "Proxy-Authorization"
	}
	hs := req.GetHeaders(name)
	if len(hs) == 0 {
		return cred, false, nil
	}
	var firstErr error
	for _, h := range hs {
		c, err := Parse(h.Value())
		if err != nil {
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		if len(realm) == 0 || realm[0] == "" || c.Realm == realm[0] {
			return c, true, nil
		}
	}
	if firstErr != nil {
		return cred, true, firstErr
	}
	return cred, true, fmt.Errorf("%w: no credentials for realm %q", ErrRealm, realm[0])
}

// NewAttempt reads the credentials of req for realm (FromRequest) with the
// method, Request-URI and source address Verify checks them against. ok is
// false when req carries none: challenge it. An error means unreadable
// credentials: challenge again too (or refuse).
func NewAttempt(req *sip.Request, src netip.Addr, proxy bool, realm string) (a Attempt, ok bool, err error) {
	cred, ok, err := FromRequest(req, proxy, realm)
	a = Attempt{Credentials: cred, Method: string(req.Method), RequestURI: req.Recipient.String(), Source: src.Unmap()}
	return a, ok, err
}
