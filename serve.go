package asyncsip

import (
	"context"
	"errors"
	"os"
	"os/signal"
	"syscall"
	"time"
)

// drain makes new requests get 503 with Retry-After and waits, until ctx
// ends, for the transactions in progress (suspended ones included) to
// finish.
func (s *Server) drain(ctx context.Context) {
	s.core.Drain()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for s.core.Stats().InProgress > 0 {
		select {
		case <-ctx.Done():
			s.log.Warn("asyncsip: drain deadline reached", "in_progress", s.core.Stats().InProgress)
			return
		case <-tick.C:
		}
	}
}

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
			"in_progress", srv.Stats().InProgress, "deadline", srv.cfg.DrainTimeout)
	case <-ctx.Done():
		srv.log.Info("asyncsip: context ended, draining", "in_progress", srv.Stats().InProgress)
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
				"in_progress", srv.Stats().InProgress)
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
