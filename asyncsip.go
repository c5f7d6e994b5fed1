package asyncsip

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/asyncsip/asyncsip/async"
	"github.com/asyncsip/asyncsip/internal/sipdns"
	"github.com/asyncsip/asyncsip/reactor"
	"github.com/asyncsip/asyncsip/tm"
	"github.com/asyncsip/asyncsip/transport"
)

// Config configures a Server. The zero value listens on udp:127.0.0.1:5060
// with one worker per CPU.
type Config struct {
	// Listen lists the listening sockets as "transport:host:port" with
	// transport udp, tcp, tls, ws or wss ("udp:127.0.0.1:5060",
	// "tcp:[::1]:5060", "wss:0.0.0.0:8443"). Default udp:127.0.0.1:5060.
	// The first listener of a kind and address family sends what leaves
	// over that kind (see docs/ARCHITECTURE.md, "Transports").
	Listen []string
	// Stream configures tcp:, tls:, ws: and wss: (limits, timeouts,
	// certificates).
	Stream transport.StreamConfig
	// Advertise is the host put in Via and Record-Route instead of the
	// bound address (needed when a listener is bound to 0.0.0.0 or ::), as
	// "host" or "host:port"; a port replaces every listener's bound port
	// (for a NAT mapping of a single listener). Default: the bound
	// address, or 127.0.0.1 when unspecified.
	Advertise string
	// Workers is the number of event loops (default runtime.GOMAXPROCS(0)).
	Workers int
	// Core configures the transaction layer and proxy core as it is
	// (tm.Config: timers, limits, Record-Route, the overload and forking
	// bounds, security, capture, the await observer). Its Logger defaults
	// to Logger. Its Resolver and Lookup answer next hops before, or
	// instead of, the built-in DNS resolver (see DNS).
	Core tm.Config
	// RouteKeyFile, when set and Core.Security.RouteKey is empty, is where
	// the key that signs our Record-Route lives: read when the file exists
	// (it must hold at least 16 bytes), else created with 32 random bytes
	// (mode 0600). With it, dialogs survive a restart; without either, a
	// random key per process refuses in-dialog requests of calls set up
	// before the restart (403).
	RouteKeyFile string
	// DNS configures the built-in resolver of next-hop host names (RFC 3263:
	// NAPTR, SRV, A/AAAA, the resolver of modules/dns). By default a Relay
	// to "sip:bob@gw.example.com" queries the servers of /etc/resolv.conf,
	// asynchronously (the route is suspended meanwhile, no loop blocks),
	// through a TTL cache; see DNSConfig and Server.DNS. Core.Lookup, when
	// set, replaces it.
	DNS DNSConfig
	// ReadBuffer and WriteBuffer set the UDP socket buffers when > 0.
	ReadBuffer, WriteBuffer int
	// DrainTimeout bounds the graceful drain done by Serve when its context
	// ends (default 5 s).
	DrainTimeout time.Duration
	// Logger receives logs (default slog.Default()).
	Logger *slog.Logger
	// Extensions are wired into the server's lifecycle (see Extension):
	// metrics.New of modules/metrics, for Prometheus metrics and pprof.
	Extensions []Extension
}

// Extension is something that lives as long as a Server: New attaches it
// to the core and the loops, Start starts it before the sockets open, and
// Shutdown closes it last. An Extension that is also an async.Observer
// observes every await on the routes' Contexts, unless Config.Core.Observer
// is set. modules/metrics' *Exporter is one:
//
//	srv, err := asyncsip.New(asyncsip.Config{
//		Extensions: []asyncsip.Extension{metrics.New(metrics.Config{Addr: "127.0.0.1:9090"})},
//	})
type Extension interface {
	// Attach is called once by New, when the core and its loops exist.
	Attach(core *tm.Server, loops *reactor.Group) error
	// Start is called by Start before the listeners open; it must not block.
	Start() error
	// Close is called by Shutdown, last, and by a Start whose listeners
	// failed to open; it must be safe to call more than once.
	Close(ctx context.Context) error
}

// ErrServerClosed is returned by Serve and Start after Shutdown.
var ErrServerClosed = errors.New("asyncsip: server closed")

// Server is a running proxy: N loops, their sockets and the tm core.
type Server struct {
	cfg   Config
	log   *slog.Logger
	group *reactor.Group
	core  *tm.Server
	mu    sync.Mutex
	udps  []*transport.UDP
	hub   *transport.Hub      // stream transports' shared state
	stps  []*transport.Stream // tcp, tls, ws, wss listeners
	addrs []netip.AddrPort    // bound addresses in Listen order
	state int                 // 0 new, 1 started, 2 closed
	rt    tm.Routes
	done  chan struct{}
	once  sync.Once
	dns   *sipdns.Resolver // built-in next-hop resolver (nil: none)
}

