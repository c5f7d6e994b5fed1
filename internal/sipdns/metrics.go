package sipdns

import (
	"errors"
	"sync/atomic"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/asyncsip/asyncsip/async"
)

// Observer receives what a Resolver does, for metrics. Its methods are
// called from the loops (cache lookups, synchronous resolutions) and from
// pool goroutines (queries), several at once: they must be cheap,
// non-blocking and safe for concurrent use.
type Observer interface {
	// Query reports one question asked of the servers (all attempts):
	// its type ("A", "SRV", …), how long it took and its error (nil,
	// or one wrapping ErrNXDomain, ErrNoRecords, ErrServFail, ErrTimeout).
	Query(qtype string, d time.Duration, err error)
	// Cache reports a cache lookup and whether it hit.
	Cache(qtype string, hit bool)
	// Resolved reports a finished Resolve: its latency, whether it completed
	// synchronously (from the cache) and its error.
	Resolved(d time.Duration, sync bool, err error)
}

// Stats are a resolver's counters since NewResolver.
type Stats struct {
	Resolutions     uint64 // Resolve ops finished
	SyncResolutions uint64 // of which completed synchronously
	Failed          uint64 // of which with an error
	Queries         uint64 // questions sent to the servers
	QueryErrors     uint64 // of which ended in timeout or server failure
	CacheHits       uint64
	CacheMisses     uint64
	CacheEntries    int // answers in the cache now
}

type counters struct {
	resolutions, syncRes, failed, queries, queryErrors, hits, misses atomic.Uint64
}

// Stats returns the resolver's counters.
func (r *Resolver) Stats() Stats {
	c := &r.stats
	return Stats{
		Resolutions: c.resolutions.Load(), SyncResolutions: c.syncRes.Load(), Failed: c.failed.Load(),
		Queries: c.queries.Load(), QueryErrors: c.queryErrors.Load(),
		CacheHits: c.hits.Load(), CacheMisses: c.misses.Load(), CacheEntries: r.cache.len(),
	}
}

// Kind classifies an error of this package for metric labels.
type Kind string

// The kinds of outcome KindOf returns.
const (
	KindOK         Kind = "ok"
	KindNXDomain   Kind = "nxdomain"
	KindNoRecords  Kind = "norecords"
	KindServFail   Kind = "servfail"
	KindTimeout    Kind = "timeout"
	KindBadURI     Kind = "bad_uri"
	KindOverloaded Kind = "overloaded"
	KindNotCached  Kind = "not_cached"
	KindOther      Kind = "other"
)

// KindOf classifies err; async.ErrTimeout (the await's timeout) is
// KindTimeout like ErrTimeout.
func KindOf(err error) Kind {
	switch {
	case err == nil:
		return KindOK
	case errors.Is(err, ErrNXDomain):
		return KindNXDomain
	case errors.Is(err, ErrNoRecords):
		return KindNoRecords
	case errors.Is(err, ErrServFail):
		return KindServFail
	case errors.Is(err, ErrTimeout), errors.Is(err, async.ErrTimeout):
		return KindTimeout
	case errors.Is(err, ErrBadURI):
		return KindBadURI
	case errors.Is(err, async.ErrOverloaded):
		return KindOverloaded
	case errors.Is(err, ErrNotCached):
		return KindNotCached
	}
	return KindOther
}

func (r *Resolver) observeQuery(qtype uint16, d time.Duration, err error) {
	r.stats.queries.Add(1)
	if errors.Is(err, ErrServFail) || errors.Is(err, ErrTimeout) {
		r.stats.queryErrors.Add(1)
	}
	if o := r.cfg.Observer; o != nil {
		o.Query(mdns.TypeToString[qtype], d, err)
	}
}

func (r *Resolver) observeCache(qtype uint16, hit bool) {
	if hit {
		r.stats.hits.Add(1)
	} else {
		r.stats.misses.Add(1)
	}
	if o := r.cfg.Observer; o != nil {
		o.Cache(mdns.TypeToString[qtype], hit)
	}
}

// countHits reports the hits of a synchronous pass that succeeded.
func (r *Resolver) countHits(qtypes []uint16) {
	for _, qt := range qtypes {
		r.observeCache(qt, true)
	}
}

func (r *Resolver) observeResolve(d time.Duration, sync bool, err error) {
	r.stats.resolutions.Add(1)
	if sync {
		r.stats.syncRes.Add(1)
	}
	if err != nil {
		r.stats.failed.Add(1)
	}
	if o := r.cfg.Observer; o != nil {
		o.Resolved(d, sync, err)
	}
}
