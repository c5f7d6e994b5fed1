// Command loadbalancer is a stateful SIP load balancer in front of trusted
// UASes: each new call goes to a destination of a set chosen by an
// algorithm (least active calls by default), dead destinations are taken
// out by OPTIONS probing and calls fail over from the failure route, every
// call is tracked (modules/dialog) with a per-destination limit of calls in
// progress and a maximum duration that ends it with a BYE to both sides.
//
//	go run ./examples/loadbalancer
//
// listens on udp:127.0.0.1:5060 and balances over sip:127.0.0.1:5070 and
// sip:127.0.0.1:5071; see README.md for the flags.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/asyncsip/asyncsip"
	"github.com/asyncsip/asyncsip/modules/dispatcher"
	"github.com/asyncsip/asyncsip/modules/metrics"
)

// options are the command line's settings.
type options struct {
	listen, dst, setsFile, set, algorithm, trusted, metrics, routeKey string
	limit, failAfter, recoverAfter, workers                           int
	maxDuration, ping, branchTimeout, probeInterval, probeTimeout     time.Duration
	verbose                                                           bool
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("loadbalancer", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.listen, "listen", "udp:127.0.0.1:5060", "listen address, transport:host:port")
	fs.StringVar(&o.dst, "dst", "sip:127.0.0.1:5070,sip:127.0.0.1:5071", "comma-separated destination URIs")
	fs.StringVar(&o.setsFile, "sets", "", "JSON file of destination sets (replaces -dst and -algorithm); SIGHUP reloads it")
	fs.StringVar(&o.set, "set", "", "the set of the -sets file calls go to (default the first)")
	fs.StringVar(&o.algorithm, "algorithm", "least-loaded", "round-robin, weighted, hash-callid, hash-from-user, hash-ruri-user, priority or least-loaded")
	fs.IntVar(&o.limit, "limit", 100, "calls in progress per destination (0: no limit); 503 when every destination is full")
	fs.DurationVar(&o.maxDuration, "max-duration", time.Hour, "a call this long after its 200 is ended with BYE to both sides (0: never)")
	fs.DurationVar(&o.ping, "ping", 0, "in-dialog OPTIONS to both sides of every call at this interval (0: none)")
	fs.DurationVar(&o.branchTimeout, "branch-timeout", 2*time.Second, "fail over when a destination has not rung within this")
	fs.DurationVar(&o.probeInterval, "probe-interval", 2*time.Second, "OPTIONS probe of each destination every")
	fs.DurationVar(&o.probeTimeout, "probe-timeout", time.Second, "a probe without answer by then failed")
	fs.IntVar(&o.failAfter, "fail-after", 3, "failed probes in a row that take a destination out")
	fs.IntVar(&o.recoverAfter, "recover-after", 2, "answered probes in a row that bring it back")
	fs.StringVar(&o.trusted, "trusted", "127.0.0.1/32", "comma-separated IPs or CIDR prefixes allowed to place calls; others get 403")
	fs.StringVar(&o.metrics, "metrics", "", "serve Prometheus metrics on this address, e.g. 127.0.0.1:9090 (keep it private)")
	fs.StringVar(&o.routeKey, "route-key", "", "file holding the Record-Route signing key (created if missing); calls then survive a restart")
	fs.IntVar(&o.workers, "workers", 0, "event loops (default one per CPU)")
	fs.BoolVar(&o.verbose, "v", false, "debug logs")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	return o, nil
}

