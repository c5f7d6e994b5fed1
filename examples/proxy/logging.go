package main

import (
	"context"
	"database/sql"
	"log/slog"
	"strconv"
	"strings"

	"github.com/asyncsip/asyncsip/tm"
)

// logEnd is the End route: one info line per transaction, once its final
// response has gone upstream (or the request was dropped, code 0) —
// except for requests dropped for a security reason (quietDrop).
func (p *Proxy) logEnd(c *tm.Context) {
	if quiet, _ := tm.Value[bool](c, quietKey); quiet {
		return
	}
	req := c.Req()
	targets := make([]string, 0, len(c.Branches()))
	for _, b := range c.Branches() {
		t := b.Req().Recipient.String()
		if code := b.Code(); code != 0 {
			t += "=" + strconv.Itoa(code)
		}
		targets = append(targets, t)
	}
	p.logger().LogAttrs(context.Background(), slog.LevelInfo, "transaction",
		slog.String("call_id", string(*req.CallID())),
		slog.String("method", string(req.Method)),
		slog.String("from", req.From().Address.String()),
		slog.String("to", req.To().Address.String()),
		slog.String("source", c.Source().String()),
		slog.Int("code", c.FinalCode()),
		slog.Duration("duration", c.Elapsed()),
		slog.String("branches", strings.Join(targets, " ")),
	)
}

// logger is the proxy's logger, slog.Default() when none was set.
func (p *Proxy) logger() *slog.Logger {
	if p.log == nil {
		return slog.Default()
	}
	return p.log
}

// Registration changes, as logged by logBinding.
const (
	bindingAdded     = "added"
	bindingRefreshed = "refreshed"
	bindingRemoved   = "removed"
)

// bindingChange is one binding a REGISTER added, refreshed or removed.
type bindingChange struct {
	event   string
	contact string
	expires int
}

// logBindings writes one info line per registration change.
func (p *Proxy) logBindings(c *tm.Context, user string, changes []bindingChange) {
	for _, ch := range changes {
		p.logger().LogAttrs(context.Background(), slog.LevelInfo, "registration",
			slog.String("event", ch.event),
			slog.String("user", user),
			slog.String("contact", ch.contact),
			slog.Int("expires", ch.expires),
			slog.String("source", c.Source().String()),
		)
	}
}

// bindingChanges tells, before a REGISTER is applied in tx, which bindings
// it adds, refreshes or removes.
func bindingChanges(ctx context.Context, tx *sql.Tx, s *Store, user string, binds []binding, wildcard bool, now int64) ([]bindingChange, error) {
	rows, err := tx.QueryContext(ctx, s.q(`SELECT contact FROM location WHERE username = ? AND expires_at > ?`), user, now)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	live := map[string]bool{}
	for rows.Next() && len(live) < 256 {
		var contact string
		if err := rows.Scan(&contact); err != nil {
			return nil, err
		}
		live[contact] = true
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	var out []bindingChange
	if wildcard {
		for contact := range live {
			out = append(out, bindingChange{bindingRemoved, contact, 0})
		}
		return out, nil
	}
	for _, b := range binds {
		switch {
		case b.expires == 0 && live[b.contact]:
			out = append(out, bindingChange{bindingRemoved, b.contact, 0})
		case b.expires == 0:
		case live[b.contact]:
			out = append(out, bindingChange{bindingRefreshed, b.contact, b.expires})
		default:
			out = append(out, bindingChange{bindingAdded, b.contact, b.expires})
		}
	}
	return out, nil
}
