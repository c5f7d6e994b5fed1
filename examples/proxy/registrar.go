package main

import (
	"context"
	"errors"
	"strconv"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/asyncsip/asyncsip/async"
	"github.com/asyncsip/asyncsip/modules/auth"
	"github.com/asyncsip/asyncsip/modules/db"
	"github.com/asyncsip/asyncsip/tm"
)

// Registrar limits (RFC 3261 §10.3).
const (
	minExpires     = 60
	maxExpires     = 3600
	defaultExpires = 3600
)

// binding is one contact to save (expires 0 removes it).
type binding struct {
	contact string
	expires int
}

// register authenticates a REGISTER (digest, RFC 3261 §22 / RFC 8760) with
// an async credential lookup, then saves its bindings with a second await.
func (p *Proxy) register(c *tm.Context) {
	src := c.Source().Addr()
	a, ok, err := auth.NewAttempt(c.Req, src, false, p.ch.Realm)
	if !ok || err != nil {
		_ = c.Reply(401, "Unauthorized", p.ch.Challenge(src, false, false)...)
		return
	}
	user := c.Req.To().Address.User
	if a.Username != user {
		_ = c.Reply(403, "Forbidden (username does not match the To user)")
		return
	}
	binds, wildcard, code, reason := parseBindings(c.Req)
	if code != 0 {
		hdrs := []sip.Header{}
		if code == 423 {
			hdrs = append(hdrs, sip.NewHeader("Min-Expires", strconv.Itoa(minExpires)))
		}
		_ = c.Reply(code, reason, hdrs...)
		return
	}
	if res, err := p.ch.Check(a); err != nil { // banned, stale, forged…: no lookup
		p.authFailed(c, res)
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
			c.Logger().Warn("registrar: credential lookup failed", "err", err)
			_ = c.Reply(503, "Service Unavailable", sip.NewHeader("Retry-After", "5"))
			return
		default:
			ha1 = row.String(0)
		}
		if res, err := p.ch.Verify(a, ha1); err != nil {
			p.authFailed(c, res)
			return
		}
		p.saveBindings(c, user, binds, wildcard)
	}, async.Timeout(p.cfg.DBTimeout), async.Name("registrar.auth"))
}

// authFailed gives the response auth asks for: a stale challenge, 403, or
// nothing to a banned source or user.
func (p *Proxy) authFailed(c *tm.Context, res auth.Result) {
	switch res.Action {
	case auth.Challenge, auth.ChallengeStale:
		_ = c.Reply(401, "Unauthorized", p.ch.Challenge(c.Source().Addr(), false, res.Stale())...)
	case auth.Drop:
		c.Drop()
	default:
		_ = c.Reply(403, "Forbidden")
	}
}

// parseBindings reads the Contacts and their expiry. A non-zero code is the
// error response to send.
func parseBindings(req *sip.Request) (out []binding, wildcard bool, code int, reason string) {
	def := defaultExpires
	if h := req.GetHeader("Expires"); h != nil {
		n, err := strconv.Atoi(h.Value())
		if err != nil || n < 0 {
			return nil, false, 400, "Bad Request (Expires)"
		}
		def = n
	}
	for _, h := range req.GetHeaders("Contact") {
		ch, ok := h.(*sip.ContactHeader)
		if !ok {
			return nil, false, 400, "Bad Request (Contact)"
		}
		if ch.Address.Wildcard {
			wildcard = true
			continue
		}
		exp := def
		if v, ok := ch.Params.Get("expires"); ok {
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 {
				return nil, false, 400, "Bad Request (Contact expires)"
			}
			exp = n
		}
		if exp > 0 && exp < minExpires {
			return nil, false, 423, "Interval Too Brief"
		}
		out = append(out, binding{contact: ch.Address.String(), expires: min(exp, maxExpires)})
	}
	// RFC 3261 §10.3 step 6: "*" only alone and with Expires: 0.
	if wildcard && (len(out) > 0 || def != 0) {
		return nil, false, 400, "Bad Request (wildcard Contact)"
	}
	return out, wildcard, 0, ""
}

// saveBindings applies the bindings in one database transaction (an op on
// the async pool) and answers 200 with every current binding.
func (p *Proxy) saveBindings(c *tm.Context, user string, binds []binding, wildcard bool) {
	callID := string(*c.Req.CallID())
	cseq := int64(c.Req.CSeq().SeqNo)
	s := p.store
	var changes []bindingChange // written by the op, read after it (the await orders them)
	save := async.Blocking(func(ctx context.Context) ([]binding, error) {
		tx, err := s.h.DB().BeginTx(ctx, nil)
		if err != nil {
			return nil, err
		}
		defer tx.Rollback()
		now := time.Now().Unix()
		if changes, err = bindingChanges(ctx, tx, s, user, binds, wildcard, now); err != nil {
			return nil, err
		}
		if wildcard {
			if _, err := tx.ExecContext(ctx, s.q(`DELETE FROM location WHERE username = ?`), user); err != nil {
				return nil, err
			}
		}
		for _, b := range binds {
			var err error
			if b.expires == 0 {
				_, err = tx.ExecContext(ctx, s.q(`DELETE FROM location WHERE username = ? AND contact = ?`), user, b.contact)
			} else {
				_, err = tx.ExecContext(ctx, s.q(`INSERT INTO location (username, contact, expires_at, call_id, cseq)
					VALUES (?, ?, ?, ?, ?) ON CONFLICT (username, contact) DO UPDATE
					SET expires_at = excluded.expires_at, call_id = excluded.call_id, cseq = excluded.cseq`),
					user, b.contact, now+int64(b.expires), callID, cseq)
			}
			if err != nil {
				return nil, err
			}
		}
		rows, err := tx.QueryContext(ctx, s.q(`SELECT contact, expires_at FROM location
			WHERE username = ? AND expires_at > ? ORDER BY contact`), user, now)
		if err != nil {
			return nil, err
		}
		defer rows.Close()
		var cur []binding
		for rows.Next() && len(cur) < 64 {
			var b binding
			var at int64
			if err := rows.Scan(&b.contact, &at); err != nil {
				return nil, err
			}
			b.expires = int(at - now)
			cur = append(cur, b)
		}
		if err := rows.Err(); err != nil {
			return nil, err
		}
		return cur, tx.Commit()
	}, async.Name("registrar.save"))
	async.Await(c, save, func(cur []binding, err error) {
		if err != nil {
			c.Logger().Warn("registrar: saving bindings failed", "err", err)
			_ = c.Reply(503, "Service Unavailable", sip.NewHeader("Retry-After", "5"))
			return
		}
		p.logBindings(c, user, changes)
		hdrs := make([]sip.Header, 0, len(cur))
		for _, b := range cur {
			hdrs = append(hdrs, sip.NewHeader("Contact", "<"+b.contact+">;expires="+strconv.Itoa(b.expires)))
		}
		_ = c.Reply(200, "OK", hdrs...)
	}, async.Timeout(p.cfg.DBTimeout))
}

// expireBindings is the timer job that deletes expired bindings.
func (p *Proxy) expireBindings(now time.Time) async.Op[db.Result] {
	return p.store.h.Exec(p.store.q(`DELETE FROM location WHERE expires_at <= ?`), now.Unix())
}
