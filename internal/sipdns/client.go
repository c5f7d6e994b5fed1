package sipdns

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	mdns "github.com/miekg/dns"
)

// networkQuerier answers from the cache, else asks the servers (one query
// per name and type in flight at a time, shared by every resolution).
type networkQuerier struct{ r *Resolver }

func (q networkQuerier) query(ctx context.Context, name string, qtype uint16) ([]mdns.RR, time.Duration, error) {
	r := q.r
	k := cacheKey{canonical(name), qtype}
	now := r.cfg.Now()
	if e, ok := r.cache.get(k, now); ok {
		r.observeCache(qtype, true)
		return e.rrs, e.expires.Sub(now), e.err
	}
	r.observeCache(qtype, false)
	r.mu.Lock()
	f, joined := r.flights[k]
	if !joined {
		// A flight may have ended (its answer cached, then the flight
		// removed) since the miss above: look again before asking.
		if e, ok := r.cache.get(k, now); ok {
			r.mu.Unlock()
			return e.rrs, e.expires.Sub(now), e.err
		}
		f = &flight{done: make(chan struct{})}
		r.flights[k] = f
	}
	r.mu.Unlock()
	if joined {
		select {
		case <-f.done:
			if fatal(f.err) && ctx.Err() == nil {
				return q.query(ctx, name, qtype) // the asker was cancelled, not us
			}
			return f.rrs, f.ttl, f.err
		case <-ctx.Done():
			return nil, 0, ctx.Err()
		}
	}
	f.rrs, f.ttl, f.err = r.exchange(ctx, k)
	r.mu.Lock()
	delete(r.flights, k)
	r.mu.Unlock()
	close(f.done)
	return f.rrs, f.ttl, f.err
}

// exchange asks the servers in turn, Attempts rounds, and caches the
// answer (negative ones too; failures and timeouts are not cached).
func (r *Resolver) exchange(ctx context.Context, k cacheKey) ([]mdns.RR, time.Duration, error) {
	start := time.Now()
	m := new(mdns.Msg)
	m.SetQuestion(k.name+".", k.qtype)
	m.SetEdns0(4096, false)
	var last error
	for range r.cfg.Attempts {
		for _, srv := range r.servers {
			if err := ctx.Err(); err != nil {
				r.observeQuery(k.qtype, time.Since(start), err)
				return nil, 0, err
			}
			resp, err := r.ask(ctx, m, srv)
			if err != nil {
				last = err
				continue
			}
			rrs, ttl, err := r.answer(k, resp)
			if errors.Is(err, ErrServFail) {
				last = err
				continue
			}
			r.observeQuery(k.qtype, time.Since(start), err)
			return rrs, ttl, err
		}
	}
	r.observeQuery(k.qtype, time.Since(start), last)
	return nil, 0, fmt.Errorf("dns: %s %s: %w", k.name, mdns.TypeToString[k.qtype], last)
}

// ask sends m to one server over UDP (TCP when the answer is truncated).
func (r *Resolver) ask(ctx context.Context, m *mdns.Msg, srv string) (*mdns.Msg, error) {
	cctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
	defer cancel()
	resp, err := exchange(cctx, r.client, m, srv)
	if err == nil && resp.Truncated {
		resp, err = exchange(cctx, r.tcpClient, m, srv)
	}
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, context.DeadlineExceeded) {
			return nil, fmt.Errorf("%w: %s: %v", ErrTimeout, srv, err)
		}
		return nil, fmt.Errorf("%w: %s: %v", ErrServFail, srv, err)
	}
	if resp.Id != m.Id {
		return nil, fmt.Errorf("%w: %s: answer id mismatch", ErrServFail, srv)
	}
	return resp, nil
}

// exchange is one query on its own connection. miekg/dns takes only the
// context's deadline, so a cancellation (the await timed out, the resolver
// closed) is turned into an expired deadline on the connection: the read
// returns at once and the pool worker is free.
func exchange(ctx context.Context, c *mdns.Client, m *mdns.Msg, srv string) (*mdns.Msg, error) {
	conn, err := c.DialContext(ctx, srv)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	resp, _, err := c.ExchangeWithConnContext(ctx, m, conn)
	return resp, err
}

// answer turns a response into records or a (cached) negative answer.
func (r *Resolver) answer(k cacheKey, resp *mdns.Msg) ([]mdns.RR, time.Duration, error) {
	switch resp.Rcode {
	case mdns.RcodeSuccess:
	case mdns.RcodeNameError:
		err := fmt.Errorf("%w: %s", ErrNXDomain, k.name)
		return nil, r.storeNegative(k, resp, err), err
	default:
		return nil, 0, fmt.Errorf("%w: %s %s: rcode %s", ErrServFail, k.name,
			mdns.TypeToString[k.qtype], mdns.RcodeToString[resp.Rcode])
	}
	var rrs []mdns.RR
	ttl := time.Duration(-1)
	for _, rr := range resp.Answer { // CNAME chains end in records of k.qtype
		if rr.Header().Rrtype == k.qtype {
			rrs = append(rrs, rr)
			ttl = minTTL(ttl, time.Duration(rr.Header().Ttl)*time.Second)
		}
	}
	if len(rrs) == 0 {
		err := fmt.Errorf("%w: %s %s", ErrNoRecords, k.name, mdns.TypeToString[k.qtype])
		return nil, r.storeNegative(k, resp, err), err
	}
	ttl = min(max(ttl, r.cfg.MinTTL), r.cfg.MaxTTL)
	r.cache.put(&cacheEntry{key: k, rrs: rrs, expires: r.cfg.Now().Add(ttl)})
	return rrs, ttl, nil
}

// storeNegative caches a negative answer for NegativeTTL, or less when
// the zone's SOA says so (RFC 2308 §5), and returns that TTL.
func (r *Resolver) storeNegative(k cacheKey, resp *mdns.Msg, err error) time.Duration {
	if r.cfg.NegativeTTL < 0 {
		return 0
	}
	ttl := r.cfg.NegativeTTL
	for _, rr := range resp.Ns {
		if soa, ok := rr.(*mdns.SOA); ok {
			ttl = min(ttl, time.Duration(min(soa.Minttl, soa.Hdr.Ttl))*time.Second)
		}
	}
	ttl = max(ttl, r.cfg.MinTTL)
	r.cache.put(&cacheEntry{key: k, err: err, expires: r.cfg.Now().Add(ttl)})
	return ttl
}
