package main

import (
	"errors"
	"log/slog"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/asyncsip/asyncsip/async"
	"github.com/asyncsip/asyncsip/modules/auth"
	"github.com/asyncsip/asyncsip/modules/db"
	"github.com/asyncsip/asyncsip/modules/dialog"
	"github.com/asyncsip/asyncsip/modules/nat"
	"github.com/asyncsip/asyncsip/modules/ratelimit"
	"github.com/asyncsip/asyncsip/modules/rest"
	"github.com/asyncsip/asyncsip/modules/shared"
	"github.com/asyncsip/asyncsip/tm"
)

// Proxy holds what the routes need. Its routes are plain functions of a
// *tm.Context, so they run the same in the server and in siptest.
type Proxy struct {
	cfg   Config
	store *Store
	ch    *auth.Challenger
	rest  *rest.Client       // nil without a REST hook
	log   *slog.Logger       // one line per transaction, registration change and security event
	trust *trustSet          // peers never challenged (security.go)
	rl    *ratelimit.Limiter // initial requests per untrusted source; nil when rate is 0
	nat   *nat.Pinger        // keep-alives to NATed bindings; nil when nat_ping is 0
	media *media             // media through rtpengine (media.go); nil without -rtpengine
	loc   shared.Location    // bindings in Redis (-location); nil: in the database
	dlg   *dialog.Tracker    // calls to the gateways (-trunk-calls); nil without a limit
	scale *scale             // Redis clients of -location and -shared
}

// Decision is what the REST hook answers for a new call:
// {"action": "allow" | "deny" | "route", "target": "sip:…", "code": 403, "reason": "…"}.
type Decision struct {
	Action string `json:"action"`
	Target string `json:"target"`
	Code   int    `json:"code"`
	Reason string `json:"reason"`
}

// Routes returns the proxy's routes.
func (p *Proxy) Routes() tm.Routes {
	return tm.Routes{Screen: p.screen, Request: p.request, Reply: p.reply, Failure: p.failure, End: p.end}
}

// end is the End route: the media session of a call that failed is
// deleted, and every transaction gets its log line.
func (p *Proxy) end(c *tm.Context) {
	p.mediaEnd(c)
	p.logEnd(c)
}

// screen runs for every new request before tm answers anything
// (tm.Routes.Screen): an untrusted source over its request rate, with a
// scanner's User-Agent or banned for failed passwords gets nothing at all —
// no 100 Trying, no challenge, not even tm's 403 to a tagged request
// without our signed Record-Route. Only initial requests count against the
// rate (calls in progress are not throttled), but while a source is banned
// all its requests are dropped.
func (p *Proxy) screen(req *sip.Request, src netip.AddrPort) (drop bool) {
	if p.trust.has(src) {
		return false
	}
	ip := src.Addr()
	if p.rl != nil {
		if initial(req) {
			if !p.rl.Allow(ip) {
				return true // the ban was logged once when it started (rateLog)
			}
		} else if p.rl.Banned(ip) {
			return true
		}
	}
	if ua, ok := userAgent(req); ok && ratelimit.IsScannerAgent(ua) {
		p.securityReq(src, req, evScanner, req.From().Address.User, "scanner User-Agent "+strconv.Quote(logSafe(ua)))
		return true // a scanner learns nothing
	}
	// Banned for failed passwords: silence until the ban ends.
	return p.ch.Failures != nil && p.ch.Failures.Banned("", ip).Active()
}

// userAgent returns req's User-Agent. It compares header names itself:
// sip.Request.GetHeader lower-cases every name it meets, an allocation per
// header on the screen's path.
func userAgent(req *sip.Request) (string, bool) {
	for _, h := range req.Headers() {
		if strings.EqualFold(h.Name(), "User-Agent") {
			return h.Value(), true
		}
	}
	return "", false
}

// initial reports whether req is counted by the rate limit: a request that
// starts something (no To tag), not a CANCEL or ACK of one.
func initial(req *sip.Request) bool {
	if req.Method == sip.ACK || req.Method == sip.CANCEL {
		return false
	}
	_, tagged := req.To().Params.Get("tag")
	return !tagged
}

