package main

// The proxy's trust boundary: who is trusted without credentials, what is
// logged when something is refused, and the identity headers we vouch for.
// docs/SECURITY.md explains the threat model; the README's "Security"
// section lists the defaults.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/asyncsip/asyncsip/async"
	"github.com/asyncsip/asyncsip/modules/auth"
	"github.com/asyncsip/asyncsip/modules/db"
	"github.com/asyncsip/asyncsip/tm"
)

// trustSet holds the peers whose requests are neither challenged nor rate
// limited: the configured ones (IP, CIDR or exact IP:port) and the gateways
// of the database, each by its exact IP:port (a gateway at 127.0.0.1:5080
// does not make every program on 127.0.0.1 trusted).
type trustSet struct {
	prefixes []netip.Prefix
	exact    map[netip.AddrPort]bool
	gateways atomic.Pointer[map[netip.AddrPort]bool]
}

// parseTrusted reads the trusted list: "192.0.2.10", "192.0.2.0/24",
// "[2001:db8::1]:5060" or "192.0.2.10:5060".
func parseTrusted(list []string) ([]netip.Prefix, map[netip.AddrPort]bool, error) {
	var prefixes []netip.Prefix
	exact := map[netip.AddrPort]bool{}
	for _, t := range list {
		if p, err := netip.ParsePrefix(t); err == nil {
			prefixes = append(prefixes, p.Masked())
			continue
		}
		if a, err := netip.ParseAddr(t); err == nil {
			prefixes = append(prefixes, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
			continue
		}
		if ap, err := netip.ParseAddrPort(t); err == nil && ap.Port() != 0 {
			exact[netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())] = true
			continue
		}
		return nil, nil, fmt.Errorf("trusted %q: want an IP address, a CIDR prefix (192.0.2.0/24) or IP:port", t)
	}
	return prefixes, exact, nil
}

func newTrustSet(list []string) (*trustSet, error) {
	prefixes, exact, err := parseTrusted(list)
	if err != nil {
		return nil, err
	}
	return &trustSet{prefixes: prefixes, exact: exact}, nil
}

// has reports whether src is a trusted peer.
func (t *trustSet) has(src netip.AddrPort) bool {
	if t == nil {
		return false
	}
	src = netip.AddrPortFrom(src.Addr().Unmap(), src.Port())
	if t.exact[src] {
		return true
	}
	if gw := t.gateways.Load(); gw != nil && (*gw)[src] {
		return true
	}
	for _, p := range t.prefixes {
		if p.Contains(src.Addr()) {
			return true
		}
	}
	return false
}

// loadGateways reads the gateway table into the trust set: IP literals as
// they are, host names resolved now (the timer job calls this again every
// expire_every, so gateways added with the CLI are picked up).
func (p *Proxy) loadGateways(ctx context.Context) (int, error) {
	rows, err := p.store.h.QueryContext(ctx, `SELECT address FROM gateway`)
	if err != nil {
		return 0, err
	}
	set := map[netip.AddrPort]bool{}
	for _, r := range rows.All() {
		host, port := splitGateway(r.String(0))
		if a, err := netip.ParseAddr(host); err == nil {
			set[netip.AddrPortFrom(a.Unmap(), port)] = true
			continue
		}
		lctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		addrs, err := net.DefaultResolver.LookupNetIP(lctx, "ip", host)
		cancel()
		if err != nil {
			p.logger().Warn("gateway address does not resolve; not trusted", "gateway", r.String(0), "err", err)
			continue
		}
		for _, a := range addrs {
			set[netip.AddrPortFrom(a.Unmap(), port)] = true
		}
	}
	p.trust.gateways.Store(&set)
	return len(set), nil
}

// splitGateway splits a stored gateway address ("host:port", "host",
// "[v6]:port"); the port defaults to 5060.
func splitGateway(a string) (string, uint16) {
	if host, port, err := net.SplitHostPort(a); err == nil {
		if n, err := strconv.Atoi(port); err == nil && n > 0 && n < 65536 {
			return host, uint16(n)
		}
		return host, 5060
	}
	return strings.TrimSuffix(strings.TrimPrefix(a, "["), "]"), 5060
}

// Security events, the "event" of a msg=security log line. Digest failures
// and bans are logged by modules/auth (msg="auth: failed", "auth: banned").
const (
	evScanner    = "scanner"     // a scanner's User-Agent: dropped, no answer
	evRateBan    = "rate_ban"    // a source went over the request rate: ignored for rate_ban
	evRefused    = "refused"     // a request we would not relay (identity, Route, policy)
	evContactCap = "contact_cap" // a REGISTER beyond max_contacts
)

// security writes one warn line for a security event about c's request.
func (p *Proxy) security(c *tm.Context, event, user, reason string) {
	p.securityReq(c.Source(), c.Req(), event, user, reason)
}

// securityReq is security for a request from src that has no Context (the
// screen).
func (p *Proxy) securityReq(src netip.AddrPort, req *sip.Request, event, user, reason string) {
	p.logger().LogAttrs(context.Background(), slog.LevelWarn, "security",
		slog.String("event", event),
		slog.String("source", src.String()),
		slog.String("user", logSafe(user)),
		slog.String("reason", reason),
		slog.String("method", logSafe(string(req.Method))),
		slog.String("call_id", logSafe(string(*req.CallID()))),
	)
}

