package metrics

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/asyncsip/asyncsip/async"
	"github.com/asyncsip/asyncsip/internal/testenv"
	"github.com/asyncsip/asyncsip/reactor"
)

func TestSplitName(t *testing.T) {
	for _, tc := range []struct{ in, module, op string }{
		{"db.query", "db", "query"},
		{"rest.get.json", "rest", "get.json"},
		{"sleep", "sleep", "sleep"},
		{"", "none", "unnamed"},
		{".x", ".x", ".x"},
		{"x.", "x.", "x."},
	} {
		t.Run(tc.in, func(t *testing.T) {
			m, o := splitName(tc.in)
			assert.Equal(t, tc.module, m)
			assert.Equal(t, tc.op, o)
		})
	}
}

func TestErrorKind(t *testing.T) {
	for _, tc := range []struct {
		err  error
		kind string
	}{
		{nil, ""},
		{fmt.Errorf("db.query after 2s: %w", async.ErrTimeout), "timeout"},
		{fmt.Errorf("x: %w", async.ErrOverloaded), "overloaded"},
		{async.ErrCancelled, "cancelled"},
		{fmt.Errorf("%w: %w", async.ErrNotSuspendable, errors.New("final sent")), "not_suspendable"},
		{async.ErrPanic, "panic"},
		{async.ErrClosed, "closed"},
		{errors.New("connection refused"), "other"},
	} {
		assert.Equal(t, tc.kind, errorKind(tc.err), "%v", tc.err)
	}
}

func TestOpObserverCountsByModuleAndOp(t *testing.T) {
	o := newOpObserver()
	o.OpStarted("db.query")
	o.OpFinished("db.query", 3*time.Millisecond, nil)
	o.OpStarted("db.query")
	o.OpFinished("db.query", 2*time.Second, fmt.Errorf("db.query after 2s: %w", async.ErrTimeout))
	o.OpStarted("")
	o.OpFinished("", time.Millisecond, errors.New("boom"))

	assert.Equal(t, 2.0, value(o.started.WithLabelValues("db", "query")))
	assert.Equal(t, 2.0, value(o.finished.WithLabelValues("db", "query")))
	assert.Equal(t, 1.0, value(o.errors.WithLabelValues("db", "query", "timeout")))
	assert.Equal(t, 0.0, value(o.errors.WithLabelValues("db", "query", "overloaded")))
	assert.Equal(t, 1.0, value(o.errors.WithLabelValues("none", "unnamed", "other")))
	// Latency: both observations are in the histogram, one above 1 s.
	reg := prometheus.NewRegistry()
	reg.MustRegister(o.duration)
	fams, err := reg.Gather()
	require.NoError(t, err)
	var h *struct{ count uint64 }
	for _, m := range fams[0].GetMetric() {
		if m.GetLabel()[1].GetValue() == "query" {
			h = &struct{ count uint64 }{m.GetHistogram().GetSampleCount()}
			for _, b := range m.GetHistogram().GetBucket() {
				if b.GetUpperBound() == 1.024 {
					assert.EqualValues(t, 1, b.GetCumulativeCount(), "one op under 1.024 s")
				}
			}
		}
	}
	require.NotNil(t, h)
	assert.EqualValues(t, 2, h.count)
}

// Unbounded op names cannot grow the series without bound.
func TestOpObserverBoundsNames(t *testing.T) {
	o := newOpObserver()
	for i := range MaxOpNames + 10 {
		o.OpStarted(fmt.Sprintf("gen.op%d", i))
	}
	o.OpStarted("gen.op3") // known names keep their series
	assert.Equal(t, 10.0, value(o.started.WithLabelValues("overflow", "overflow")))
	assert.Equal(t, 2.0, value(o.started.WithLabelValues("gen", "op3")))
	assert.Equal(t, MaxOpNames+1, count(o.started))
}

