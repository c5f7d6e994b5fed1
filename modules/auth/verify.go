package auth

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/asyncsip/asyncsip/modules/ratelimit"
)

// Attempt is one authentication attempt: the credentials a request carried
// and what they must match. NewAttempt fills it from a request.
type Attempt struct {
	Credentials
	// Method is the request's method.
	Method string
	// RequestURI is the request's Request-URI; the digest uri must name it.
	RequestURI string
	// Source is the address the request came from.
	Source netip.Addr
}

// Action is the response an attempt calls for.
type Action int

// The actions, from ActionFor.
const (
	// Accept: the credentials are good.
	Accept Action = iota
	// Challenge: challenge with a fresh nonce (no or unreadable credentials).
	Challenge
	// ChallengeStale: challenge again with stale=true; the client retries
	// with the new nonce without asking its user (expired, evicted or
	// replayed nonce, or one used from another address with BindSource).
	ChallengeStale
	// Refuse: answer 403 (wrong credentials, realm, algorithm, qop or uri).
	Refuse
	// Drop: the source or the user is banned; send nothing.
	Drop
)

// String names the action.
func (a Action) String() string {
	switch a {
	case Accept:
		return "accept"
	case Challenge:
		return "challenge"
	case ChallengeStale:
		return "challenge-stale"
	case Refuse:
		return "refuse"
	case Drop:
		return "drop"
	}
	return "action(" + strconv.Itoa(int(a)) + ")"
}

// ActionFor maps an error of Check or Verify to the response to give.
func ActionFor(err error) Action {
	switch {
	case err == nil:
		return Accept
	case errors.Is(err, ErrBanned):
		return Drop
	case errors.Is(err, ErrStaleNonce), errors.Is(err, ErrReplay):
		return ChallengeStale
	}
	return Refuse
}

// Result is the outcome of Check or Verify.
type Result struct {
	// Action is the response to give (ActionFor of the error).
	Action Action
	// Username is the user the credentials are for; authenticated only
	// when Action is Accept.
	Username string
	// Ban is the bans in force on the source and the user after this
	// attempt (zero without a Failures tracker).
	Ban ratelimit.Ban
}

// Stale reports whether the challenge to send must carry stale=true.
func (r Result) Stale() bool { return r.Action == ChallengeStale }

// Check runs every test that needs no HA1 — bans, realm, algorithm, qop,
// nonce (integrity, age, source, still tracked, nc not replayed) and uri — so a route can refuse before it
// looks the user up. Failures are counted and logged as in Verify.
func (c *Challenger) Check(a Attempt) (Result, error) {
	_, err := c.check(a)
	return c.result(a, err)
}

// Verify checks a against ha1, the stored H(username:realm:password) for
// a.Algorithm ("" when the user is unknown: ErrUnknownUser, counted like a
// wrong password). On top of Check it compares the response in constant
// time and then accepts the nonce-count only if it is above the last one
// accepted for the nonce (ErrReplay otherwise). A success restarts the
// user's failure count.
func (c *Challenger) Verify(a Attempt, ha1 string) (Result, error) {
	n, err := c.check(a)
	if err == nil {
		err = c.verifyResponse(a, ha1, n)
	}
	return c.result(a, err)
}

func (c *Challenger) verifyResponse(a Attempt, ha1 string, n nonce) error {
	if err := c.compare(a, ha1); err != nil {
		return err
	}
	return c.table().use(n.slot, n.rand, n.issued, ncOf(a.Credentials))
}

// compare checks the digest response against ha1.
func (c *Challenger) compare(a Attempt, ha1 string) error {
	known := ha1 != ""
	if !known {
		ha1 = "00000000000000000000000000000000" // same work either way: no user enumeration by timing
	}
	want, err := Response(a.Credentials, a.Method, ha1)
	if err != nil {
		return err
	}
	match := subtle.ConstantTimeCompare([]byte(want), []byte(strings.ToLower(a.Response))) == 1
	switch {
	case !known:
		return ErrUnknownUser
	case !match:
		return ErrBadCredentials
	}
	return nil
}

// ncOf is the nonce-count of valid credentials: without qop a nonce is
// good once, as if its count were 1.
func ncOf(cred Credentials) uint32 {
	if cred.QOP == "" {
		return 1
	}
	v, _ := strconv.ParseUint(cred.NC, 16, 32) // validated by checkQop
	return uint32(v)
}

