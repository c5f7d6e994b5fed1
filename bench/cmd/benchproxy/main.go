// Command benchproxy is the asyncsip proxy of the side-by-side benchmarks in
// bench/: a stateful relay with Record-Route, built only on the public API,
// with one route per scenario.
//
//	benchproxy -scenario relay -listen udp:127.0.0.1:5070 -target 127.0.0.1:5080
//
// Scenarios (initial requests only; in-dialog requests are loose-routed):
//
//	relay           relay to -target
//	sleep           await async.Sleep(20ms), then relay
//	sleep-blocking  time.Sleep(20ms) on the worker loop, then relay
//	rest            await GET -rest-url?user=U (modules/rest; the body is the next hop), then relay
//	db              await SELECT target FROM routes WHERE username=U (modules/db, -db), then relay
//
// It runs until SIGINT or SIGTERM, then drains and exits 0.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"strings"
	"syscall"
	"time"

	"github.com/asyncsip/asyncsip"
	"github.com/asyncsip/asyncsip/bench/internal/routedb"
	"github.com/asyncsip/asyncsip/modules/db"
	_ "github.com/asyncsip/asyncsip/modules/db/postgres"
	_ "github.com/asyncsip/asyncsip/modules/db/sqlite"
	"github.com/asyncsip/asyncsip/modules/rest"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], nil); err != nil {
		fmt.Fprintln(os.Stderr, "benchproxy:", err)
		os.Exit(1)
	}
}

// run serves until ctx ends; ready, if set, gets the bound addresses.
func run(ctx context.Context, args []string, ready func([]netip.AddrPort)) error {
	fs := flag.NewFlagSet("benchproxy", flag.ContinueOnError)
	scenario := fs.String("scenario", "relay", "relay | sleep | sleep-blocking | rest | db")
	listen := fs.String("listen", "udp:127.0.0.1:5060", "listening socket")
	target := fs.String("target", "127.0.0.1:5080", "downstream UAS host:port")
	workers := fs.Int("workers", 0, "event loops (0: the library default, one per GOMAXPROCS, which follows the CPU affinity)")
	restURL := fs.String("rest-url", "http://127.0.0.1:8088/route", "rest: delay server URL")
	dsn := fs.String("db", "", "db: sqlite:PATH or postgres://... (routes table; filled with -db-users -> -target when -db-fill)")
	dbFill := fs.Bool("db-fill", true, "db: create and fill the routes table at start")
	dbUsers := fs.String("db-users", "bob,service", "db: comma-separated users routed to -target by -db-fill")
	poolSize := fs.Int("pool", 256, "rest/db: requests or queries running at once (the module's pool)")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile to this file until exit")
	memProfile := fs.String("memprofile", "", "write a heap profile (allocations since start: -sample_index=alloc_objects) to this file at exit")
	memRate := fs.Int("memprofilerate", 0, "runtime.MemProfileRate with -memprofile (0: Go's default, one sample per 512 KiB; 1: every allocation)")
	logLevel := fs.String("log-level", "warn", "debug | info | warn | error")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(*logLevel)); err != nil {
		return fmt.Errorf("-log-level: %w", err)
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lvl}))

	o := options{scenario: *scenario, target: *target, restURL: *restURL}
	switch *scenario {
	case "rest":
		c, err := rest.NewClient(rest.Config{Timeout: 2 * time.Second, MaxConcurrent: *poolSize, Queue: 4096})
		if err != nil {
			return err
		}
		defer c.Close(context.Background())
		o.rest = c
	case "db":
		if *dsn == "" {
			return errors.New("scenario db needs -db")
		}
		driver, src, q, err := routedb.Source(*dsn)
		if err != nil {
			return err
		}
		h, err := db.Open(driver, src, db.Workers(*poolSize), db.Timeout(2*time.Second))
		if err != nil {
			return err
		}
		defer h.Close()
		if *dbFill {
			ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			err := routedb.Fill(ctx, h.DB(), *target, splitComma(*dbUsers), 10000)
			cancel()
			if err != nil {
				return err
			}
		}
		o.db, o.dbQuery = h, q
	}
	route, err := request(o)
	if err != nil {
		return err
	}

	srv, err := asyncsip.New(asyncsip.Config{
		Listen: []string{*listen}, Workers: *workers, Logger: logger,
		ReadBuffer: 4 << 20, WriteBuffer: 4 << 20, DrainTimeout: 2 * time.Second,
	})
	if err != nil {
		return err
	}
	srv.Request(route)

	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return fmt.Errorf("cpuprofile: %w", err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			f.Close()
			return fmt.Errorf("cpuprofile: %w", err)
		}
		defer func() { pprof.StopCPUProfile(); f.Close() }()
	}

	if *memProfile != "" {
		if *memRate > 0 {
			runtime.MemProfileRate = *memRate
		}
		defer func() {
			if err := writeHeapProfile(*memProfile); err != nil {
				fmt.Fprintln(os.Stderr, "benchproxy: memprofile:", err)
			}
		}()
	}

	if err := srv.Start(); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "benchproxy: scenario=%s listening on %v target=%s workers=%d\n",
		*scenario, srv.Addrs(), *target, *workers)
	if ready != nil {
		ready(srv.Addrs())
	}
	<-ctx.Done()
	st := srv.Stats()
	fmt.Fprintf(os.Stderr, "benchproxy: received=%d sent=%d handoffs=%d stateless=%d retrans_absorbed=%d overload=%d drops=%d\n",
		st.Received, st.Sent, st.Handoffs, st.Stateless, st.RetransAbsorbed, st.Overload,
		st.DropParse+st.DropSize+st.DropHeaders+st.DropInvalid+st.DropOther+st.DropClosed)
	// Transactions in their RFC 3261 wait states (Timer K, ...) outlive the
	// last call by seconds: a drain cut short by the deadline is normal here.
	sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, asyncsip.ErrServerClosed) &&
		!errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("shutdown: %w", err)
	}
	return nil
}

// writeHeapProfile writes the heap profile after a GC, so that its
// allocation counts are up to date.
func writeHeapProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	runtime.GC()
	if err := pprof.Lookup("allocs").WriteTo(f, 0); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func splitComma(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool { return r == ',' })
}
