// Command proxy is asyncsip's flagship example: a registrar with digest
// authentication and a proxy that routes calls to registered users
// (parallel forking) or to gateways by longest-prefix least-cost routing
// with failover (serial forking), with an optional REST hook per call. Its
// data lives in an embedded SQLite file, or in PostgreSQL with -db.
//
//	go run ./examples/proxy                     # serve on udp:127.0.0.1:5060
//	go run ./examples/proxy user add alice secret
//	go run ./examples/proxy gw add 1 127.0.0.1:5080 -prefix +1
package main

import (
	"context"
	"crypto/rand"
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
	"github.com/asyncsip/asyncsip/async"
	"github.com/asyncsip/asyncsip/modules/auth"
	"github.com/asyncsip/asyncsip/modules/db"
	"github.com/asyncsip/asyncsip/modules/nat"
	"github.com/asyncsip/asyncsip/modules/ratelimit"
	"github.com/asyncsip/asyncsip/modules/rest"
	"github.com/asyncsip/asyncsip/modules/shared"
	"github.com/asyncsip/asyncsip/reactor"
	"github.com/asyncsip/asyncsip/tm"
	"github.com/asyncsip/asyncsip/transport"
)

var randRead = rand.Read

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "proxy:", err)
		os.Exit(1)
	}
}

