// Package auth implements SIP digest authentication (RFC 3261 §22 with the
// RFC 8760 algorithms MD5 and SHA-256, qop=auth) for registrars and proxies.
//
// Nonces are stateless: a nonce carries its issue time and an HMAC over it,
// so any worker (or any proxy instance sharing the secret) can verify it
// without storing anything. Credentials are checked against HA1 values, so
// the database never needs plaintext passwords.
//
//	ch := auth.NewChallenger("example.com", secret)
//	cred, ok, err := auth.FromRequest(c.Req, false)
//	if !ok || err != nil {
//		c.Reply(401, "Unauthorized", ch.Challenge(false, false)...)
//		return
//	}
//	// look up ha1 for cred.Username and cred.Algorithm (async), then:
//	switch err := ch.Verify(cred, string(c.Req.Method), ha1); {
//	case errors.Is(err, auth.ErrStale):
//		c.Reply(401, "Unauthorized", ch.Challenge(false, true)...)
//	case err != nil:
//		c.Reply(403, "Forbidden")
//	}
package auth

import (
	"crypto/hmac"
	"crypto/md5"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"
)

// Algorithm is a digest algorithm name as it appears on the wire.
type Algorithm string

// Supported algorithms (RFC 8760).
const (
	MD5    Algorithm = "MD5"
	SHA256 Algorithm = "SHA-256"
)

// Errors returned by Parse and Verify.
var (
	ErrMalformed   = errors.New("auth: malformed credentials")
	ErrAlgorithm   = errors.New("auth: unsupported algorithm")
	ErrBadNonce    = errors.New("auth: nonce not issued by us")
	ErrStale       = errors.New("auth: nonce expired")
	ErrBadResponse = errors.New("auth: wrong digest response")
	ErrRealm       = errors.New("auth: wrong realm")
)

// Challenger issues challenges and verifies credentials for one realm.
type Challenger struct {
	// Realm is the protection domain (usually the SIP domain).
	Realm string
	// NonceTTL is how long a nonce stays valid (default 5 minutes).
	NonceTTL time.Duration
	// Algorithms are offered in order (default SHA-256 then MD5, as
	// RFC 8760 §2.4 recommends: the preferred one first).
	Algorithms []Algorithm
	// Now is the clock (default time.Now); tests replace it.
	Now    func() time.Time
	secret []byte
}

// NewChallenger returns a Challenger for realm. secret keys the nonce HMAC:
// share it between instances that must accept each other's nonces. A nil
// secret is replaced by 32 random bytes.
func NewChallenger(realm string, secret []byte) *Challenger {
	if len(secret) == 0 {
		secret = make([]byte, 32)
		_, _ = rand.Read(secret)
	}
	return &Challenger{Realm: realm, NonceTTL: 5 * time.Minute, Algorithms: []Algorithm{SHA256, MD5}, secret: secret}
}

func (c *Challenger) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

// Nonce returns a fresh stateless nonce: base64url(issue time ‖ random ‖
// HMAC-SHA256(secret, realm ‖ issue time ‖ random)[:16]).
func (c *Challenger) Nonce() string {
	var b [8 + 8 + 16]byte
	binary.BigEndian.PutUint64(b[:8], uint64(c.now().Unix()))
	_, _ = rand.Read(b[8:16])
	copy(b[16:], c.mac(b[:16]))
	return base64.RawURLEncoding.EncodeToString(b[:])
}

func (c *Challenger) mac(data []byte) []byte {
	m := hmac.New(sha256.New, c.secret)
	m.Write([]byte(c.Realm))
	m.Write(data)
	return m.Sum(nil)[:16]
}

// checkNonce verifies a nonce's HMAC and age.
func (c *Challenger) checkNonce(n string) error {
	b, err := base64.RawURLEncoding.DecodeString(n)
	if err != nil || len(b) != 32 {
		return ErrBadNonce
	}
	if !hmac.Equal(b[16:], c.mac(b[:16])) {
		return ErrBadNonce
	}
	issued := time.Unix(int64(binary.BigEndian.Uint64(b[:8])), 0)
	age := c.now().Sub(issued)
	ttl := c.NonceTTL
	if ttl <= 0 {
		ttl = 5 * time.Minute
	}
	if age > ttl || age < -time.Minute {
		return ErrStale
	}
	return nil
}

// Challenge returns one WWW-Authenticate (or, with proxy, Proxy-Authenticate)
// header per offered algorithm; stale marks a retry with a new nonce.
func (c *Challenger) Challenge(proxy, stale bool) []sip.Header {
	name := "WWW-Authenticate"
	if proxy {
		name = "Proxy-Authenticate"
	}
	algs := c.Algorithms
	if len(algs) == 0 {
		algs = []Algorithm{SHA256, MD5}
	}
	nonce := c.Nonce()
	out := make([]sip.Header, 0, len(algs))
	for _, a := range algs {
		v := fmt.Sprintf(`Digest realm="%s", nonce="%s", algorithm=%s, qop="auth"`, c.Realm, nonce, a)
		if stale {
			v += ", stale=true"
		}
		out = append(out, sip.NewHeader(name, v))
	}
	return out
}

// HA1 computes H(username:realm:password) for alg, the value a user
// database stores instead of the password.
func HA1(alg Algorithm, username, realm, password string) (string, error) {
	h, err := hasher(alg)
	if err != nil {
		return "", err
	}
	return hexHash(h, username+":"+realm+":"+password), nil
}

func hasher(alg Algorithm) (func() hash.Hash, error) {
	switch Algorithm(strings.ToUpper(string(alg))) {
	case MD5, "":
		return md5.New, nil
	case SHA256:
		return sha256.New, nil
	}
	return nil, fmt.Errorf("%w: %q", ErrAlgorithm, alg)
}

func hexHash(h func() hash.Hash, s string) string {
	x := h()
	x.Write([]byte(s))
	return hex.EncodeToString(x.Sum(nil))
}

// Response computes the expected digest response (RFC 3261 §22.4 with
// RFC 2617/7616 qop=auth; without qop, the RFC 2069 form).
func Response(cred Credentials, method, ha1 string) (string, error) {
	h, err := hasher(cred.Algorithm)
	if err != nil {
		return "", err
	}
	ha2 := hexHash(h, method+":"+cred.URI)
	switch cred.QOP {
	case "":
		return hexHash(h, ha1+":"+cred.Nonce+":"+ha2), nil
	case "auth":
		return hexHash(h, ha1+":"+cred.Nonce+":"+cred.NC+":"+cred.CNonce+":"+cred.QOP+":"+ha2), nil
	}
	return "", fmt.Errorf("%w: qop %q", ErrMalformed, cred.QOP)
}

// Verify checks cred for method against ha1 (for cred.Algorithm): realm,
// nonce integrity and age (ErrStale: challenge again with stale=true), and
// the response, compared in constant time.
func (c *Challenger) Verify(cred Credentials, method, ha1 string) error {
	if cred.Realm != c.Realm {
		return fmt.Errorf("%w: %q", ErrRealm, cred.Realm)
	}
	if err := c.checkNonce(cred.Nonce); err != nil {
		return err
	}
	want, err := Response(cred, method, ha1)
	if err != nil {
		return err
	}
	if subtle.ConstantTimeCompare([]byte(want), []byte(strings.ToLower(cred.Response))) != 1 {
		return ErrBadResponse
	}
	return nil
}
