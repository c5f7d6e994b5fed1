// Command httpdelay is the routing web service of the rest benchmark
// scenario: every GET is answered after a fixed delay with the next hop of the
// call as a plain-text body ("127.0.0.1:5080"), the way a real routing API
// would answer after its own database lookup.
//
//	httpdelay -listen 127.0.0.1:8088 -delay 20ms -target 127.0.0.1:5080
//
// It runs until SIGINT or SIGTERM.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "httpdelay:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("httpdelay", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:8088", "listening address")
	delay := fs.Duration("delay", 20*time.Millisecond, "time taken by every answer")
	target := fs.String("target", "127.0.0.1:5080", "next hop put in every answer")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if *delay < 0 {
		return fmt.Errorf("-delay %v: must be >= 0", *delay)
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: Handler(*delay, *target), ReadHeaderTimeout: 5 * time.Second, IdleTimeout: 60 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	fmt.Fprintf(os.Stderr, "httpdelay: listening on %s delay=%v target=%s\n", ln.Addr(), *delay, *target)
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// Handler answers every request after delay with target as a text/plain
// body, or earlier with nothing if the client goes away.
func Handler(delay time.Duration, target string) http.Handler {
	body := []byte(target)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t := time.NewTimer(delay)
		defer t.Stop()
		select {
		case <-t.C:
		case <-r.Context().Done():
			return
		}
		w.Header().Set("Content-Type", "text/plain")
		w.Header().Set("Content-Length", fmt.Sprint(len(body)))
		_, _ = w.Write(body)
	})
}