func run(args []string, stdout, stderr io.Writer) error {
	cfg, rest, err := parseConfig(args)
	if errors.Is(err, flag.ErrHelp) {
		printUsage(stdout)
		return nil
	}
	if err != nil {
		return err
	}
	if len(rest) > 0 {
		return runCLI(cfg, rest, stdout)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return serve(ctx, cfg, stdout, stderr)
}

// serve runs the proxy until ctx ends, then drains.
func serve(ctx context.Context, cfg Config, stdout, stderr io.Writer) error {
	level, _ := logLevel(cfg.LogLevel)
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	p, err := newProxy(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer p.close()
	keyFile, err := cfg.routeKeyFile()
	if err != nil {
		return err
	}
	srv, err := asyncsip.New(asyncsip.Config{Listen: cfg.Listen, Advertise: cfg.Advertise, Workers: cfg.Workers,
		Stream: transport.StreamConfig{CertFile: cfg.TLSCert, KeyFile: cfg.TLSKey},
		// The key that signs our Record-Route persists, so calls set up
		// before a restart can still be ended after it.
		RouteKeyFile: keyFile, Core: tm.Config{MaxBreadth: cfg.MaxFork},
		Logger: log, DrainTimeout: 5 * time.Second})
	if err != nil {
		return err
	}
	if cfg.NATPing > 0 {
		p.nat = nat.New(nat.Config{Interval: cfg.NATPing, OnGone: p.natGone(srv.Group())})
	}
	routes := p.Routes()
	if p.dlg != nil {
		routes = p.dlg.Routes(routes)
	}
	srv.SetRoutes(routes)
	if err := srv.Start(); err != nil {
		return err
	}
	stopNAT := func() {}
	if p.nat != nil {
		natJob, err := p.nat.Start(srv.Core(), srv.Group())
		if err != nil {
			return err
		}
		stopNAT = natJob.Stop // idempotent
		defer natJob.Stop()
	}
	job, err := srv.Group().Every(cfg.ExpireEvery, func(l *reactor.Loop) {
		async.Launch(l, p.expireBindings(time.Now()), func(r db.Result, err error) {
			if err != nil {
				log.Warn("expiring bindings failed", "err", err)
			} else if r.RowsAffected > 0 {
				log.Info("expired bindings removed", "count", r.RowsAffected)
			}
		})
		async.Launch(l, async.Blocking(p.loadGateways, async.Name("gateways.trust")), func(_ int, err error) {
			if err != nil {
				log.Warn("reloading the gateways' addresses failed; the previous ones stay trusted", "err", err)
			}
		})
	}, reactor.Skip)
	if err != nil {
		return err
	}
	defer job.Stop()
	if p.media != nil {
		health, err := p.media.rtp.StartHealth(srv.Group())
		if err != nil {
			return err
		}
		defer health.Stop()
	}
	if p.rl != nil {
		rlJob, err := p.rl.Start(srv.Group())
		if err != nil {
			return err
		}
		defer rlJob.Stop()
	}
	stopShared, err := p.startShared(srv.Group())
	if err != nil {
		return err
	}
	defer stopShared()
	where := "database " + redact(cfg.DB)
	if cfg.DB == "" {
		dsn, _ := cfg.dsn()
		where = "SQLite " + dsn
	}
	if cfg.Location != "" {
		where += ", bindings in " + redact(cfg.Location)
	}
	if cfg.Shared != "" {
		where += ", shared counts in " + redact(cfg.Shared)
	}
	fmt.Fprintf(stdout, "asyncsip proxy listening on %s (domain %s, %d workers); data in %s\n",
		listening(cfg.Listen, srv.Addrs()), cfg.Domain, srv.Group().Len(), where)
	fmt.Fprintln(stdout, "Ctrl-C stops it gracefully.")
	<-ctx.Done()
	stopNAT() // no keep-alive starts while the server drains
	fmt.Fprintln(stdout, "draining…")
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	// A second Ctrl-C stops at once.
	again, stop2 := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop2()
	go func() {
		<-again.Done()
		cancel()
	}()
	err = srv.Shutdown(sctx)
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		fmt.Fprintln(stdout, "stopped before every transaction finished")
		return nil
	}
	fmt.Fprintln(stdout, "stopped")
	return err
}

// newProxy opens the database and sets up the trust boundary: trusted
// peers, digest with failure bans, the rate limit and the bounded REST
// client.
func newProxy(ctx context.Context, cfg Config, log *slog.Logger) (*Proxy, error) {
	trust, err := newTrustSet(cfg.Trusted)
	if err != nil {
		return nil, err
	}
	dsn, err := cfg.dsn()
	if err != nil {
		return nil, err
	}
	store, err := OpenStore(ctx, dsn, cfg.Domain)
	if err != nil {
		return nil, fmt.Errorf("database: %w", err)
	}
	secret, err := cfg.secretBytes()
	if err != nil {
		store.Close()
		return nil, err
	}
	sc, err := openScale(cfg)
	if err != nil {
		store.Close()
		return nil, err
	}
	p := &Proxy{cfg: cfg, store: store, ch: newChallenger(cfg, secret, trust, log), log: log, trust: trust,
		scale: sc, loc: sc.loc}
	var rates shared.Rates // nil: each instance counts alone
	if sc.store != nil {
		p.ch.Nonces = sc.store.Nonces()
		rates = sc.store.Rates()
	}
	if cfg.Rate > 0 {
		p.rl = ratelimit.New(ratelimit.Config{Rate: float64(cfg.Rate), Burst: cfg.RateBurst, BanFor: cfg.RateBan,
			Exempt: trust.prefixes, Observer: rateLog{p}, Shared: rates})
	}
	p.dlg = newTracker(cfg, sc, p)
	if _, err := p.loadGateways(ctx); err != nil {
		store.Close()
		return nil, fmt.Errorf("database: %w", err)
	}
	if p.media, err = newMedia(cfg, log); err != nil {
		store.Close()
		return nil, err
	}
	if cfg.RESTHook != "" {
		p.rest, err = rest.NewClient(rest.Config{Timeout: cfg.RESTTimeout, ConnectTimeout: cfg.RESTTimeout,
			MaxConcurrent: cfg.RESTConcurrency, Queue: cfg.RESTQueue})
		if err != nil {
			store.Close()
			return nil, fmt.Errorf("rest hook: %w", err)
		}
	}
	return p, nil
}

// newChallenger is digest authentication as configured: the algorithms
// offered, nonces bound to the source (bind_nonce), and bans after
// auth_failures failures of a source (trusted peers are never counted).
func newChallenger(cfg Config, secret []byte, trust *trustSet, log *slog.Logger) *auth.Challenger {
	ch := auth.NewChallenger(cfg.Domain, secret)
	ch.Algorithms = nil
	for _, a := range cfg.Digest {
		ch.Algorithms = append(ch.Algorithms, auth.Algorithm(a))
	}
	ch.BindSource = cfg.BindNonce
	ch.Failures = ratelimit.NewFailures(ratelimit.FailureConfig{SourceLimit: cfg.AuthFailures,
		UserLimit: 3 * cfg.AuthFailures, BanFor: cfg.AuthBan, Exempt: trust.prefixes})
	ch.Logger = log
	return ch
}

func (p *Proxy) close() {
	p.media.close()
	if p.rest != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_ = p.rest.Close(ctx)
		cancel()
	}
	_ = p.store.Close()
	p.scale.close()
}

// listening names each listener with its bound port ("udp:127.0.0.1:5060,
// tcp:0.0.0.0:5060").
func listening(listen []string, addrs []netip.AddrPort) string {
	out := make([]string, 0, len(listen))
	for i, l := range listen {
		proto, _, _ := strings.Cut(l, ":")
		if i < len(addrs) {
			l = proto + ":" + addrs[i].String()
		}
		out = append(out, l)
	}
	return strings.Join(out, ", ")
}

// redact hides a password in a DSN for the banner.
func redact(dsn string) string {
	for i := 0; i+3 < len(dsn); i++ {
		if dsn[i:i+3] == "://" {
			rest := dsn[i+3:]
			at := -1
			for j := 0; j < len(rest); j++ {
				if rest[j] == '@' {
					at = j
					break
				}
				if rest[j] == '/' {
					break
				}
			}
			if at < 0 {
				return dsn
			}
			cred := rest[:at]
			for j := 0; j < len(cred); j++ {
				if cred[j] == ':' {
					return dsn[:i+3] + cred[:j] + ":***" + rest[at:]
				}
			}
			return dsn
		}
	}
	return dsn
}
