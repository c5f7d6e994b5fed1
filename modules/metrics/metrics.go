package metrics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/asyncsip/asyncsip/async"
	"github.com/asyncsip/asyncsip/reactor"
	"github.com/asyncsip/asyncsip/tm"
)

// Errors returned by the Exporter.
var (
	// ErrWatching is returned by Watch when a server is already watched.
	ErrWatching = errors.New("metrics: a server is already watched")
	// ErrStarted is returned by Start when the exporter runs already (or
	// was closed).
	ErrStarted = errors.New("metrics: exporter already started or closed")
	// ErrDisabled is returned by Watch, WatchPool, Attach and Start of a
	// nil *Exporter (a program that keeps one only when metrics are
	// configured can call it unconditionally).
	ErrDisabled = errors.New("metrics: disabled (nil exporter)")
)

// Config configures an Exporter. The zero value serves nothing by itself:
// mount Handler on your own server, or set Addr.
type Config struct {
	// Addr is the HTTP listen address of /metrics and /debug/pprof/
	// ("127.0.0.1:9090"; port 0 picks one, see Exporter.Addr). Keep it
	// private: pprof shows the program's internals.
	Addr string
	// ProbeInterval is how often each loop's lag and utilisation are
	// sampled (default 1 s).
	ProbeInterval time.Duration
	// NoPprof leaves /debug/pprof/ out of Handler.
	NoPprof bool
	// Logger receives the exporter's own errors (default slog.Default()).
	Logger *slog.Logger
}

// Exporter collects the metrics of one server into its own registry (two
// servers in one process do not mix) and serves them. It is also the
// async.Observer to give tm (tm.Config.Observer), which measures every
// Await by module and op name.
//
// A nil *Exporter (metrics disabled) is safe to use: Watch, WatchPool and
// Start return ErrDisabled, Close, OpStarted and OpFinished do nothing,
// Addr is nil, Registry returns a registry nothing serves and Handler
// answers 404. Enabled tells the two apart.
type Exporter struct {
	cfg  Config
	log  *slog.Logger
	reg  *prometheus.Registry
	ops  *opObserver
	lag  *prometheus.HistogramVec
	mux  *http.ServeMux
	base time.Time

	mu      sync.Mutex
	coll    *serverCollector
	probes  []*loopProbe
	state   int // 0 new, 1 started, 2 closed
	ln      net.Listener
	srv     *http.Server
	closing chan struct{}
	wg      sync.WaitGroup
}

// New creates an exporter. Give it to tm as the Observer, then Watch the
// server and Start it.
func New(cfg Config) *Exporter {
	if cfg.ProbeInterval <= 0 {
		cfg.ProbeInterval = time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	e := &Exporter{
		cfg: cfg, log: cfg.Logger, reg: prometheus.NewRegistry(), ops: newOpObserver(),
		base: time.Now(), closing: make(chan struct{}),
		lag: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Name: "loop_lag_seconds",
			Help:    "Delay from posting a task to a loop until it runs, sampled every probe interval, by loop.",
			Buckets: prometheus.ExponentialBuckets(0.00001, 4, 10), // 10 µs .. 2.6 s
		}, []string{"loop"}),
	}
	e.reg.MustRegister(e.ops.collectors()...)
	e.reg.MustRegister(e.lag)
	e.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	e.mux = http.NewServeMux()
	e.mux.Handle("/metrics", promhttp.HandlerFor(e.reg, promhttp.HandlerOpts{ErrorLog: slogAdapter{e.log}}))
	if !cfg.NoPprof {
		e.mux.HandleFunc("/debug/pprof/", e.pprofIndex)
	}
	return e
}

// Enabled reports whether e exports anything (false for a nil *Exporter).
func (e *Exporter) Enabled() bool { return e != nil }

// OpStarted implements async.Observer.
func (e *Exporter) OpStarted(name string) {
	if e != nil {
		e.ops.OpStarted(name)
	}
}

// OpFinished implements async.Observer.
func (e *Exporter) OpFinished(name string, latency time.Duration, err error) {
	if e != nil {
		e.ops.OpFinished(name, latency, err)
	}
}

var _ async.Observer = (*Exporter)(nil)