// request is the request route; the screen has already dropped what an
// untrusted source must get no answer for. In order: in-dialog requests
// along our signed Record-Route go on (tm refused forged ones with 403
// before this route ran); REGISTER is authenticated by the registrar;
// anything else from an untrusted source must authenticate (407) as the
// user in its From before it is routed.
func (p *Proxy) request(c *tm.Context) {
	req := c.Req()
	if c.InDialog() {
		// In-dialog requests follow their Route set (tm already removed
		// our own Route entry); an ACK is forwarded statelessly. Not
		// counted by the rate limit: established calls are not throttled.
		p.bye(c)
		p.inDialog(c) // relays; a re-INVITE of an anchored call through rtpengine
		return
	}
	trusted := p.trust.has(c.Source())
	switch req.Method {
	case sip.REGISTER:
		p.register(c)
		return
	case sip.ACK:
		c.Drop() // an ACK outside any dialog or transaction: nothing to do
		return
	case sip.OPTIONS:
		if req.Recipient.User == "" {
			// A keep-alive to the proxy itself: answered, never relayed.
			_ = c.Reply(200, "OK", sip.NewHeader("Allow", "INVITE, ACK, CANCEL, BYE, OPTIONS, REGISTER, MESSAGE"))
			return
		}
	}
	if c.ForeignRoute() {
		p.security(c, evRefused, req.From().Address.User, "Route header chosen by the sender")
		_ = c.Reply(403, "Forbidden (Route not allowed)")
		return
	}
	if trusted {
		p.routeCall(c) // a trusted peer's identity headers are kept
		return
	}
	a, ok := p.credentials(c, true)
	if !ok {
		return
	}
	p.verify(c, a, true, func(user string) {
		if from := c.Req().From().Address.User; from != user {
			p.security(c, evRefused, user, "From user "+strconv.Quote(logSafe(from))+" is not the authenticated user")
			_ = c.Reply(403, "Forbidden (From user does not match the authenticated user)")
			return
		}
		p.assertIdentity(c.Req(), user)
		p.routeCall(c)
	})
}

// routeCall routes a request that passed the trust boundary: the REST hook
// for a new call when there is one, else the database.
func (p *Proxy) routeCall(c *tm.Context) {
	if p.rest != nil && c.Method() == sip.INVITE {
		p.restHook(c)
		return
	}
	p.routeToUser(c)
}

// restHook asks the HTTP API about a new call: allow (go on), deny (reply
// its code), or route to its target. When the hook's client is full
// (rest_concurrency busy and rest_queue waiting) the call is refused 503;
// on another error or timeout it goes on by the database route when
// FailOpen is set, else gets 503.
func (p *Proxy) restHook(c *tm.Context) {
	q := url.Values{}
	q.Set("from", c.Req().From().Address.User)
	q.Set("to", c.Recipient().User)
	q.Set("call_id", c.CallID())
	q.Set("user", authenticatedUser(c)) // "" for a trusted peer
	q.Set("source", c.Source().Addr().String())
	op := rest.JSON[Decision](p.rest.Get(p.cfg.RESTHook + "?" + q.Encode()))
	async.Await(c, op, func(d Decision, err error) {
		if err != nil {
			open := p.cfg.FailOpen && !errors.Is(err, async.ErrOverloaded)
			if open {
				c.Logger().Warn("rest hook failed; routing by the database (fail_open)", "err", err)
				p.routeToUser(c)
				return
			}
			p.security(c, evRefused, authenticatedUser(c), "rest hook: "+err.Error())
			_ = c.Reply(503, "Service Unavailable", sip.NewHeader("Retry-After", "5"))
			return
		}
		switch d.Action {
		case "deny":
			code := d.Code
			if code < 400 || code > 699 {
				code = 403
			}
			p.security(c, evRefused, authenticatedUser(c), "rest hook denied: "+strconv.Quote(logSafe(d.Reason)))
			_ = c.Reply(code, d.Reason)
		case "route":
			p.relay(c, []string{d.Target}, func(error) { _ = c.Reply(500, "Bad Route From Hook") })
		default:
			p.routeToUser(c)
		}
	}, async.Timeout(p.cfg.RESTTimeout), async.Name("rest.hook"))
}

