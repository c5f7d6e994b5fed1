package asyncsip

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/asyncsip/asyncsip/async"
	"github.com/asyncsip/asyncsip/internal/sipdns"
	"github.com/asyncsip/asyncsip/reactor"
	"github.com/asyncsip/asyncsip/tm"
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
	Stream StreamConfig
	// Advertise is the host put in Via and Record-Route instead of the
	// bound address (needed when a listener is bound to 0.0.0.0 or ::), as
	// "host" or "host:port"; a port replaces every listener's bound port
	// (for a NAT mapping of a single listener). Default: the bound
	// address, or 127.0.0.1 when unspecified.
	Advertise string
	// Workers is the number of event loops (default runtime.GOMAXPROCS(0)).
	Workers int
	// Timers, Limits and the proxy settings are passed to the transaction
	// layer; see tm.Config.
	Timers tm.Timers
	// Limits bound incoming messages.
	Limits tm.Limits
	// NoRecordRoute stops Record-Route insertion.
	NoRecordRoute bool
	// AbandonCode answers requests whose route did nothing (default 500).
	AbandonCode int
	// MaxTransactions, MaxSuspended and MaxBreadth are the overload and
	// forking bounds of tm.Config (defaults 100000 per loop, 50000, 60).
	MaxTransactions, MaxSuspended, MaxBreadth int
	// MaxTransactionBytes bounds the memory of transactions across all
	// workers (tm.Config.MaxTransactionBytes, default
	// tm.DefaultMaxTransactionBytes).
	MaxTransactionBytes int64
	// Security holds tm's trust-boundary switches (tm.Security); the zero
	// value is the secure default.
	Security tm.Security
	// RouteKeyFile, when set and Security.RouteKey is empty, is where the
	// key that signs our Record-Route lives: read when the file exists (it
	// must hold at least 16 bytes), else created with 32 random bytes
	// (mode 0600). With it, dialogs survive a restart; without either, a
	// random key per process refuses in-dialog requests of calls set up
	// before the restart (403).
	RouteKeyFile string
	// Resolver resolves next-hop hosts synchronously, before any DNS
	// lookup (default: IP literals and localhost); a host it does not
	// answer goes to Lookup (tm.Config.Resolver).
	Resolver func(host string) (netip.Addr, error)
	// Lookup, when set, resolves the next-hop host names that Resolver does
	// not answer, asynchronously (tm.Config.Lookup), instead of the built-in
	// DNS resolver: DNS is then ignored and no resolver is created.
	Lookup func(uri string) async.Op[tm.NextHop]
	// DNS configures the built-in resolver of next-hop host names (RFC 3263:
	// NAPTR, SRV, A/AAAA, the resolver of modules/dns). By default a Relay
	// to "sip:bob@gw.example.com" queries the servers of /etc/resolv.conf,
	// asynchronously (the route is suspended meanwhile, no loop blocks),
	// through a TTL cache; see DNSConfig and Server.DNS.
	DNS DNSConfig
	// ReadBuffer and WriteBuffer set the UDP socket buffers when > 0.
	ReadBuffer, WriteBuffer int
	// DrainTimeout bounds the graceful drain done by Serve when its context
	// ends (default 5 s).
	DrainTimeout time.Duration
	// Logger receives logs (default slog.Default()).
	Logger *slog.Logger
	// MetricsAddr, when set, serves Prometheus metrics (/metrics) and pprof
	// (/debug/pprof/) on this HTTP address, e.g. "127.0.0.1:9090". Keep it
	// private. See modules/metrics and Server.Metrics.
	MetricsAddr string
	// Capture, when set, sees every SIP message received and sent (see
	// tm.CaptureEvent); modules/hep's Exporter.Capture sends them to Homer.
	// It runs on the loops: it must not block and must copy ev.Data to
	// keep it.
	Capture func(ev tm.CaptureEvent)
}

