package main

// Scale-out: the state several proxy instances share (docs/SCALING.md).
// With -location redis://… the bindings live in Redis; with -shared
// redis://… the calls to the gateways (-trunk-calls), the request rate per
// source and the digest nonce-counts are counted over every instance. The
// subscribers and gateways stay in the database (SQLite, or PostgreSQL
// shared by the instances).

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/asyncsip/asyncsip/async"
	"github.com/asyncsip/asyncsip/modules/db"
	"github.com/asyncsip/asyncsip/modules/dialog"
	"github.com/asyncsip/asyncsip/modules/redis"
	"github.com/asyncsip/asyncsip/modules/shared"
	"github.com/asyncsip/asyncsip/modules/shared/sharedredis"
	"github.com/asyncsip/asyncsip/reactor"
	"github.com/asyncsip/asyncsip/tm"
)

// Shared-state timing: the heartbeat of this instance's call counts and
// how long they outlive it (a killed instance's calls stop counting after
// sharedTTL).
const (
	sharedSync = time.Second
	sharedTTL  = 5 * time.Second
)

// checkRedisURL checks a -location or -shared value.
func checkRedisURL(name, s string) error {
	if s == "" {
		return nil
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "redis" && u.Scheme != "rediss") || u.Host == "" {
		return fmt.Errorf("%s: %q is not a redis://host:port URL", name, redact(s))
	}
	return nil
}

// scale is what the proxy shares with other instances; zero when nothing.
type scale struct {
	clients []*redis.Client
	loc     shared.Location // nil: bindings in the database
	store   *sharedredis.Store
}

// openScale opens the Redis clients -location and -shared name (one client
// when both name the same server).
func openScale(cfg Config) (*scale, error) {
	s := &scale{}
	byURL := map[string]*redis.Client{}
	open := func(u string) (*redis.Client, error) {
		if c := byURL[u]; c != nil {
			return c, nil
		}
		c, err := redis.Open(u, redis.Timeout(cfg.DBTimeout))
		if err != nil {
			return nil, err
		}
		byURL[u] = c
		s.clients = append(s.clients, c)
		return c, nil
	}
	opts := sharedredis.Options{Instance: cfg.Instance, TTL: sharedTTL}
	if cfg.Location != "" {
		c, err := open(cfg.Location)
		if err != nil {
			s.close()
			return nil, fmt.Errorf("location: %w", err)
		}
		s.loc = sharedredis.New(c, opts).Location()
	}
	if cfg.Shared != "" {
		c, err := open(cfg.Shared)
		if err != nil {
			s.close()
			return nil, fmt.Errorf("shared: %w", err)
		}
		s.store = sharedredis.New(c, opts)
	}
	return s, nil
}

func (s *scale) close() {
	if s == nil {
		return
	}
	for _, c := range s.clients {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_ = c.Close(ctx)
		cancel()
	}
}

// newTracker is the dialog tracker that counts the calls to the gateways
// (-trunk-calls), over every instance with -shared. By default a call goes
// on when Redis fails, limited by this instance's own count.
func newTracker(cfg Config, sc *scale, p *Proxy) *dialog.Tracker {
	if cfg.TrunkCalls == 0 {
		return nil
	}
	dc := dialog.Config{Logger: p.log, CounterTimeout: min(cfg.DBTimeout, 500*time.Millisecond), CounterSync: sharedSync}
	if sc.store != nil {
		dc.Counter = sc.store.Counter()
	}
	return dialog.New(dc)
}

// trunkOptions counts a call in the gateways' profile.
func (p *Proxy) trunkOptions() dialog.Options {
	return dialog.Options{Profiles: []dialog.ProfileValue{{Profile: "trunk", Value: "gateways", Limit: p.cfg.TrunkCalls}}}
}

// toGateways relays a new call to gws once the trunk has room for it.
func (p *Proxy) toGateways(c *tm.Context, gws []string) {
	if p.dlg == nil || c.Method() != sip.INVITE {
		p.tryGateway(c, gws)
		return
	}
	p.dlg.TrackShared(c, p.trunkOptions(), func(err error) {
		if err != nil {
			reason := "Service Unavailable (trunk busy)"
			if !errors.Is(err, dialog.ErrLimit) {
				reason = "Service Unavailable"
				c.Logger().Warn("trunk: call not tracked", "err", err)
			}
			_ = c.Reply(503, reason, sip.NewHeader("Retry-After", "5"))
			return
		}
		p.tryGateway(c, gws)
	})
}