// routeToUser sends the request to every registered contact of the
// Request-URI user (parallel forking); a subscriber with no binding is
// offline (480); anyone else is a number for a gateway.
func (p *Proxy) routeToUser(c *tm.Context) {
	if p.loc != nil {
		p.routeShared(c)
		return
	}
	user := c.Recipient().User
	s := p.store
	// One row per live binding of a subscriber, one row with an empty
	// contact for a subscriber without any, no row for a non-subscriber.
	// The most recently refreshed bindings first; at most max_contacts
	// exist, and max_fork of them are rung.
	q := s.h.Query(s.q(`SELECT COALESCE(l.contact, '') FROM subscriber s
		LEFT JOIN location l ON l.username = s.username AND l.expires_at > ?
		WHERE s.username = ? ORDER BY l.expires_at DESC, l.contact LIMIT ?`), time.Now().Unix(), user, p.cfg.MaxFork)
	async.Await(c, q, func(rows *db.Rows, err error) {
		if err != nil {
			c.Logger().Warn("location lookup failed", "err", err)
			_ = c.Reply(503, "Service Unavailable", sip.NewHeader("Retry-After", "5"))
			return
		}
		if rows.Len() == 0 {
			p.routeLCR(c)
			return
		}
		if rows.Len() == 1 && rows.Row(0).String(0) == "" {
			_ = c.Reply(480, "Temporarily Unavailable")
			return
		}
		contacts := make([]string, 0, rows.Len())
		for _, r := range rows.All() {
			contacts = append(contacts, r.String(0))
		}
		p.relay(c, oneBranchPerHop(contacts), func(error) { _ = c.Reply(480, "Temporarily Unavailable") })
	}, async.Timeout(p.cfg.DBTimeout), async.Name("location.lookup"))
}

// oneBranchPerHop keeps the first contact of each next hop (host, port and
// transport): bindings that differ only in their user part would ring the
// same device again — and multiply what one INVITE sends to one address.
func oneBranchPerHop(contacts []string) []string {
	seen := make(map[string]bool, len(contacts))
	out := contacts[:0:0]
	for _, ct := range contacts {
		var u sip.Uri
		key := ct
		if sip.ParseUri(ct, &u) == nil {
			tp, _ := u.UriParams.Get("transport")
			key = strings.ToLower(u.Host) + ":" + strconv.Itoa(u.Port) + ";" + strings.ToLower(tp)
		}
		if !seen[key] {
			seen[key] = true
			out = append(out, ct)
		}
	}
	return out
}

// routeLCR picks gateways by longest matching prefix, then priority, and
// relays to the first; the failure route tries the others. Only trusted
// peers and authenticated users get here (request); the check below keeps
// it so if the route changes.
func (p *Proxy) routeLCR(c *tm.Context) {
	if authenticatedUser(c) == "" && !p.trust.has(c.Source()) {
		p.security(c, evRefused, "", "call to a gateway without authentication")
		_ = c.Reply(403, "Forbidden")
		return
	}
	user := c.Recipient().User
	s := p.store
	q := s.h.Query(s.q(`SELECT address FROM gateway WHERE ? LIKE prefix || '%'
		ORDER BY length(prefix) DESC, priority, id LIMIT 8`), user)
	async.Await(c, q, func(rows *db.Rows, err error) {
		if err != nil {
			_ = c.Reply(503, "Service Unavailable", sip.NewHeader("Retry-After", "5"))
			return
		}
		if rows.Len() == 0 {
			_ = c.Reply(404, "Not Found")
			return
		}
		gws := make([]string, 0, rows.Len())
		for _, r := range rows.All() {
			gws = append(gws, r.String(0))
		}
		p.toGateways(c, gws)
	}, async.Timeout(p.cfg.DBTimeout), async.Name("lcr.lookup"))
}

// tryGateway relays to gws[0] and remembers the rest for the failure route;
// a gateway that cannot be relayed to is skipped.
func (p *Proxy) tryGateway(c *tm.Context, gws []string) {
	if len(gws) == 0 {
		_ = c.Reply(503, "Service Unavailable")
		return
	}
	gw := gws[0]
	c.Set("gateways", gws[1:])
	c.SetBranchTimeout(p.cfg.GWTimeout) // a silent gateway is left after gw_timeout
	p.relay(c, []string{"sip:" + c.Recipient().User + "@" + gw}, func(err error) {
		if errors.Is(err, tm.ErrCancelled) {
			return // cancelled: tm answers 487
		}
		c.Logger().Warn("gateway unusable", "gateway", gw, "err", err)
		p.tryGateway(c, gws[1:])
	})
}

// failure is the failure route: on 5xx or 408 from a gateway, try the next
// one (serial forking). Anything else goes upstream as it is.
func (p *Proxy) failure(c *tm.Context) {
	code := c.Resp.StatusCode
	if c.Cancelled() || (code < 500 && code != 408) {
		return
	}
	if gws, ok := tm.Value[[]string](c, "gateways"); ok && len(gws) > 0 {
		p.tryGateway(c, gws)
	}
}