// DNSConfig configures the resolver that Server uses for next-hop host
// names (Config.DNS). The zero value resolves with the nameservers of
// /etc/resolv.conf. A name that does not exist (NXDOMAIN, no address)
// answers a request left at its Relay 404; a timeout or a server failure
// answers 503.
type DNSConfig struct {
	// Disabled turns host-name resolution off: only Resolver's answers (IP
	// literals and localhost by default) are next hops, any other host
	// answers 503 (tm.ErrNoRoute).
	Disabled bool
	// CacheOnly never queries: a host resolves only from what the cache
	// holds, which the routes fill by awaiting Server.DNS().Resolve; any
	// other host answers 503 (an error matching tm.ErrNoRoute).
	CacheOnly bool
	// Servers are the recursive servers, "ip:port" ("127.0.0.1:53"), asked
	// in order; empty means the nameservers of /etc/resolv.conf (when that
	// file is unusable New logs a warning and resolution is disabled).
	Servers []string
	// Timeout bounds one query to one server (default 2 s); a resolution
	// with no answer fails after Timeout × Attempts per server.
	Timeout time.Duration
	// Attempts is how many rounds over Servers are tried (default 2).
	Attempts int
	// CacheSize bounds the cached answers (default 10000; < 0: no cache).
	CacheSize int
	// MaxTTL caps how long an answer is cached (default 1 h); NegativeTTL
	// is how long "no such name" is (default 30 s; < 0: not cached).
	MaxTTL, NegativeTTL time.Duration
	// IPv4Only skips AAAA queries. It is implied when every listener is
	// bound to an IPv4 address.
	IPv4Only bool
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
	socks []*reactor.UDPSocket
	hub   *hub               // stream transports' shared state
	stps  []*streamTransport // tcp, tls, ws, wss listeners
	addrs []netip.AddrPort   // bound addresses in Listen order
	state int                // 0 new, 1 started, 2 closed
	rt    tm.Routes
	done  chan struct{}
	once  sync.Once
	obs   observability    // metrics exporter (observe.go)
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
	if cfg.RouteKeyFile != "" && len(cfg.Security.RouteKey) == 0 {
		key, err := loadRouteKey(cfg.RouteKeyFile)
		if err != nil {
			return nil, err
		}
		cfg.Security.RouteKey = key
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
	s.obs.init(cfg)
	s.core = tm.NewServer(g.Loops(), tm.Config{
		Timers: cfg.Timers, Limits: cfg.Limits, NoRecordRoute: cfg.NoRecordRoute,
		AbandonCode: cfg.AbandonCode, Resolver: resolver, Lookup: lookup, Logger: cfg.Logger,
		MaxTransactions: cfg.MaxTransactions, MaxSuspended: cfg.MaxSuspended, MaxBreadth: cfg.MaxBreadth,
		Capture: cfg.Capture, Observer: s.obs.observer(),
		MaxTransactionBytes: cfg.MaxTransactionBytes, Security: cfg.Security,
	}, tm.Routes{})
	maxMsg := cfg.Limits.MaxMessage
	if maxMsg <= 0 {
		maxMsg = 65507 // tm's default
	}
	s.hub = newHub(cfg.Stream, maxMsg, g, s.core, cfg.Logger)
	if err := s.obs.watch(s.core, g); err != nil {
		_ = g.Stop(context.Background())
		s.closeDNS(context.Background())
		return nil, err
	}
	return s, nil
}

// newResolver builds the next-hop resolution of tm.Config from Config:
// the user's Resolver and Lookup win; otherwise the built-in RFC 3263
// resolver (Config.DNS) answers host names, asynchronously (Lookup) or
// from its cache only (Resolver).
func (s *Server) newResolver() (func(string) (netip.Addr, error), func(string) async.Op[tm.NextHop], error) {
	cfg := s.cfg
	if cfg.Lookup != nil || cfg.DNS.Disabled {
		return cfg.Resolver, cfg.Lookup, nil
	}
	d := cfg.DNS
	r, err := sipdns.NewResolver(sipdns.Config{
		Servers: d.Servers, Timeout: d.Timeout, Attempts: d.Attempts, CacheSize: d.CacheSize,
		MaxTTL: d.MaxTTL, NegativeTTL: d.NegativeTTL,
		Transports: dnsTransports(cfg.Listen), IPv4Only: d.IPv4Only || ipv4Only(cfg.Listen),
	})
	if err != nil {
		if len(d.Servers) == 0 {
			// No usable /etc/resolv.conf: serve without DNS rather than not at all.
			s.log.Warn("asyncsip: next-hop host names will not resolve (set Config.DNS.Servers)", "err", err)
			return cfg.Resolver, nil, nil
		}
		return nil, nil, fmt.Errorf("asyncsip: dns: %w", err)
	}
	s.dns = r
	if d.CacheOnly {
		if cfg.Resolver == nil {
			return r.Lookup, nil, nil
		}
		user := cfg.Resolver
		return func(host string) (netip.Addr, error) {
			if a, err := user(host); err == nil {
				return a, nil
			}
			return r.Lookup(host)
		}, nil, nil
	}
	return cfg.Resolver, r.NextHop, nil
}

// dnsTransports are the transports the listeners can send on, in the
// resolver's order of preference: SRV and NAPTR records for others are
// skipped.
func dnsTransports(listen []string) []string {
	have := map[string]bool{}
	for _, l := range listen {
		network, _, _ := parseListen(l)
		have[network] = true
	}
	var out []string
	for _, tp := range []string{"udp", "tcp", "tls", "ws", "wss"} {
		if have[tp] {
			out = append(out, tp)
		}
	}
	return out
}

// ipv4Only reports whether every listener is bound to an IPv4 address (an
// AAAA answer could not be sent to).
func ipv4Only(listen []string) bool {
	for _, l := range listen {
		_, addr, _ := parseListen(l)
		ap, err := netip.ParseAddrPort(addr)
		if err != nil || !ap.Addr().Unmap().Is4() {
			return false
		}
	}
	return true
}

// DNS returns the built-in resolver of next-hop host names (a
// *dns.Resolver of modules/dns), or nil when Config.Lookup is set,
// Config.DNS.Disabled, or no DNS server is known. Routes may await its
// Resolve for every target of a name (failover), and with
// Config.DNS.CacheOnly that is what fills the cache that Relay reads. It is
// closed by Shutdown.
func (s *Server) DNS() *sipdns.Resolver { return s.dns }

// closeDNS closes the built-in resolver: its queries in progress end.
func (s *Server) closeDNS(ctx context.Context) {
	if s.dns == nil {
		return
	}
	if err := s.dns.Close(ctx); err != nil {
		s.log.Warn("asyncsip: closing the DNS resolver", "err", err)
	}
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

// Core returns the transaction layer (for stats and advanced use).
func (s *Server) Core() *tm.Server { return s.core }

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
func (s *Server) StreamStats() StreamStats { return s.hub.stats() }

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
	if err := s.obs.start(); err != nil {
		return fmt.Errorf("asyncsip: %w", err)
	}
	for _, l := range s.cfg.Listen {
		network, addr, _ := parseListen(l)
		if network != "udp" {
			st, err := s.hub.listen(strings.ToUpper(network), addr, s.cfg.Advertise)
			if err != nil {
				s.closeListeners()
				return fmt.Errorf("asyncsip: listen %s: %w", l, err)
			}
			s.stps = append(s.stps, st)
			s.addrs = append(s.addrs, st.LocalAddr())
			s.core.AddTransport(st)
			continue
		}
		tp := &udpTransport{}
		sock, err := reactor.ListenUDP(s.group, reactor.UDPConfig{
			Addr: addr, MaxDatagram: s.cfg.Limits.MaxMessage,
			ReadBuffer: s.cfg.ReadBuffer, WriteBuffer: s.cfg.WriteBuffer,
		}, func(lp *reactor.Loop, p *reactor.Packet) { s.core.Receive(lp, p.Data, p.From, tp) })
		if err != nil {
			s.closeListeners()
			return fmt.Errorf("asyncsip: listen %s: %w", l, err)
		}
		tp.sock = sock
		tp.host, tp.port = advertised(sock.LocalAddr(), s.cfg.Advertise)
		s.socks = append(s.socks, sock)
		s.addrs = append(s.addrs, sock.LocalAddr())
		s.core.AddTransport(tp)
	}
	s.group.Start()
	s.state = 1
	for _, st := range s.stps {
		st.serve()
	}
	for i, a := range s.addrs {
		network, _, _ := parseListen(s.cfg.Listen[i])
		s.log.Info("asyncsip: listening", "addr", network+":"+a.String(), "workers", s.group.Len())
	}
	return nil
}

// closeListeners undoes a failed Start.
func (s *Server) closeListeners() {
	for _, so := range s.socks {
		_ = so.Close()
	}
	s.socks, s.addrs = nil, nil
	s.hub.close(s.stps)
	s.stps = nil
	s.obs.close(context.Background())
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
		defer s.obs.close(ctx)
		if !started {
			err = s.group.Stop(ctx)
			s.closeDNS(ctx)
			return
		}
		s.core.Drain()
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
	wait:
		for s.core.Stats().InProgress > 0 {
			select {
			case <-ctx.Done():
				s.log.Warn("asyncsip: drain deadline reached", "in_progress", s.core.Stats().InProgress)
				break wait
			case <-tick.C:
			}
		}
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
		for _, so := range s.socks {
			_ = so.Close()
		}
		s.hub.close(s.stps)
	})
	return err
}

