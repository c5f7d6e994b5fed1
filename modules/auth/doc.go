// Package auth implements SIP digest authentication (RFC 3261 §22 with the
// RFC 8760 algorithms MD5 and SHA-256, qop=auth) for registrars and
// proxies, hardened for a server on the internet.
//
// Nonces are minted with an HMAC under a server secret (unforgeable, their
// age cannot be faked) and tracked in a fixed-size table: each nonce-count
// is accepted once, so a sniffed Authorization header cannot be replayed.
// The digest uri must name the Request-URI, qop=auth is required, and
// failed attempts are counted per source and per user by a
// ratelimit.Failures tracker that bans with a growing back-off. Credentials
// are checked against HA1 values, so the database never needs plaintext
// passwords. Each security event is logged once at warn level.
//
//	ch := auth.NewChallenger("example.com", secret)
//	a, ok, err := auth.NewAttempt(c.Req(), c.Source().Addr(), false, ch.Realm)
//	if !ok || err != nil {
//		c.Reply(401, "Unauthorized", ch.Challenge(c.Source().Addr(), false, false)...)
//		return
//	}
//	// look up ha1 for a.Username and a.Algorithm (async; "" when unknown), then:
//	res, _ := ch.Verify(a, ha1)
//	switch res.Action {
//	case auth.Accept: // authenticated as res.Username
//	case auth.ChallengeStale:
//		c.Reply(401, "Unauthorized", ch.Challenge(c.Source().Addr(), false, true)...)
//	case auth.Drop:
//		c.Drop()
//	default:
//		c.Reply(403, "Forbidden")
//	}
package auth
