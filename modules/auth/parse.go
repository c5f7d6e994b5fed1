package auth

import (
	"fmt"
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

// maxCredentials bounds what Parse accepts.
const maxCredentials = 4096

// Parse parses a `Digest k=v, k="v", …` header value.
func Parse(value string) (Credentials, error) {
	var c Credentials
	if len(value) > maxCredentials {
		return c, fmt.Errorf("%w: %d bytes", ErrMalformed, len(value))
	}
	scheme, rest, ok := strings.Cut(strings.TrimSpace(value), " ")
	if !ok || !strings.EqualFold(scheme, "Digest") {
		return c, fmt.Errorf("%w: scheme is not Digest", ErrMalformed)
	}
	for rest = strings.TrimSpace(rest); rest != ""; {
		eq := strings.IndexByte(rest, '=')
		if eq <= 0 {
			return c, fmt.Errorf("%w: parameter without value", ErrMalformed)
		}
		key := strings.ToLower(strings.TrimSpace(rest[:eq]))
		rest = strings.TrimSpace(rest[eq+1:])
		var val string
		if strings.HasPrefix(rest, `"`) {
			end := strings.IndexByte(rest[1:], '"')
			if end < 0 {
				return c, fmt.Errorf("%w: unterminated quoted value for %s", ErrMalformed, key)
			}
			val, rest = rest[1:end+1], rest[end+2:]
		} else {
			end := strings.IndexByte(rest, ',')
			if end < 0 {
				end = len(rest)
			}
			val, rest = strings.TrimSpace(rest[:end]), rest[end:]
		}
		rest = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(rest), ","))
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