// udpTransport adapts a reactor UDP socket to tm.Transport.
type udpTransport struct {
	sock *reactor.UDPSocket
	host string
	port int
}

func (t *udpTransport) Send(l *reactor.Loop, b []byte, to netip.AddrPort) error {
	return t.sock.Send(l, b, to)
}
func (t *udpTransport) Protocol() string          { return "UDP" }
func (t *udpTransport) Advertised() (string, int) { return t.host, t.port }
func (t *udpTransport) LocalAddr() netip.AddrPort { return t.sock.LocalAddr() }

// advertised is the host and port a listener puts in Via and Record-Route:
// Config.Advertise ("host" or "host:port", the port replacing the bound one)
// or the bound address.
func advertised(la netip.AddrPort, adv string) (string, int) {
	port := int(la.Port())
	if adv != "" {
		if h, p, err := net.SplitHostPort(adv); err == nil {
			if n, err := strconv.Atoi(p); err == nil && n > 0 && n <= 65535 {
				return strings.Trim(h, "[]"), n
			}
		}
		return strings.Trim(adv, "[]"), port
	}
	a := la.Addr()
	if a.IsUnspecified() {
		if a.Is6() && !a.Is4In6() {
			return "::1", port
		}
		return "127.0.0.1", port
	}
	return a.Unmap().String(), port // sipgo adds brackets to IPv6 hosts
}
