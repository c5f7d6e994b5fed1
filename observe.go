package asyncsip

import (
	"context"
	"errors"
	"os"
	"os/signal"
	"syscall"

	"github.com/asyncsip/asyncsip/async"
	"github.com/asyncsip/asyncsip/modules/metrics"
	"github.com/asyncsip/asyncsip/reactor"
	"github.com/asyncsip/asyncsip/tm"
)

// observability is the server's optional metrics exporter.
type observability struct {
	exp *metrics.Exporter // nil unless Config.MetricsAddr is set
}

func (o *observability) init(cfg Config) {
	if cfg.MetricsAddr != "" {
		o.exp = metrics.New(metrics.Config{Addr: cfg.MetricsAddr, Logger: cfg.Logger})
	}
}

// observer is tm's await observer: the exporter, or none (a nil interface,
// not a nil pointer, so that async skips observation entirely).
func (o *observability) observer() async.Observer {
	if o.exp == nil {
		return nil
	}
	return o.exp
}

func (o *observability) watch(core *tm.Server, g *reactor.Group) error {
	if o.exp == nil {
		return nil
	}
	if err := o.exp.Watch(core, g); err != nil {
		return err
	}
	return o.exp.WatchPool("default", async.DefaultPool())
}

func (o *observability) start() error {
	if o.exp == nil {
		return nil
	}
	return o.exp.Start()
}

func (o *observability) close(ctx context.Context) {
	if o.exp != nil {
		_ = o.exp.Close(ctx)
	}
}

// Metrics returns the Prometheus exporter when Config.MetricsAddr is set:
// WatchPool adds a module's pool (db.Handle.Pool, rest.Client.Pool),
// Registry takes your own collectors (hep.Exporter.Collector, for one),
// Addr is the bound address. Without MetricsAddr it returns a nil
// *metrics.Exporter, which is safe to call: WatchPool returns
// metrics.ErrDisabled, Registry a registry nothing serves (see
// metrics.Exporter); Enabled tells which.
func (s *Server) Metrics() *metrics.Exporter { return s.obs.exp }

// ErrStopped is returned by ServeSignals when a second signal, or the end of
// the drain deadline, stopped the server before its transactions finished.
var ErrStopped = errors.New("asyncsip: stopped before the drain completed")

// ServeSignals starts srv and serves until ctx ends or one of sigs arrives
// (SIGINT and SIGTERM when none are given), then drains as Shutdown does
// for up to Config.DrainTimeout: new requests get 503 while transactions in
// progress, suspended ones included, finish. A second signal during the
// drain stops at once. It returns nil after a complete drain, ErrStopped
// (wrapping the context error) when the drain was cut short, or the error
// of Start.
//
//	if err := asyncsip.ServeSignals(context.Background(), srv); err != nil {
//		log.Fatal(err)
//	}
func ServeSignals(ctx context.Context, srv *Server, sigs ...os.Signal) error {
	if len(sigs) == 0 {
		sigs = []os.Signal{syscall.SIGINT, syscall.SIGTERM}
	}
	ch := make(chan os.Signal, 2)
	signal.Notify(ch, sigs...) // before Start: no signal is missed once serving
	defer signal.Stop(ch)
	return serveUntil(ctx, srv, ch)
}

// serveUntil is ServeSignals with the signals as a channel.
func serveUntil(ctx context.Context, srv *Server, sig <-chan os.Signal) error {
	if err := srv.Start(); err != nil {
		return err
	}
	select {
	case s := <-sig:
		srv.log.Info("asyncsip: signal received, draining", "signal", s.String(),
			"in_progress", srv.core.Stats().InProgress, "deadline", srv.cfg.DrainTimeout)
	case <-ctx.Done():
		srv.log.Info("asyncsip: context ended, draining", "in_progress", srv.core.Stats().InProgress)
	case <-srv.done:
		return ErrServerClosed
	}
	dctx, cancel := context.WithTimeout(context.Background(), srv.cfg.DrainTimeout)
	defer cancel()
	stopped, watcher := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(watcher)
		select {
		case s := <-sig:
			srv.log.Warn("asyncsip: second signal, stopping now", "signal", s.String(),
				"in_progress", srv.core.Stats().InProgress)
			cancel()
		case <-stopped:
		}
	}()
	err := srv.Shutdown(dctx)
	if err == nil {
		err = dctx.Err() // the drain was cut short even if the loops stopped cleanly
	}
	close(stopped)
	<-watcher
	if err != nil {
		return errors.Join(ErrStopped, err)
	}
	return nil
}