// check runs the HA1-free tests, cheapest and most telling first.
func (c *Challenger) check(a Attempt) (nonce, error) {
	if f := c.Failures; f != nil {
		if b := f.Banned(a.Username, a.Source); b.Active() {
			return nonce{}, ErrBanned
		}
	}
	if a.Realm != c.Realm {
		return nonce{}, fmt.Errorf("%w: %q", ErrRealm, a.Realm)
	}
	if !slices.Contains(c.algorithms(), a.Algorithm) {
		return nonce{}, fmt.Errorf("%w: %q", ErrAlgorithm, a.Algorithm)
	}
	if err := c.checkQop(a.Credentials); err != nil {
		return nonce{}, err
	}
	n, err := c.checkNonce(a.Nonce, a.Source)
	if err != nil {
		return n, err
	}
	if !SameURI(a.URI, a.RequestURI) {
		return n, fmt.Errorf("%w: %q is not %q", ErrURIMismatch, a.URI, a.RequestURI)
	}
	err = c.table().peek(n.slot, n.rand, n.issued, ncOf(a.Credentials))
	if c.Nonces != nil && errors.Is(err, ErrStaleNonce) {
		err = nil // issued by another instance: Nonces decides (VerifyShared)
	}
	return n, err
}

func (c *Challenger) checkQop(cred Credentials) error {
	switch cred.QOP {
	case "auth":
		// RFC 7616 §3.4: nc is exactly 8 hex digits; 0 is never sent.
		v, err := strconv.ParseUint(cred.NC, 16, 32)
		if len(cred.NC) != 8 || err != nil || v == 0 {
			return fmt.Errorf("%w: nc %q", ErrMalformed, cred.NC)
		}
		return nil
	case "":
		if c.AllowNoQop {
			return nil
		}
		return ErrQopRequired
	}
	return fmt.Errorf("%w: qop %q not offered", ErrQopRequired, cred.QOP)
}

// counted reports whether err counts as a failed attempt. Stale and
// replayed nonces do not: a fresh challenge is all a real client needs, and
// the replayer learns nothing from it. Bans do not either.
func counted(err error) bool {
	return err != nil && !errors.Is(err, ErrStaleNonce) && !errors.Is(err, ErrReplay) && !errors.Is(err, ErrBanned)
}

// result counts and logs the outcome of an attempt.
func (c *Challenger) result(a Attempt, err error) (Result, error) {
	r := Result{Action: ActionFor(err), Username: a.Username}
	f := c.Failures
	switch {
	case f == nil:
	case err == nil:
		f.Succeed(a.Username, a.Source)
	case counted(err):
		r.Ban = f.Fail(a.Username, a.Source)
	default:
		r.Ban = f.Banned(a.Username, a.Source)
	}
	c.log(a, err, r.Ban)
	return r, err
}

// log writes one line per security event: a failure, or the ban it
// started, at warn; an expired or evicted nonce and a refusal of a banned
// source or user at debug, so that a flood does not flood the log.
func (c *Challenger) log(a Attempt, err error, b ratelimit.Ban) {
	if err == nil {
		return
	}
	attrs := make([]slog.Attr, 0, 6)
	attrs = append(attrs, slog.String("source", a.Source.String()), slog.String("user", logSafe(a.Username)),
		slog.String("realm", logSafe(a.Realm)), slog.String("reason", err.Error()))
	level, msg := slog.LevelWarn, "auth: failed"
	switch {
	case b.NewSource || b.NewUser:
		msg = "auth: banned"
		if b.NewSource {
			attrs = append(attrs, slog.Time("source_until", b.Source))
		}
		if b.NewUser {
			attrs = append(attrs, slog.Time("user_until", b.User))
		}
	case errors.Is(err, ErrBanned), errors.Is(err, ErrStaleNonce) && !errors.Is(err, errOtherSource):
		level = slog.LevelDebug
	}
	c.logger().LogAttrs(context.Background(), level, msg, attrs...)
}

// logSafe bounds an attacker-chosen string for a log line.
func logSafe(s string) string {
	const limit = 64
	if len(s) > limit {
		return s[:limit] + "…"
	}
	return s
}
