package rest

import (
	"errors"
	"sync/atomic"
	"time"

	"github.com/asyncsip/asyncsip/async"
)

// Kind classifies the outcome of a request, for metrics labels and for
// routes that prefer a switch to a chain of errors.Is.
type Kind uint8

// The outcomes of a request. KindOK includes every HTTP status: a 404 or a
// 500 is a successful transfer.
const (
	KindOK Kind = iota
	KindBadURL
	KindRefused
	KindConnectTimeout
	KindTLS
	KindTimeout
	KindBodyTooLarge
	KindOverloaded
	KindStatus    // JSON: the status was not 2xx
	KindDecode    // JSON: the body did not decode
	KindCancelled // the await timed out or its context ended first
	KindOther     // any other error (reset connection, malformed response, closed client)
	kindCount
)

var kindNames = [kindCount]string{
	"ok", "bad_url", "refused", "connect_timeout", "tls", "timeout",
	"body_too_large", "overloaded", "status", "decode", "cancelled", "other",
}

// String returns the kind as a metric label value ("ok", "refused", ...).
func (k Kind) String() string {
	if k < kindCount {
		return kindNames[k]
	}
	return "unknown"
}

// KindOf classifies an error returned by an op of this package (nil is
// KindOK). It also accepts the errors of a route's Await: async.ErrTimeout
// is KindTimeout.
func KindOf(err error) Kind {
	switch {
	case err == nil:
		return KindOK
	case errors.Is(err, ErrBadURL):
		return KindBadURL
	case errors.Is(err, ErrConnRefused):
		return KindRefused
	case errors.Is(err, ErrConnectTimeout):
		return KindConnectTimeout
	case errors.Is(err, ErrTLS):
		return KindTLS
	case errors.Is(err, ErrTimeout), errors.Is(err, async.ErrTimeout):
		return KindTimeout
	case errors.Is(err, ErrBodyTooLarge):
		return KindBodyTooLarge
	case errors.Is(err, async.ErrOverloaded):
		return KindOverloaded
	case errors.Is(err, ErrStatus):
		return KindStatus
	case errors.Is(err, ErrDecode):
		return KindDecode
	case errors.Is(err, async.ErrCancelled):
		return KindCancelled
	}
	return KindOther
}

// Observer receives the life of every request of a Client, for metrics
// (requests by method, errors by kind, latency histograms, in-flight gauges).
// Its methods run on the reactor loop that started the request — several
// loops call them concurrently — so they must be cheap, non-blocking and safe
// for concurrent use. This package imports no metrics library: the
// observability layer implements Observer (Prometheus counters and
// histograms, for example).
type Observer interface {
	// RequestStarted is called when an op starts a request.
	RequestStarted(method string)
	// RequestFinished is called exactly once per RequestStarted, when the
	// outcome is known: status is the HTTP status (0 when there was no
	// response), kind classifies err, latency runs from the start of the op
	// (time spent queued for a worker included).
	RequestFinished(method string, status int, kind Kind, latency time.Duration)
}

// Stats is a snapshot of a client's counters and gauges.
type Stats struct {
	Started  uint64 // requests started
	Finished uint64 // requests finished, whatever the outcome
	InFlight int64  // started and not finished (queued ones included)
	// ByKind counts finished requests by outcome, indexed by Kind.
	ByKind [kindCount]uint64
	// Pool is the state of the client's worker pool (Busy = requests being
	// transferred, Queued = waiting for a worker, Rejected = overloads).
	Pool async.PoolStats
}

// Errors returns the number of finished requests whose kind is k.
func (s Stats) Errors(k Kind) uint64 {
	if k < kindCount {
		return s.ByKind[k]
	}
	return 0
}

// counters are a client's metrics, updated from every loop.
type counters struct {
	started, finished atomic.Uint64
	inFlight          atomic.Int64
	byKind            [kindCount]atomic.Uint64
}

func (c *counters) start() {
	c.started.Add(1)
	c.inFlight.Add(1)
}

func (c *counters) finish(k Kind) {
	c.byKind[k].Add(1)
	c.inFlight.Add(-1)
	c.finished.Add(1)
}

func (c *counters) snapshot() Stats {
	s := Stats{Started: c.started.Load(), Finished: c.finished.Load(), InFlight: c.inFlight.Load()}
	for i := range s.ByKind {
		s.ByKind[i] = c.byKind[i].Load()
	}
	return s
}