// waitFor polls cond every 5 ms for up to 5 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestProbeSeesABlockedLoop(t *testing.T) {
	l := testenv.StartLoop(t)
	hist := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "lag", Buckets: prometheus.DefBuckets})
	p := newLoopProbe(l, time.Now(), hist, func(*reactor.Loop) (int, int) { return 3, 4 })

	started, release := make(chan struct{}), make(chan struct{})
	require.NoError(t, l.Post(func() { close(started); <-release }))
	<-started
	p.post()
	p.post() // one probe in flight at a time
	posted := time.Now()
	time.Sleep(20 * time.Millisecond)
	assert.True(t, p.inFly.Load())
	since := time.Since(posted)
	assert.GreaterOrEqual(t, p.currentLag(), since, "a stuck loop shows a growing lag")
	held := time.Since(posted)
	close(release)
	waitFor(t, "the probe to run", func() bool { return !p.inFly.Load() })

	assert.GreaterOrEqual(t, time.Duration(p.lastLag.Load()), held, "the probe waited behind the blocked task")
	assert.EqualValues(t, 1, count(hist))
	assert.EqualValues(t, 3, p.srvTx.Load())
	assert.EqualValues(t, 4, p.cliTx.Load())
	assert.EqualValues(t, 0, p.timers.Load())
}

func TestProbeReadsLoopCPU(t *testing.T) {
	l := testenv.StartLoop(t)
	p := newLoopProbe(l, time.Now(), prometheus.NewHistogram(prometheus.HistogramOpts{Name: "lag"}), nil)
	_, ok := p.cpu()
	assert.False(t, ok, "no thread known before the first probe")
	p.post()
	waitFor(t, "the first probe", func() bool { return p.tid.Load() > 0 })
	p.sampleUtil(time.Now())
	before, ok := p.cpu()
	require.True(t, ok)

	// Burn 20 ms of the loop thread's own CPU clock.
	done := make(chan struct{})
	require.NoError(t, l.Post(func() {
		defer close(done)
		start := threadSelfCPU()
		for threadSelfCPU()-start < 20*time.Millisecond {
		}
	}))
	<-done
	after, ok := p.cpu()
	require.True(t, ok)
	assert.GreaterOrEqual(t, after-before, 20*time.Millisecond)
	p.sampleUtil(time.Now())
	u := p.utilization()
	assert.Greater(t, u, 0.0)
	assert.LessOrEqual(t, u, 1.0)

	// A stopped loop reports no CPU (its thread may serve other goroutines).
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	require.NoError(t, l.Stop(ctx))
	_, ok = p.cpu()
	assert.False(t, ok)
	p.post() // the loop is closed: nothing stays in flight
	assert.False(t, p.inFly.Load())
}

func threadSelfCPU() time.Duration {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts)
	return time.Duration(ts.Nano())
}

func TestThreadCPUOfMissingThread(t *testing.T) {
	_, ok := threadCPU(1<<22 + 7) // above PID_MAX_LIMIT: no such thread
	assert.False(t, ok)
}

// value reads a counter, gauge or histogram (its sample count) series.
func value(m prometheus.Metric) float64 {
	var d dto.Metric
	if err := m.Write(&d); err != nil {
		panic(err)
	}
	switch {
	case d.Counter != nil:
		return d.Counter.GetValue()
	case d.Gauge != nil:
		return d.Gauge.GetValue()
	case d.Histogram != nil:
		return float64(d.Histogram.GetSampleCount())
	}
	return -1
}

// count returns the number of series c collects.
func count(c prometheus.Collector) int {
	ch := make(chan prometheus.Metric, 1024)
	go func() { c.Collect(ch); close(ch) }()
	n := 0
	for range ch {
		n++
	}
	return n
}

// BenchmarkOpObserver is what observing one await costs its loop: a map
// load and three atomic updates (started, finished, histogram).
func BenchmarkOpObserver(b *testing.B) {
	o := newOpObserver()
	b.ReportAllocs()
	for b.Loop() {
		o.OpStarted("db.query")
		o.OpFinished("db.query", 3*time.Millisecond, nil)
	}
}
