package metrics

import (
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/asyncsip/asyncsip/async"
)

// MaxOpNames bounds the distinct op names the observer labels; ops named
// beyond it are counted under op="overflow", so a program that names ops
// with unbounded strings cannot grow the metrics without bound.
const MaxOpNames = 512

// opErrorKinds are the values of the error label of op errors.
var opErrorKinds = [...]string{"timeout", "overloaded", "cancelled", "not_suspendable", "panic", "closed", "other"}

// errorKind classifies an op outcome for the error label ("" on success).
func errorKind(err error) string {
	switch {
	case err == nil:
		return ""
	case errors.Is(err, async.ErrTimeout):
		return "timeout"
	case errors.Is(err, async.ErrOverloaded):
		return "overloaded"
	case errors.Is(err, async.ErrCancelled):
		return "cancelled"
	case errors.Is(err, async.ErrNotSuspendable):
		return "not_suspendable"
	case errors.Is(err, async.ErrPanic):
		return "panic"
	case errors.Is(err, async.ErrClosed):
		return "closed"
	}
	return "other"
}

// splitName turns an op name "db.query" into module "db" and op "query".
// A name without a dot is its own module; a nameless op is "unnamed".
func splitName(name string) (module, op string) {
	if name == "" {
		return "none", "unnamed"
	}
	if m, o, ok := strings.Cut(name, "."); ok && m != "" && o != "" {
		return m, o
	}
	return name, name
}

// opMetrics are the pre-resolved series of one op name: resolving labels
// once keeps the hot path to a map load and atomic adds.
type opMetrics struct {
	started  prometheus.Counter
	finished prometheus.Counter
	duration prometheus.Observer
	errs     [len(opErrorKinds)]prometheus.Counter
}

// opObserver implements async.Observer with Prometheus series by module
// and op. Its methods are safe on any loop concurrently.
type opObserver struct {
	started  *prometheus.CounterVec
	finished *prometheus.CounterVec
	duration *prometheus.HistogramVec
	errors   *prometheus.CounterVec

	byName       sync.Map // string -> *opMetrics
	mu           sync.Mutex
	names        atomic.Int32
	overflowOnce sync.Once
	overflow     *opMetrics
}

func newOpObserver() *opObserver {
	labels := []string{"module", "op"}
	return &opObserver{
		started: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: "async", Name: "ops_started_total",
			Help: "Async ops (Await, Launch) started, by module and op name.",
		}, labels),
		finished: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: "async", Name: "ops_finished_total",
			Help: "Async ops finished (successfully or not), by module and op name.",
		}, labels),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Subsystem: "async", Name: "op_duration_seconds",
			Help:    "Time from the start of an async op to its outcome (loop clock), by module and op name.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16), // 0.5 ms .. 16 s
		}, labels),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: "async", Name: "op_errors_total",
			Help: "Async ops that finished with an error, by module, op name and error kind " +
				"(timeout, overloaded, cancelled, not_suspendable, panic, closed, other).",
		}, []string{"module", "op", "error"}),
	}
}

func (o *opObserver) collectors() []prometheus.Collector {
	return []prometheus.Collector{o.started, o.finished, o.duration, o.errors}
}

// series returns the series of name, creating them on first use.
func (o *opObserver) series(name string) *opMetrics {
	if m, ok := o.byName.Load(name); ok {
		return m.(*opMetrics)
	}
	if o.names.Load() >= MaxOpNames {
		o.overflowOnce.Do(func() { o.overflow = o.newSeries("overflow", "overflow") })
		return o.overflow
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if m, ok := o.byName.Load(name); ok {
		return m.(*opMetrics)
	}
	m := o.newSeries(splitName(name))
	o.byName.Store(name, m)
	o.names.Add(1)
	return m
}

func (o *opObserver) newSeries(module, op string) *opMetrics {
	m := &opMetrics{
		started:  o.started.WithLabelValues(module, op),
		finished: o.finished.WithLabelValues(module, op),
		duration: o.duration.WithLabelValues(module, op),
	}
	for i, k := range opErrorKinds {
		m.errs[i] = o.errors.WithLabelValues(module, op, k)
	}
	return m
}

func (o *opObserver) OpStarted(name string) { o.series(name).started.Inc() }

func (o *opObserver) OpFinished(name string, latency time.Duration, err error) {
	m := o.series(name)
	m.finished.Inc()
	m.duration.Observe(latency.Seconds())
	if k := errorKind(err); k != "" {
		for i, kind := range opErrorKinds {
			if kind == k {
				m.errs[i].Inc()
				break
			}
		}
	}
}
