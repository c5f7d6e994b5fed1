package db

import (
	"database/sql"
	"errors"
	"sync/atomic"
	"time"

	"github.com/asyncsip/asyncsip/async"
)

// Observer receives the metrics events of a Handle: statements run, their
// latency and errors, and ops refused because the handle's pool was
// saturated. The observability layer implements it (this package imports no
// metrics library); gauges such as pool saturation are read with
// Handle.Stats. Methods are called from the handle's pool goroutines, from
// loops and from callers of the sync helpers, concurrently: they must be
// safe for concurrent use, cheap and non-blocking.
type Observer interface {
	// QueryDone is called once per statement that ran (op is OpQuery,
	// OpQueryRow or OpExec), with the time it took in the driver,
	// connecting and waiting for a connection included, and its error:
	// nil, ErrNoRows (an empty result, not a failure), or an error wrapping
	// async.ErrTimeout, ErrUnavailable, ErrTooLarge or the driver's error.
	// An op cancelled while it was still queued never ran and is not
	// reported.
	QueryDone(op string, latency time.Duration, err error)
	// Rejected is called when an op could not start because every worker
	// of the handle was busy and its queue full; the op failed with
	// async.ErrOverloaded.
	Rejected(op string)
}

// ObserverFuncs is an Observer made of optional funcs; a nil func ignores
// its event.
type ObserverFuncs struct {
	OnQueryDone func(op string, latency time.Duration, err error)
	OnRejected  func(op string)
}

// QueryDone calls OnQueryDone if set.
func (o ObserverFuncs) QueryDone(op string, latency time.Duration, err error) {
	if o.OnQueryDone != nil {
		o.OnQueryDone(op, latency, err)
	}
}

// Rejected calls OnRejected if set.
func (o ObserverFuncs) Rejected(op string) {
	if o.OnRejected != nil {
		o.OnRejected(op)
	}
}

// Stats is a snapshot of a Handle's counters and gauges.
type Stats struct {
	Queries  uint64 // statements that ran, with any outcome
	Errors   uint64 // of which failed (ErrNoRows is not a failure)
	NoRows   uint64 // QueryRow results with no row
	Timeouts uint64 // failed on the handle's Timeout (async.ErrTimeout)
	Rejected uint64 // ops refused with async.ErrOverloaded

	// Latency is the total time of the statements that ran; divide by
	// Queries for the mean.
	Latency time.Duration

	StmtCached             int    // prepared statements in the cache
	StmtHits, StmtPrepares uint64 // cache hits, statements prepared

	// Pool is the handle's worker pool: Busy against Config.Workers and
	// Queued against Config.Queue measure its saturation.
	Pool async.PoolStats
	// DB is database/sql's connection pool (open, in use, waits).
	DB sql.DBStats
}

type counters struct {
	queries, errors, noRows, timeouts, rejected atomic.Uint64
	latency                                     atomic.Int64
}

// Stats returns the handle's counters and gauges.
func (h *Handle) Stats() Stats {
	s := Stats{
		Queries:  h.m.queries.Load(),
		Errors:   h.m.errors.Load(),
		NoRows:   h.m.noRows.Load(),
		Timeouts: h.m.timeouts.Load(),
		Rejected: h.m.rejected.Load(),
		Latency:  time.Duration(h.m.latency.Load()),
		Pool:     h.pool.Stats(),
		DB:       h.db.Stats(),
	}
	s.StmtCached, s.StmtHits, s.StmtPrepares = h.stmts.stats()
	return s
}

func (h *Handle) observe(op string, d time.Duration, err error) {
	h.m.queries.Add(1)
	h.m.latency.Add(int64(d))
	switch {
	case err == nil:
	case errors.Is(err, ErrNoRows):
		h.m.noRows.Add(1)
	default:
		h.m.errors.Add(1)
		if errors.Is(err, async.ErrTimeout) {
			h.m.timeouts.Add(1)
		}
	}
	if h.cfg.Observer != nil {
		h.cfg.Observer.QueryDone(op, d, err)
	}
}

func (h *Handle) rejected(op string) {
	h.m.rejected.Add(1)
	if h.cfg.Observer != nil {
		h.cfg.Observer.Rejected(op)
	}
}