// New creates a server: its loops and tm core. Register routes, then call
// Serve (or Start).
func New(cfg Config) (*Server, error) {
	if len(cfg.Listen) == 0 {
		cfg.Listen = []string{"udp:127.0.0.1:5060"}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.DrainTimeout <= 0 {
		cfg.DrainTimeout = 5 * time.Second
	}
	for _, l := range cfg.Listen {
		if _, _, err := parseListen(l); err != nil {
			return nil, err
		}
	}
	if cfg.RouteKeyFile != "" && len(cfg.Core.Security.RouteKey) == 0 {
		key, err := loadRouteKey(cfg.RouteKeyFile)
		if err != nil {
			return nil, err
		}
		cfg.Core.Security.RouteKey = key
	}
	g, err := reactor.NewGroup(cfg.Workers, reactor.Config{Logger: cfg.Logger})
	if err != nil {
		return nil, fmt.Errorf("asyncsip: %w", err)
	}
	s := &Server{cfg: cfg, log: cfg.Logger, group: g, done: make(chan struct{})}
	resolver, lookup, err := s.newResolver()
	if err != nil {
		_ = g.Stop(context.Background())
		return nil, err
	}
	core := cfg.Core
	core.Resolver, core.Lookup = resolver, lookup
	if core.Logger == nil {
		core.Logger = cfg.Logger
	}
	if core.Observer == nil {
		for _, x := range cfg.Extensions {
			if o, ok := x.(async.Observer); ok {
				core.Observer = o
				break
			}
		}
	}
	s.core = tm.NewServer(g.Loops(), core, tm.Routes{})
	maxMsg := cfg.Core.Limits.MaxMessage
	if maxMsg <= 0 {
		maxMsg = 65507 // tm's default
	}
	s.hub = transport.NewHub(g, s.coreCallbacks(), cfg.Stream, maxMsg, cfg.Logger)
	for _, x := range cfg.Extensions {
		if err := x.Attach(s.core, g); err != nil {
			_ = g.Stop(context.Background())
			s.closeDNS(context.Background())
			return nil, fmt.Errorf("asyncsip: %w", err)
		}
	}
	return s, nil
}

func parseListen(s string) (network, addr string, err error) {
	network, addr, ok := strings.Cut(s, ":")
	if !ok || addr == "" {
		return "", "", fmt.Errorf("asyncsip: listen %q: want transport:host:port", s)
	}
	switch network {
	case "udp", "tcp", "tls", "ws", "wss":
	default:
		return "", "", fmt.Errorf("asyncsip: listen %q: transport %q is not supported (udp, tcp, tls, ws, wss)", s, network)
	}
	return network, addr, nil
}

// Request sets the request route.
func (s *Server) Request(fn func(c *tm.Context)) { s.setRoute(func(r *tm.Routes) { r.Request = fn }) }

// Reply sets the reply route (one per branch response).
func (s *Server) Reply(fn func(c *tm.Context)) { s.setRoute(func(r *tm.Routes) { r.Reply = fn }) }

// Failure sets the failure route (after every branch failed).
func (s *Server) Failure(fn func(c *tm.Context)) { s.setRoute(func(r *tm.Routes) { r.Failure = fn }) }

// Screen sets the screen that runs first for every request and may only
// drop it silently (see tm.Routes.Screen): scanners, banned sources.
func (s *Server) Screen(fn func(req *sip.Request, src netip.AddrPort) (drop bool)) {
	s.setRoute(func(r *tm.Routes) { r.Screen = fn })
}

// Branch sets the branch route (per outgoing branch).
func (s *Server) Branch(fn func(c *tm.Context)) {
	s.setRoute(func(r *tm.Routes) { r.Branch = fn })
}

// SetRoutes replaces every route at once, also while serving: transactions
// in progress keep the routes they started with.
func (s *Server) SetRoutes(r tm.Routes) {
	s.mu.Lock()
	s.rt = r
	s.mu.Unlock()
	s.core.SetRoutes(r)
}

func (s *Server) setRoute(f func(*tm.Routes)) {
	s.mu.Lock()
	f(&s.rt)
	r := s.rt
	s.mu.Unlock()
	s.core.SetRoutes(r)
}

// Core returns the transaction layer, for what the facade does not wrap
// (Send of originated requests, ConnectionFailed, Tables).
func (s *Server) Core() *tm.Server { return s.core }

// Stats returns the transaction layer's counters. It is safe from any
// goroutine.
func (s *Server) Stats() tm.StatsSnapshot { return s.core.Stats() }

// Group returns the event loops (for timer jobs: Group().Every).
func (s *Server) Group() *reactor.Group { return s.group }

// Addrs returns the bound addresses, once started.
func (s *Server) Addrs() []netip.AddrPort {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]netip.AddrPort(nil), s.addrs...)
}

