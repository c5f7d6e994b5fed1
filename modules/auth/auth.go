package auth

import (
	"crypto/md5"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/asyncsip/asyncsip/modules/ratelimit"
	"github.com/asyncsip/asyncsip/modules/shared"
)

// Algorithm is a digest algorithm name as it appears on the wire.
type Algorithm string

// Supported algorithms (RFC 8760). The -sess variants are not supported.
const (
	MD5    Algorithm = "MD5"
	SHA256 Algorithm = "SHA-256"
)

// Defaults of the Challenger's fields.
const (
	// DefaultNonceTTL is how long a nonce stays valid.
	DefaultNonceTTL = 5 * time.Minute
	// DefaultMaxNonces is how many nonces are tracked at once: 262144
	// slots of 24 bytes, 6 MiB, enough for ~870 challenges a second during
	// a whole DefaultNonceTTL before a still-valid nonce is forgotten.
	DefaultMaxNonces = 1 << 18
)

// Errors returned by Parse, Check and Verify. Use errors.Is; ActionFor
// maps each to the response to give.
var (
	ErrMalformed      = errors.New("auth: malformed credentials")
	ErrAlgorithm      = errors.New("auth: algorithm not offered")
	ErrRealm          = errors.New("auth: wrong realm")
	ErrBadNonce       = errors.New("auth: nonce not issued by us")
	ErrStaleNonce     = errors.New("auth: stale nonce")
	ErrReplay         = errors.New("auth: nonce-count replayed")
	ErrURIMismatch    = errors.New("auth: digest uri does not match the Request-URI")
	ErrQopRequired    = errors.New("auth: qop=auth required")
	ErrUnknownUser    = errors.New("auth: unknown user")
	ErrBadCredentials = errors.New("auth: wrong digest response")
	ErrBanned         = errors.New("auth: too many failures, banned")
)

// Challenger issues challenges and verifies credentials for one realm. Set
// its fields before its first use; its methods are then safe for
// concurrent use from every loop.
type Challenger struct {
	// Realm is the protection domain (usually the SIP domain).
	Realm string
	// NonceTTL is how long a nonce stays valid (default DefaultNonceTTL);
	// an older one gets a stale=true challenge.
	NonceTTL time.Duration
	// Algorithms are offered in order, and only these are accepted
	// (default SHA-256 then MD5, as RFC 8760 §2.4 recommends: the
	// preferred one first).
	Algorithms []Algorithm
	// MaxNonces bounds the nonces tracked (default DefaultMaxNonces; 24
	// bytes each, allocated on first use). When full, the oldest is
	// forgotten and a client still using it is challenged again
	// (stale=true): never accepted.
	MaxNonces int
	// AllowNoQop accepts the RFC 2069 form without qop (default false:
	// refused with ErrQopRequired). Such a nonce is accepted once only,
	// since without nc the uses of one nonce cannot be told apart.
	AllowNoQop bool
	// BindSource binds each nonce to the address the challenge was sent
	// to: used from another address it is stale (default false, because
	// clients behind NATs and on mobile networks change address).
	BindSource bool
	// Failures counts failed attempts and bans (NewChallenger sets one
	// with ratelimit's defaults; nil turns the throttling off).
	Failures *ratelimit.Failures
	// Logger receives one line per security event: each failure and each
	// ban at warn (source, user, realm, reason), stale nonces and refusals
	// of banned sources at debug. Nil means slog.Default().
	Logger *slog.Logger
	// Now is the clock (default time.Now); tests replace it.
	Now func() time.Time
	// Nonces, when set, keeps the nonce-counts used with each nonce for
	// every instance that shares it (modules/shared/sharedredis), so that a
	// nonce issued by one instance is accepted by another and a replay is
	// refused whichever instance it reaches. VerifyShared uses it; see
	// shared.go for what happens when it fails. The instances must share
	// the secret too.
	Nonces shared.Nonces
	// NoncesTimeout bounds VerifyShared's op on Nonces (default
	// DefaultNoncesTimeout).
	NoncesTimeout time.Duration

	secret []byte
	once   sync.Once
	nonces *nonceTable
}

// NewChallenger returns a Challenger for realm with secure defaults and a
// ratelimit.Failures tracker. secret keys the nonce HMAC (at least 16
// bytes are advised); a nil secret is replaced by 32 random bytes.
func NewChallenger(realm string, secret []byte) *Challenger {
	if len(secret) == 0 {
		secret = make([]byte, 32)
		_, _ = rand.Read(secret)
	}
	return &Challenger{
		Realm: realm, NonceTTL: DefaultNonceTTL, Algorithms: []Algorithm{SHA256, MD5},
		Failures: ratelimit.NewFailures(ratelimit.FailureConfig{}), secret: secret,
	}
}

func (c *Challenger) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

func (c *Challenger) algorithms() []Algorithm {
	if len(c.Algorithms) == 0 {
		return []Algorithm{SHA256, MD5}
	}
	return c.Algorithms
}

func (c *Challenger) logger() *slog.Logger {
	if c.Logger != nil {
		return c.Logger
	}
	return slog.Default()
}

// Challenge returns one WWW-Authenticate (or, with proxy,
// Proxy-Authenticate) header per offered algorithm, sharing one fresh
// nonce issued to src; stale marks a retry with a new nonce (RFC 7616
// §3.3: the credentials were right but the nonce was not).
func (c *Challenger) Challenge(src netip.Addr, proxy, stale bool) []sip.Header {
	name := "WWW-Authenticate"
	if proxy {
		name = "Proxy-Authenticate"
	}
	algs := c.algorithms()
	nonce := c.issueNonce(src)
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