// config turns the options into the Balancer's configuration.
func (o options) config(log *slog.Logger) (Config, error) {
	cfg := Config{
		Set: o.set, Limit: o.limit, MaxDuration: o.maxDuration, PingInterval: o.ping, BranchTimeout: o.branchTimeout,
		Probe: dispatcher.ProbeConfig{Interval: o.probeInterval, Timeout: o.probeTimeout,
			FailAfter: o.failAfter, RecoverAfter: o.recoverAfter, FailureCodes: []int{5}},
		Logger: log,
	}
	for _, s := range strings.Split(o.trusted, ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		p, err := netip.ParsePrefix(s)
		if err != nil {
			a, aerr := netip.ParseAddr(s)
			if aerr != nil {
				return cfg, fmt.Errorf("-trusted %q: not an IP or CIDR prefix", s)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		cfg.Trusted = append(cfg.Trusted, p.Masked())
	}
	if o.setsFile != "" {
		var err error
		cfg.Sets, err = loadSets(o.setsFile)
		return cfg, err
	}
	var alg dispatcher.Algorithm
	if err := alg.UnmarshalText([]byte(o.algorithm)); err != nil {
		return cfg, fmt.Errorf("-algorithm: %w", err)
	}
	set := dispatcher.SetConfig{ID: "dst", Algorithm: alg}
	for _, u := range strings.Split(o.dst, ",") {
		if u = strings.TrimSpace(u); u != "" {
			set.Targets = append(set.Targets, dispatcher.Target{URI: u})
		}
	}
	cfg.Sets = []dispatcher.SetConfig{set}
	return cfg, nil
}

// loadSets reads a JSON file of destination sets.
func loadSets(path string) ([]dispatcher.SetConfig, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	sets, err := dispatcher.LoadSets(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return sets, nil
}

// Reload replaces the destination sets with those of the JSON file at
// path, while calls are routed: destinations kept keep their state and
// calls, removed ones get no new call, added ones start up. A file that
// does not load, or lacks the set calls go to, changes nothing.
func (b *Balancer) Reload(path string) error {
	sets, err := loadSets(path)
	if err != nil {
		return err
	}
	found := false
	for _, s := range sets {
		found = found || s.ID == b.cfg.Set
	}
	if !found {
		return fmt.Errorf("%s: %w: %q", path, dispatcher.ErrUnknownSet, b.cfg.Set)
	}
	return b.d.Replace(sets...)
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "loadbalancer:", err)
		}
		os.Exit(2)
	}
}

// run serves until ctx ends.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	level := slog.LevelInfo
	if o.verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	cfg, err := o.config(log)
	if err != nil {
		return err
	}
	b, err := New(cfg)
	if err != nil {
		return err
	}
	var exts []asyncsip.Extension
	if o.metrics != "" {
		exp := metrics.New(metrics.Config{Addr: o.metrics, Logger: log})
		exp.Registry().MustRegister(b.Tracker().Collector(Profile), b.Dispatcher().Collector())
		exts = append(exts, exp)
	}
	srv, err := asyncsip.New(asyncsip.Config{Listen: []string{o.listen}, Workers: o.workers,
		Extensions: exts, RouteKeyFile: o.routeKey, Logger: log, DrainTimeout: 5 * time.Second})
	if err != nil {
		return err
	}
	srv.SetRoutes(b.Routes())
	if err := srv.Start(); err != nil {
		return err
	}
	prober, err := b.Dispatcher().Start(srv.Core(), srv.Group())
	if err != nil {
		_ = srv.Shutdown(context.Background())
		return err
	}
	for _, s := range b.Dispatcher().Sets() {
		if s.ID == b.cfg.Set {
			uris := make([]string, len(s.Targets))
			for i, t := range s.Targets {
				uris[i] = t.URI
			}
			fmt.Fprintf(stdout, "load balancer on %s: %s over %s, %d calls per destination at most\n",
				srv.Addrs()[0], s.Algorithm, strings.Join(uris, " "), b.cfg.Limit)
		}
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for done := false; !done; {
		select {
		case <-ctx.Done():
			done = true
		case <-hup:
			if o.setsFile == "" {
				log.Warn("loadbalancer: SIGHUP ignored: destinations come from -dst, not a -sets file")
			} else if err := b.Reload(o.setsFile); err != nil {
				log.Error("loadbalancer: reload failed; the sets in use stay", "file", o.setsFile, "err", err)
			} else {
				log.Info("loadbalancer: destination sets reloaded", "file", o.setsFile)
			}
		}
	}
	prober.Stop()
	sctx, cancel := context.WithTimeout(context.Background(), 6*time.Second)
	defer cancel()
	err = srv.Shutdown(sctx)
	if errors.Is(err, context.DeadlineExceeded) {
		return nil
	}
	return err
}
