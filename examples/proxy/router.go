package main

import (
	"errors"
	"log/slog"
	"net/url"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/asyncsip/asyncsip/async"
	"github.com/asyncsip/asyncsip/modules/auth"
	"github.com/asyncsip/asyncsip/modules/db"
	"github.com/asyncsip/asyncsip/modules/rest"
	"github.com/asyncsip/asyncsip/tm"
)

// Proxy holds what the routes need. Its routes are plain functions of a
// *tm.Context, so they run the same in the server and in siptest.
type Proxy struct {
	cfg   Config
	store *Store
	ch    *auth.Challenger
	rest  *rest.Client // nil without a REST hook
	log   *slog.Logger // one line per transaction and registration change (logging.go)
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
	return tm.Routes{Request: p.request, Failure: p.failure, End: p.logEnd}
}

// request is the request route.
func (p *Proxy) request(c *tm.Context) {
	req := c.Req
	if c.InDialog() {
		// In-dialog requests follow their Route set (tm already removed
		// our own Route entry); an ACK is forwarded statelessly.
		// A failure is answered by tm (481 for a request addressed to us
		// without a Route, 503 for no route).
		_ = c.Relay()
		return
	}
	switch req.Method {
	case sip.REGISTER:
		p.register(c)
		return
	case sip.ACK:
		c.Drop() // an ACK outside any dialog or transaction: nothing to do
		return
	case sip.OPTIONS:
		if req.Recipient.User == "" {
			_ = c.Reply(200, "OK", sip.NewHeader("Allow", "INVITE, ACK, CANCEL, BYE, OPTIONS, REGISTER, MESSAGE"))
			return
		}
	}
	if p.rest != nil && req.Method == sip.INVITE {
		p.restHook(c)
		return
	}
	p.routeToUser(c)
}

// restHook asks the HTTP API about a new call: allow (go on), deny (reply
// its code), or route to its target. On error or timeout the call goes on
// by the database route when FailOpen is set, else gets 503.
func (p *Proxy) restHook(c *tm.Context) {
	q := url.Values{}
	q.Set("from", c.Req.From().Address.User)
	q.Set("to", c.Req.Recipient.User)
	q.Set("call_id", string(*c.Req.CallID()))
	op := rest.JSON[Decision](p.rest.Get(p.cfg.RESTHook + "?" + q.Encode()))
	async.Await(c, op, func(d Decision, err error) {
		if err != nil {
			c.Logger().Warn("rest hook failed", "err", err, "fail_open", p.cfg.FailOpen)
			if p.cfg.FailOpen {
				p.routeToUser(c)
				return
			}
			_ = c.Reply(503, "Service Unavailable", sip.NewHeader("Retry-After", "5"))
			return
		}
		switch d.Action {
		case "deny":
			code := d.Code
			if code < 400 || code > 699 {
				code = 403
			}
			_ = c.Reply(code, d.Reason)
		case "route":
			if err := c.Relay(d.Target); err != nil {
				_ = c.Reply(500, "Bad Route From Hook")
			}
		default:
			p.routeToUser(c)
		}
	}, async.Timeout(p.cfg.RESTTimeout), async.Name("rest.hook"))
}

// routeToUser sends the request to every registered contact of the
// Request-URI user (parallel forking); a subscriber with no binding is
// offline (480); anyone else is a number for a gateway.
func (p *Proxy) routeToUser(c *tm.Context) {
	user := c.Req.Recipient.User
	s := p.store
	// One row per live binding of a subscriber, one row with an empty
	// contact for a subscriber without any, no row for a non-subscriber.
	q := s.h.Query(s.q(`SELECT COALESCE(l.contact, '') FROM subscriber s
		LEFT JOIN location l ON l.username = s.username AND l.expires_at > ?
		WHERE s.username = ? ORDER BY l.contact`), time.Now().Unix(), user)
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
		targets := make([]string, 0, rows.Len())
		for _, r := range rows.All() {
			targets = append(targets, r.String(0))
		}
		if err := c.Relay(targets...); err != nil {
			_ = c.Reply(480, "Temporarily Unavailable")
		}
	}, async.Timeout(p.cfg.DBTimeout), async.Name("location.lookup"))
}

// routeLCR picks gateways by longest matching prefix, then priority, and
// relays to the first; the failure route tries the others.
func (p *Proxy) routeLCR(c *tm.Context) {
	user := c.Req.Recipient.User
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
		p.tryGateway(c, gws)
	}, async.Timeout(p.cfg.DBTimeout), async.Name("lcr.lookup"))
}

// tryGateway relays to gws[0] and remembers the rest for the failure route.
func (p *Proxy) tryGateway(c *tm.Context, gws []string) {
	for len(gws) > 0 {
		gw := gws[0]
		gws = gws[1:]
		c.Set("gateways", gws)
		c.SetBranchTimeout(p.cfg.GWTimeout) // a silent gateway is left after gw_timeout
		err := c.Relay("sip:" + c.Req.Recipient.User + "@" + gw)
		if err == nil || errors.Is(err, tm.ErrCancelled) {
			return // relayed, or cancelled: tm answers 487
		}
		c.Logger().Warn("gateway unusable", "gateway", gw, "err", err)
	}
	_ = c.Reply(503, "Service Unavailable")
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