// StreamStats returns the counters of the TCP, TLS and WebSocket
// transports. It is safe from any goroutine.
func (s *Server) StreamStats() transport.StreamStats { return s.hub.Stats() }

// coreCallbacks points the transports at the tm core.
func (s *Server) coreCallbacks() transport.Core {
	core := s.core
	return transport.Core{
		Receive: func(l *reactor.Loop, data []byte, from netip.AddrPort, tp transport.Transport) {
			core.Receive(l, data, from, tp)
		},
		ConnectionFailed: func(tp transport.Transport, dst netip.AddrPort) { core.ConnectionFailed(tp, dst) },
	}
}

// Start opens the sockets and starts the loops without blocking.
func (s *Server) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch s.state {
	case 1:
		return errors.New("asyncsip: already started")
	case 2:
		return ErrServerClosed
	}
	for _, x := range s.cfg.Extensions {
		if err := x.Start(); err != nil {
			return fmt.Errorf("asyncsip: %w", err)
		}
	}
	for _, l := range s.cfg.Listen {
		network, addr, _ := parseListen(l)
		var tp tm.Transport
		if network == "udp" {
			udp, err := transport.ListenUDP(s.group, reactor.UDPConfig{
				Addr: addr, MaxDatagram: s.cfg.Core.Limits.MaxMessage,
				ReadBuffer: s.cfg.ReadBuffer, WriteBuffer: s.cfg.WriteBuffer,
			}, s.cfg.Advertise, s.coreCallbacks())
			if err != nil {
				s.closeListeners()
				return fmt.Errorf("asyncsip: listen %s: %w", l, err)
			}
			s.udps = append(s.udps, udp)
			tp = udp
		} else {
			st, err := s.hub.Listen(strings.ToUpper(network), addr, s.cfg.Advertise)
			if err != nil {
				s.closeListeners()
				return fmt.Errorf("asyncsip: listen %s: %w", l, err)
			}
			s.stps = append(s.stps, st)
			tp = st
		}
		s.addrs = append(s.addrs, tp.LocalAddr())
		s.core.AddTransport(tp)
	}
	s.group.Start()
	s.state = 1
	for _, st := range s.stps {
		st.Serve()
	}
	for i, a := range s.addrs {
		network, _, _ := parseListen(s.cfg.Listen[i])
		s.log.Info("asyncsip: listening", "addr", network+":"+a.String(), "workers", s.group.Len())
	}
	return nil
}

// closeListeners undoes a failed Start.
func (s *Server) closeListeners() {
	for _, u := range s.udps {
		_ = u.Close()
	}
	s.udps, s.addrs = nil, nil
	s.hub.Close()
	s.stps = nil
	s.closeExtensions(context.Background())
}

// closeExtensions closes every extension, logging what fails.
func (s *Server) closeExtensions(ctx context.Context) {
	for _, x := range s.cfg.Extensions {
		if err := x.Close(ctx); err != nil {
			s.log.Warn("asyncsip: closing an extension", "err", err)
		}
	}
}

// Serve starts the server and blocks until ctx ends, then drains for up to
// Config.DrainTimeout and stops.
func (s *Server) Serve(ctx context.Context) error {
	if err := s.Start(); err != nil {
		return err
	}
	select {
	case <-ctx.Done():
	case <-s.done:
		return ErrServerClosed
	}
	sctx, cancel := context.WithTimeout(context.Background(), s.cfg.DrainTimeout)
	defer cancel()
	return s.Shutdown(sctx)
}

// Shutdown drains gracefully: new requests get 503 with Retry-After while
// transactions in progress (suspended ones included) finish, up to ctx's
// deadline; then the loops stop and the sockets close. Responses keep
// flowing during the drain so that calls in progress complete.
func (s *Server) Shutdown(ctx context.Context) error {
	var err error
	s.once.Do(func() {
		s.mu.Lock()
		started := s.state == 1
		s.state = 2
		s.mu.Unlock()
		defer close(s.done)
		defer s.closeExtensions(ctx)
		if !started {
			err = s.group.Stop(ctx)
			s.closeDNS(ctx)
			return
		}
		s.drain(ctx)
		// Close ends every transaction (suspended ones get 503) and stops
		// their timers; the loops then only have to run the close tasks,
		// which a short grace covers even when the drain used up ctx.
		s.core.Close()
		stopCtx := ctx
		if ctx.Err() != nil {
			var cancel context.CancelFunc
			stopCtx, cancel = context.WithTimeout(context.Background(), time.Second)
			defer cancel()
		}
		s.closeDNS(stopCtx) // after Close: no transaction awaits a lookup any more
		err = s.group.Stop(stopCtx)
		if err == nil {
			err = ctx.Err() // report a drain cut short by the deadline
		}
		for _, u := range s.udps {
			_ = u.Close()
		}
		s.hub.Close()
	})
	return err
}
