package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/asyncsip/asyncsip/async"
	"github.com/asyncsip/asyncsip/modules/db"
	"github.com/asyncsip/asyncsip/modules/nat"
	"github.com/asyncsip/asyncsip/reactor"
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
	natted  bool // the UA is behind a NAT (nat.FixURI)
}

// register authenticates a REGISTER (digest, RFC 3261 §22 / RFC 8760) with
// an async credential lookup, then saves its bindings with a second await.
// Every REGISTER is challenged, from trusted peers too.
func (p *Proxy) register(c *tm.Context) {
	a, ok := p.credentials(c, false)
	if !ok {
		return
	}
	user := c.Req().To().Address.User
	if a.Username != user {
		_ = c.Reply(403, "Forbidden (username does not match the To user)")
		return
	}
	binds, wildcard, code, reason := p.parseBindings(c)
	if code != 0 {
		hdrs := []sip.Header{}
		if code == 423 {
			hdrs = append(hdrs, sip.NewHeader("Min-Expires", strconv.Itoa(minExpires)))
		}
		_ = c.Reply(code, reason, hdrs...)
		return
	}
	p.verify(c, a, false, func(user string) {
		if n := liveContacts(binds); n > p.cfg.MaxContacts {
			p.contactCap(c, user, n)
			return
		}
		p.saveBindings(c, user, binds, wildcard)
	})
}

// liveContacts counts the distinct contacts a REGISTER adds or refreshes.
func liveContacts(binds []binding) int {
	seen := make(map[string]bool, len(binds))
	for _, b := range binds {
		if b.expires > 0 {
			seen[b.contact] = true
		}
	}
	return len(seen)
}

// contactCapError: the REGISTER would leave the user with live bindings
// more than max_contacts; nothing of it was stored.
type contactCapError struct{ live int }

func (e contactCapError) Error() string { return fmt.Sprintf("%d contacts", e.live) }

// contactCap refuses a REGISTER that would exceed max_contacts.
func (p *Proxy) contactCap(c *tm.Context, user string, n int) {
	reason := fmt.Sprintf("Forbidden (more than %d contacts for this user)", p.cfg.MaxContacts)
	p.security(c, evContactCap, user, fmt.Sprintf("%d contacts, max_contacts %d", n, p.cfg.MaxContacts))
	_ = c.Reply(403, reason)
}

// parseBindings reads the Contacts and their expiry. A non-zero code is the
// error response to send. With nat_fix, the Contact of a UA behind a NAT is
// stored rewritten to the source address and port (nat.FixURI): a call then
// reaches the UA through its NAT binding, and the UA's de-registration from
// the same binding removes the same contact. The 200 lists the stored
// (fixed) contacts.
func (p *Proxy) parseBindings(c *tm.Context) (out []binding, wildcard bool, code int, reason string) {
	req := c.Req()
	var transport string
	if v := req.Via(); v != nil {
		transport = v.Transport
	}
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
		u := &ch.Address
		fixed, natted := nat.FixURI(u, c.Source(), transport)
		if p.cfg.NATFix {
			u = fixed
		}
		out = append(out, binding{contact: u.String(), expires: min(exp, maxExpires), natted: natted})
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
	if p.loc != nil {
		p.saveShared(c, user, binds, wildcard)
		return
	}
	callID := c.CallID()
	cseq := int64(c.Req().CSeq().SeqNo)
	s := p.store
	maxContacts := p.cfg.MaxContacts
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
		if s.pg {
			// Serialise the REGISTERs of one user, so that two at once
			// cannot both pass the contact cap (SQLite has one writer).
			if _, err := tx.ExecContext(ctx, s.q(`SELECT username FROM subscriber WHERE username = ? FOR UPDATE`), user); err != nil {
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
		var live int
		if err := tx.QueryRowContext(ctx, s.q(`SELECT count(*) FROM location WHERE username = ? AND expires_at > ?`),
			user, now).Scan(&live); err != nil {
			return nil, err
		}
		if live > maxContacts {
			return nil, contactCapError{live} // rolled back: nothing stored
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
		var capErr contactCapError
		if errors.As(err, &capErr) {
			p.contactCap(c, user, capErr.live)
			return
		}
		if err != nil {
			c.Logger().Warn("registrar: saving bindings failed", "err", err)
			_ = c.Reply(503, "Service Unavailable", sip.NewHeader("Retry-After", "5"))
			return
		}
		p.logBindings(c, user, changes)
		p.keepAlive(c, user, binds, changes)
		p.noteBindings(binds)
		hdrs := make([]sip.Header, 0, len(cur))
		for _, b := range cur {
			hdrs = append(hdrs, sip.NewHeader("Contact", "<"+b.contact+">;expires="+strconv.Itoa(b.expires)))
		}
		_ = c.Reply(200, "OK", hdrs...)
	}, async.Timeout(p.cfg.DBTimeout))
}

// natKey is the nat.Pinger key of a user's binding.
func natKey(user, contact string) string { return user + " " + contact }

// keepAlive keeps the Pinger in step with a REGISTER that was saved:
// removed bindings leave it, bindings of a UA behind a NAT join it (a
// refresh moves their expiry and source on).
func (p *Proxy) keepAlive(c *tm.Context, user string, binds []binding, changes []bindingChange) {
	if p.nat == nil {
		return
	}
	for _, ch := range changes {
		if ch.event == bindingRemoved {
			p.nat.Remove(natKey(user, ch.contact))
		}
	}
	for _, b := range binds {
		if !b.natted || b.expires == 0 {
			continue
		}
		err := p.nat.Add(nat.Binding{Key: natKey(user, b.contact), Contact: b.contact, Addr: c.Source(),
			Expires: time.Now().Add(time.Duration(b.expires) * time.Second)})
		if err != nil {
			c.Logger().Warn("nat keep-alive: binding not added", "user", user, "contact", b.contact, "err", err)
		}
	}
}

// natGone removes, on a loop of g, a binding whose UA stopped answering
// the keep-alives (nat.Config.OnGone).
func (p *Proxy) natGone(g *reactor.Group) func(nat.Binding) {
	return func(b nat.Binding) {
		user, contact, _ := strings.Cut(b.Key, " ")
		l := g.Least()
		if p.loc != nil {
			_ = l.Post(func() {
				async.Launch(l, p.loc.Remove(user, contact), func(removed bool, err error) {
					if err != nil {
						p.logger().Warn("nat keep-alive: removing a silent binding failed", "user", user, "contact", contact, "err", err)
						return
					}
					p.logger().Info("registration", "event", "unreachable", "user", user, "contact", contact,
						"source", b.Addr.String(), "removed", removed)
				}, async.Timeout(p.cfg.DBTimeout))
			})
			return
		}
		_ = l.Post(func() {
			op := p.store.h.Exec(p.store.q(`DELETE FROM location WHERE username = ? AND contact = ?`), user, contact)
			async.Launch(l, op, func(r db.Result, err error) {
				if err != nil {
					p.logger().Warn("nat keep-alive: removing a silent binding failed", "user", user, "contact", contact, "err", err)
					return
				}
				p.logger().Info("registration", "event", "unreachable", "user", user, "contact", contact,
					"source", b.Addr.String(), "removed", r.RowsAffected)
			})
		})
	}
}

// expireBindings is the timer job that deletes expired bindings.
func (p *Proxy) expireBindings(now time.Time) async.Op[db.Result] {
	return p.store.h.Exec(p.store.q(`DELETE FROM location WHERE expires_at <= ?`), now.Unix())
}