// quietKey marks a request dropped for a security reason after the screen
// let it through (a user banned for failed passwords): its transaction gets
// no log line (logEnd), so that a flood does not flood the log — the ban is
// logged once. (What the screen drops has no transaction, hence no line.)
const quietKey = "log.quiet"

// quietDrop drops c's request without an answer and without a
// transaction log line.
func quietDrop(c *tm.Context) {
	c.Set(quietKey, true)
	c.Drop()
}

// rateLog logs each rate-limit ban once (the requests refused during the
// ban are not logged: a flood must not flood the log).
type rateLog struct{ p *Proxy }

func (o rateLog) Ban(ip netip.Addr, until time.Time) {
	o.p.logger().LogAttrs(context.Background(), slog.LevelWarn, "security",
		slog.String("event", evRateBan), slog.String("source", ip.String()), slog.String("user", ""),
		slog.String("reason", "over the request rate"), slog.Time("until", until))
}

func (rateLog) Refuse(netip.Addr) {}

// logSafe bounds an attacker-chosen string for a log line (slog quotes
// control characters).
func logSafe(s string) string {
	const limit = 64
	if len(s) > limit {
		return s[:limit] + "…"
	}
	return s
}

// removeHeaders removes every header named one of names, whatever its case.
func removeHeaders(req *sip.Request, names ...string) {
	for _, h := range slices.Clone(req.Headers()) {
		for _, n := range names {
			if strings.EqualFold(h.Name(), n) {
				req.RemoveHeader(h.Name()) // the first one of that spelling
				break
			}
		}
	}
}

// assertIdentity replaces any identity the caller asserted with the one it
// authenticated as (RFC 3325: only we vouch for it), and removes the
// credentials meant for us so the next hop never sees them.
func (p *Proxy) assertIdentity(req *sip.Request, user string) {
	removeHeaders(req, "P-Asserted-Identity", "P-Preferred-Identity")
	req.AppendHeader(sip.NewHeader("P-Asserted-Identity", "<sip:"+user+"@"+p.cfg.Domain+">"))
	var keep []sip.Header
	for _, h := range req.Headers() {
		if !strings.EqualFold(h.Name(), "Proxy-Authorization") {
			continue
		}
		if cred, err := auth.Parse(h.Value()); err != nil || cred.Realm != p.ch.Realm {
			keep = append(keep, sip.NewHeader("Proxy-Authorization", h.Value()))
		}
	}
	removeHeaders(req, "Proxy-Authorization")
	for _, h := range keep {
		req.AppendHeader(h)
	}
}

// credentials returns the request's digest attempt, or challenges it (401
// for REGISTER, 407 for the rest) and returns false.
func (p *Proxy) credentials(c *tm.Context, proxy bool) (auth.Attempt, bool) {
	a, ok, err := auth.NewAttempt(c.Req(), c.Source().Addr(), proxy, p.ch.Realm)
	if !ok || err != nil {
		p.challenge(c, proxy, false)
		return a, false
	}
	return a, true
}

func (p *Proxy) challenge(c *tm.Context, proxy, stale bool) {
	hdrs := p.ch.Challenge(c.Source().Addr(), proxy, stale)
	if proxy {
		_ = c.Reply(407, "Proxy Authentication Required", hdrs...)
		return
	}
	_ = c.Reply(401, "Unauthorized", hdrs...)
}

// verify runs auth's checks that need no database (bans, nonce, nc, uri)
// first, then looks the user's HA1 up and verifies the response; ok runs
// with the authenticated user name. Every failure is answered here (and
// logged by auth).
func (p *Proxy) verify(c *tm.Context, a auth.Attempt, proxy bool, ok func(user string)) {
	if res, err := p.ch.Check(a); err != nil {
		p.authFailed(c, res, proxy)
		return
	}
	col := "ha1_md5"
	if a.Algorithm == auth.SHA256 {
		col = "ha1_sha256"
	}
	lookup := p.store.h.QueryRow(p.store.q(`SELECT `+col+` FROM subscriber WHERE username = ?`), a.Username)
	async.Await(c, lookup, func(row db.Row, err error) {
		ha1 := ""
		switch {
		case errors.Is(err, db.ErrNoRows): // Verify counts an unknown user as a failure
		case err != nil:
			c.Logger().Warn("credential lookup failed", "err", err)
			_ = c.Reply(503, "Service Unavailable", sip.NewHeader("Retry-After", "5"))
			return
		default:
			ha1 = row.String(0)
		}
		// With -shared the nonce-count is checked for every instance
		// (a replay is refused wherever it goes); else at once, here.
		async.Await(c, p.ch.VerifyShared(a, ha1), func(res auth.Result, err error) {
			if err != nil {
				p.authFailed(c, res, proxy)
				return
			}
			c.Set("user", a.Username)
			ok(a.Username)
		}, async.Timeout(time.Second), async.Name("auth.verify"))
	}, async.Timeout(p.cfg.DBTimeout), async.Name("auth.lookup"))
}

// authFailed gives the response auth asks for: a stale challenge, 403, or
// nothing to a banned source or user.
func (p *Proxy) authFailed(c *tm.Context, res auth.Result, proxy bool) {
	switch res.Action {
	case auth.Challenge, auth.ChallengeStale:
		p.challenge(c, proxy, res.Stale())
	case auth.Drop:
		quietDrop(c)
	default:
		_ = c.Reply(403, "Forbidden")
	}
}

// authenticatedUser is the user verify accepted for c ("" for none).
func authenticatedUser(c *tm.Context) string {
	u, _ := tm.Value[string](c, "user")
	return u
}
