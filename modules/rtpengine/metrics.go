package rtpengine

import (
	"errors"
	"sync/atomic"
	"time"

	"github.com/asyncsip/asyncsip/async"
)

// Kind classifies the outcome of one try of a command on an instance, for
// metrics labels.
type Kind uint8

// The outcomes of a try.
const (
	KindOK       Kind = iota // answered with a result other than "error"
	KindRefused              // answered "error" (an *Error)
	KindTimeout              // no answer within Config.TryTimeout
	KindBadReply             // answered with something that is not an ng reply
	KindOther
	kindCount
)

var kindNames = [kindCount]string{"ok", "refused", "timeout", "bad_reply", "other"}

// String returns the kind as a metric label value.
func (k Kind) String() string {
	if k < kindCount {
		return kindNames[k]
	}
	return "unknown"
}

// KindOf classifies the error of a command, or of a route helper's next
// (async.ErrTimeout is KindTimeout).
func KindOf(err error) Kind {
	switch {
	case err == nil:
		return KindOK
	case isRefusal(err):
		return KindRefused
	case errors.Is(err, ErrTimeout), errors.Is(err, async.ErrTimeout):
		return KindTimeout
	case errors.Is(err, ErrBadReply):
		return KindBadReply
	}
	return KindOther
}

func isRefusal(err error) bool {
	var e *Error
	return errors.As(err, &e)
}

// Observer receives the outcome of every try of every command, per
// instance, for metrics. Its methods run on the loops (several at once):
// they must be cheap, non-blocking and safe for concurrent use.
type Observer interface {
	// CommandFinished is called once per try: kind is its outcome, latency
	// runs from the first transmission to the answer (or to giving up).
	CommandFinished(instance, command string, kind Kind, latency time.Duration)
	// Retransmitted is called for each retransmission.
	Retransmitted(instance, command string)
	// InstanceState is called when an instance goes down (a try without
	// answer) or comes back up (any answer).
	InstanceState(instance string, up bool)
}

// latencyBounds are the upper bounds of the latency histogram buckets.
var latencyBounds = [...]time.Duration{
	250 * time.Microsecond, 500 * time.Microsecond, time.Millisecond, 2 * time.Millisecond,
	5 * time.Millisecond, 10 * time.Millisecond, 25 * time.Millisecond, 50 * time.Millisecond,
	100 * time.Millisecond, 250 * time.Millisecond, 500 * time.Millisecond, time.Second,
}

// histogram is a fixed-bucket latency histogram updated with atomics.
type histogram struct {
	buckets [len(latencyBounds) + 1]atomic.Uint64
	sum     atomic.Int64 // nanoseconds
}

func (h *histogram) observe(d time.Duration) {
	i := 0
	for i < len(latencyBounds) && d > latencyBounds[i] {
		i++
	}
	h.buckets[i].Add(1)
	h.sum.Add(int64(d))
}

type instanceStats struct {
	requests, ok, refused, timeouts, badReplies atomic.Uint64
	retransmits, failovers, sendErrors, downs   atomic.Uint64
	latency                                     histogram
}

// InstanceStats is a snapshot of one instance's counters.
type InstanceStats struct {
	// Addr is the instance's ng address.
	Addr string
	// Up is false while the instance is out of the choice for new calls
	// (it did not answer a try, and neither DisableFor nor a ping has
	// brought it back).
	Up bool
	// Requests counts tries sent (a retransmission is not a new try).
	Requests uint64
	// OK, Refused, Timeouts and BadReplies count the outcomes of tries.
	OK, Refused, Timeouts, BadReplies uint64
	// Retransmits counts retransmissions, SendErrors datagrams the kernel
	// refused.
	Retransmits, SendErrors uint64
	// Failovers counts offers that moved from this instance to another:
	// it did not answer them, or was down when a call bound to it got a
	// new offer.
	Failovers uint64
	// Downs counts the times the instance was marked down.
	Downs uint64
	// LatencyBuckets counts answered tries by latency: bucket i holds
	// latencies up to LatencyBounds[i], the last one the rest.
	LatencyBuckets []uint64
	// LatencySum is the sum of the counted latencies.
	LatencySum time.Duration
}

// LatencyBounds returns the upper bounds of InstanceStats.LatencyBuckets.
func LatencyBounds() []time.Duration { return append([]time.Duration(nil), latencyBounds[:]...) }

// Stats is a snapshot of a client's counters.
type Stats struct {
	// Instances holds one entry per instance, in Config order.
	Instances []InstanceStats
	// Calls is the number of calls whose instance is remembered.
	Calls int
	// Evicted counts calls forgotten because MaxCalls was reached.
	Evicted uint64
	// Stray counts datagrams that answered nothing pending: late answers
	// to retransmitted or abandoned commands, or from elsewhere.
	Stray uint64
	// InFlight is the number of commands waiting for an answer now;
	// Overloaded counts those refused over Config.MaxInFlight.
	InFlight   int64
	Overloaded uint64
}

// Stats returns a snapshot of the client's counters.
func (c *Client) Stats() Stats {
	now := time.Now()
	s := Stats{Calls: c.aff.len(), Evicted: c.aff.evicted.Load(), Stray: c.stray.Load(),
		InFlight: c.inFlight.Load(), Overloaded: c.overloaded.Load()}
	for _, in := range c.inst {
		st := &in.stats
		is := InstanceStats{
			Addr: in.name, Up: in.usable(now),
			Requests: st.requests.Load(), OK: st.ok.Load(), Refused: st.refused.Load(),
			Timeouts: st.timeouts.Load(), BadReplies: st.badReplies.Load(),
			Retransmits: st.retransmits.Load(), SendErrors: st.sendErrors.Load(),
			Failovers: st.failovers.Load(), Downs: st.downs.Load(),
			LatencySum: time.Duration(st.latency.sum.Load()),
		}
		for i := range st.latency.buckets {
			is.LatencyBuckets = append(is.LatencyBuckets, st.latency.buckets[i].Load())
		}
		s.Instances = append(s.Instances, is)
	}
	return s
}