// Watch exports the counters of core and of the loops of g, and probes
// each loop's lag once Start runs. Call it once.
func (e *Exporter) Watch(core *tm.Server, g *reactor.Group) error {
	if e == nil {
		return ErrDisabled
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.coll != nil {
		return ErrWatching
	}
	c := &serverCollector{core: core}
	for _, l := range g.Loops() {
		p := newLoopProbe(l, e.base, e.lag.WithLabelValues(fmt.Sprint(l.ID())), core.Tables)
		c.probes = append(c.probes, p)
	}
	if err := e.reg.Register(c); err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	e.coll, e.probes = c, c.probes
	return nil
}

// Attach watches core and the loops of g (Watch) and async.DefaultPool as
// pool "default". It makes an Exporter an asyncsip.Extension: listed in
// asyncsip.Config.Extensions, New attaches it, Server.Start starts it and
// Shutdown closes it.
func (e *Exporter) Attach(core *tm.Server, g *reactor.Group) error {
	if err := e.Watch(core, g); err != nil {
		return err
	}
	return e.WatchPool("default", async.DefaultPool())
}

// WatchPool exports the stats of a blocking-call pool under the label
// pool=name (async.DefaultPool as "default", a module's own pool by its
// module name): db.Handle.Pool, rest.Client.Pool. Call Watch (or Attach)
// first: an exporter in asyncsip.Config.Extensions is attached by New.
func (e *Exporter) WatchPool(name string, p *async.Pool) error {
	if e == nil {
		return ErrDisabled
	}
	if p == nil {
		return fmt.Errorf("metrics: WatchPool %q: nil pool", name)
	}
	e.mu.Lock()
	c := e.coll
	e.mu.Unlock()
	if c == nil {
		return errors.New("metrics: WatchPool before Watch")
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, np := range c.pools {
		if np.name == name {
			return fmt.Errorf("metrics: pool %q already watched", name)
		}
	}
	c.pools = append(c.pools, namedPool{name, p})
	return nil
}

// Registry returns the exporter's registry, to add your own collectors. For
// a nil *Exporter it returns a new registry that nothing serves, so that
// registering collectors works and exports nothing.
func (e *Exporter) Registry() *prometheus.Registry {
	if e == nil {
		return prometheus.NewRegistry()
	}
	return e.reg
}

// Handler serves /metrics and, unless NoPprof, /debug/pprof/. For a nil
// *Exporter it answers every request 404 "metrics disabled".
func (e *Exporter) Handler() http.Handler {
	if e == nil {
		return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			http.Error(w, "metrics disabled", http.StatusNotFound)
		})
	}
	return e.mux
}

// Start starts the lag probes and, when Config.Addr is set, the HTTP
// listener. It does not block.
func (e *Exporter) Start() error {
	if e == nil {
		return ErrDisabled
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.state != 0 {
		return ErrStarted
	}
	if e.cfg.Addr != "" {
		ln, err := net.Listen("tcp", e.cfg.Addr)
		if err != nil {
			return fmt.Errorf("metrics: listen %s: %w", e.cfg.Addr, err)
		}
		e.ln = ln
		e.srv = &http.Server{Handler: e.mux, ReadHeaderTimeout: 10 * time.Second, ErrorLog: slogAdapter{e.log}.std()}
		e.wg.Add(1)
		go func() {
			defer e.wg.Done()
			if err := e.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				e.log.Error("metrics: HTTP server failed", "err", err)
			}
		}()
		e.log.Info("metrics: serving", "addr", ln.Addr().String())
	}
	e.state = 1
	e.wg.Add(1)
	go e.probeLoop(e.probes)
	return nil
}

// Addr returns the bound HTTP address once started with Config.Addr, else
// nil (always nil for a nil *Exporter).
func (e *Exporter) Addr() net.Addr {
	if e == nil {
		return nil
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.ln == nil {
		return nil
	}
	return e.ln.Addr()
}

// probeLoop posts the lag probes every interval until Close.
func (e *Exporter) probeLoop(probes []*loopProbe) {
	defer e.wg.Done()
	t := time.NewTicker(e.cfg.ProbeInterval)
	defer t.Stop()
	for {
		now := time.Now()
		for _, p := range probes {
			p.sampleUtil(now)
			p.post()
		}
		select {
		case <-t.C:
		case <-e.closing:
			return
		}
	}
}

// Close stops the probes and the HTTP server: it waits for scrapes in
// flight until ctx ends, then closes the connections. Timed profiles end
// early. Close is idempotent.
func (e *Exporter) Close(ctx context.Context) error {
	if e == nil {
		return nil
	}
	e.mu.Lock()
	if e.state == 2 {
		e.mu.Unlock()
		return nil
	}
	e.state = 2
	close(e.closing)
	srv := e.srv
	e.mu.Unlock()
	var err error
	if srv != nil {
		if err = srv.Shutdown(ctx); err != nil {
			_ = srv.Close()
			err = fmt.Errorf("metrics: %w", err)
		}
	}
	e.wg.Wait()
	return err
}