// saveShared is saveBindings on the shared location: one atomic step in
// Redis (the cap included); Redis down or slow gives 503 within
// db_timeout.
func (p *Proxy) saveShared(c *tm.Context, user string, binds []binding, wildcard bool) {
	callID := c.CallID()
	cseq := int64(c.Req().CSeq().SeqNo)
	now := time.Now()
	sb := make([]shared.Binding, 0, len(binds))
	for _, b := range binds {
		var exp time.Time
		if b.expires > 0 {
			exp = now.Add(time.Duration(b.expires) * time.Second)
		}
		sb = append(sb, shared.Binding{Contact: b.contact, Expires: exp, CallID: callID, CSeq: cseq})
	}
	async.Await(c, p.loc.Save(user, sb, wildcard, p.cfg.MaxContacts, now), func(s shared.Saved, err error) {
		var tooMany *shared.TooManyError
		if errors.As(err, &tooMany) {
			p.contactCap(c, user, tooMany.Live)
			return
		}
		if err != nil {
			c.Logger().Warn("registrar: saving bindings failed", "err", err)
			_ = c.Reply(503, "Service Unavailable", sip.NewHeader("Retry-After", "5"))
			return
		}
		changes := sharedChanges(s.Before, binds, wildcard)
		p.logBindings(c, user, changes)
		p.keepAlive(c, user, binds, changes)
		hdrs := make([]sip.Header, 0, len(s.After))
		for _, b := range s.After {
			if len(hdrs) == 64 {
				break
			}
			left := int(b.Expires.Sub(now) / time.Second)
			hdrs = append(hdrs, sip.NewHeader("Contact", "<"+b.Contact+">;expires="+strconv.Itoa(left)))
		}
		_ = c.Reply(200, "OK", hdrs...)
	}, async.Timeout(p.cfg.DBTimeout), async.Name("registrar.save"))
}

// sharedChanges is bindingChanges for the shared location: what a
// REGISTER did, from the live bindings before it.
func sharedChanges(before []shared.Binding, binds []binding, wildcard bool) []bindingChange {
	live := make(map[string]bool, len(before))
	for _, b := range before {
		live[b.Contact] = true
	}
	var out []bindingChange
	if wildcard {
		for _, b := range before {
			out = append(out, bindingChange{bindingRemoved, b.Contact, 0})
		}
		return out
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
	return out
}

// routeShared is routeToUser on the shared location: the user's bindings
// from Redis; without any, the database says whether the user is a
// subscriber (offline: 480, or 503 when Redis failed) or a number for a
// gateway (routed also while Redis is down).
func (p *Proxy) routeShared(c *tm.Context) {
	user := c.Recipient().User
	async.Await(c, p.loc.Lookup(user, p.cfg.MaxFork, time.Now()), func(bs []shared.Binding, err error) {
		if err != nil {
			// Redis down or slow: a subscriber gets 503 below, a number
			// still goes to the gateways.
			c.Logger().Warn("location lookup failed", "err", err)
		}
		if len(bs) > 0 {
			contacts := make([]string, 0, len(bs))
			for _, b := range bs {
				contacts = append(contacts, b.Contact)
			}
			if err := c.Relay(oneBranchPerHop(contacts)...); err != nil {
				_ = c.Reply(480, "Temporarily Unavailable")
			}
			return
		}
		lookupErr := err
		s := p.store
		q := s.h.QueryRow(s.q(`SELECT username FROM subscriber WHERE username = ?`), user)
		async.Await(c, q, func(_ db.Row, err error) {
			switch {
			case errors.Is(err, db.ErrNoRows):
				p.routeLCR(c)
			case err != nil, lookupErr != nil:
				_ = c.Reply(503, "Service Unavailable", sip.NewHeader("Retry-After", "5"))
			default:
				_ = c.Reply(480, "Temporarily Unavailable")
			}
		}, async.Timeout(p.cfg.DBTimeout), async.Name("subscriber.lookup"))
	}, async.Timeout(p.cfg.DBTimeout), async.Name("location.lookup"))
}

// startShared starts the jobs of -shared: the heartbeat of this
// instance's trunk calls and the exchange of the request rates.
func (p *Proxy) startShared(g *reactor.Group) (stop func(), err error) {
	var jobs []*reactor.Job
	stop = func() {
		for _, j := range jobs {
			j.Stop()
		}
	}
	if p.scale == nil || p.scale.store == nil {
		return stop, nil
	}
	if p.dlg != nil {
		j, err := p.dlg.StartShared(g)
		if err != nil {
			return stop, err
		}
		jobs = append(jobs, j)
	}
	if p.rl != nil {
		j, err := p.rl.StartShared(g)
		if err != nil {
			stop()
			return func() {}, err
		}
		jobs = append(jobs, j)
	}
	return stop, nil
}
