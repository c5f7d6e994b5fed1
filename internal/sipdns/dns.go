package sipdns

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/asyncsip/asyncsip/async"
	"github.com/asyncsip/asyncsip/reactor"
)

// Config configures a Resolver. The zero value queries the servers of
// /etc/resolv.conf with the defaults below.
type Config struct {
	// Servers are the recursive servers to ask, "host:port" ("127.0.0.1:53",
	// "[::1]:53"), in order; empty means the nameservers of /etc/resolv.conf.
	Servers []string
	// Timeout bounds one query to one server (default 2 s).
	Timeout time.Duration
	// Attempts is how many times each server is tried in turn (default 2).
	Attempts int
	// CacheSize bounds the cached answers (RRsets, positive and negative);
	// the least recently used go first. 0 means 10000; < 0 disables the
	// cache (every resolution queries, so none completes synchronously).
	CacheSize int
	// MinTTL and MaxTTL clamp the TTL of cached answers (defaults 0 and
	// 1 h): MinTTL protects the servers from zero TTLs, MaxTTL bounds how
	// long a changed record is ignored.
	MinTTL, MaxTTL time.Duration
	// NegativeTTL is how long "no such name" and "no such record" are
	// cached (default 30 s, or the zone's SOA minimum when lower, RFC 2308;
	// < 0 disables negative caching).
	NegativeTTL time.Duration
	// Transports are the transports this proxy can send on, in order of
	// preference for SRV queries without NAPTR; default udp, tcp, tls.
	// Known: udp, tcp, tls, ws, wss.
	Transports []string
	// IPv4Only skips AAAA queries (for a proxy that listens on IPv4 only).
	IPv4Only bool
	// Pool runs the queries; nil gives the resolver its own pool of 32
	// workers and a queue of 1024, closed by Close. A full pool fails a
	// resolution at once with async.ErrOverloaded.
	Pool *async.Pool
	// Observer, when set, sees every query, cache lookup and resolution
	// (see Observer); nil observes nothing.
	Observer Observer
	// Now is the clock for TTLs (default time.Now); tests set a fake one.
	Now func() time.Time
	// Rand returns a random int in [0, n) for SRV weights (default
	// math/rand/v2.IntN); it is called from several goroutines at once.
	Rand func(n int) int
}

// Resolver resolves SIP URIs (RFC 3263) with a cache. It is safe for
// concurrent use from every loop; create one per server and Close it.
type Resolver struct {
	cfg        Config
	transports []string
	servers    []string
	cache      *cache
	pool       *async.Pool
	ownPool    bool
	client     *mdns.Client
	tcpClient  *mdns.Client
	closed     atomic.Bool
	stop       context.Context // cancelled by Close: ends queries in progress
	cancel     context.CancelFunc
	stats      counters

	mu      sync.Mutex
	flights map[cacheKey]*flight // queries in progress, shared by askers
}

// flight is one query in progress; later askers wait for its answer.
type flight struct {
	done chan struct{}
	rrs  []mdns.RR
	ttl  time.Duration
	err  error
}

// NewResolver returns a resolver for cfg; bad servers or transports give an
// error wrapping ErrBadConfig.
func NewResolver(cfg Config) (*Resolver, error) {
	if cfg.Timeout <= 0 {
		cfg.Timeout = 2 * time.Second
	}
	if cfg.Attempts <= 0 {
		cfg.Attempts = 2
	}
	if cfg.CacheSize == 0 {
		cfg.CacheSize = 10000
	}
	if cfg.MaxTTL <= 0 {
		cfg.MaxTTL = time.Hour
	}
	if cfg.MinTTL > cfg.MaxTTL {
		return nil, fmt.Errorf("%w: MinTTL %v > MaxTTL %v", ErrBadConfig, cfg.MinTTL, cfg.MaxTTL)
	}
	if cfg.NegativeTTL == 0 {
		cfg.NegativeTTL = 30 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.IntN
	}
	r := &Resolver{cfg: cfg, cache: newCache(cfg.CacheSize), flights: make(map[cacheKey]*flight)}
	r.transports = cfg.Transports
	if len(r.transports) == 0 {
		r.transports = []string{"udp", "tcp", "tls"}
	}
	for _, tp := range r.transports {
		if _, ok := transports[tp]; !ok {
			return nil, fmt.Errorf("%w: transport %q (known: udp, tcp, tls, ws, wss)", ErrBadConfig, tp)
		}
	}
	servers := cfg.Servers
	if len(servers) == 0 {
		cc, err := mdns.ClientConfigFromFile("/etc/resolv.conf")
		if err != nil {
			return nil, fmt.Errorf("%w: no Servers and /etc/resolv.conf: %v", ErrBadConfig, err)
		}
		for _, s := range cc.Servers {
			servers = append(servers, net.JoinHostPort(s, cc.Port))
		}
	}
	for _, s := range servers {
		if _, err := netip.ParseAddrPort(s); err != nil {
			return nil, fmt.Errorf("%w: server %q is not ip:port: %v", ErrBadConfig, s, err)
		}
	}
	if len(servers) == 0 {
		return nil, fmt.Errorf("%w: no DNS server", ErrBadConfig)
	}
	r.servers = servers
	r.client = &mdns.Client{Net: "udp", UDPSize: 4096, Timeout: cfg.Timeout}
	r.tcpClient = &mdns.Client{Net: "tcp", Timeout: cfg.Timeout}
	r.stop, r.cancel = context.WithCancel(context.Background())
	r.pool = cfg.Pool
	if r.pool == nil {
		r.pool = async.NewPool(async.PoolConfig{Workers: 32, Queue: 1024})
		r.ownPool = true
	}
	return r, nil
}

// Close stops new resolutions (they fail with ErrClosed), ends the queries
// in progress (their resolutions fail with ErrClosed) and, when the
// resolver made its own pool, waits for its workers to finish (bounded by
// ctx). The cache stays readable by Lookup.
func (r *Resolver) Close(ctx context.Context) error {
	r.closed.Store(true)
	r.cancel()
	if r.ownPool {
		return r.pool.Close(ctx)
	}
	return nil
}

// Resolve returns an op that resolves uri ("sip:…", "sips:…" or a bare
// "host[:port]") to its next hops, in the order to try them (RFC 3263 §4):
//
//   - a numeric host is used as it is (port 5060, 5061 for SIPS);
//   - an explicit port: the host's A and AAAA records;
//   - an explicit transport: the SRV records for it, else A/AAAA;
//   - otherwise NAPTR records (order, preference) for the transports this
//     resolver supports, each followed to its SRV records; without NAPTR,
//     the SRV records of every supported transport; without SRV, A/AAAA on
//     5060 (5061 for SIPS) over UDP (TLS for SIPS).
//
// SRV records are ordered by priority and, within one, by weighted random
// choice (RFC 2782), so every resolution may order them differently.
// When the cache holds every answer needed the op completes synchronously;
// otherwise the queries run on the pool and the result is posted back to
// the loop. Errors wrap ErrBadURI, ErrNXDomain, ErrNoRecords, ErrServFail,
// ErrTimeout, ErrClosed or async.ErrOverloaded.
func (r *Resolver) Resolve(uri string) async.Op[[]Target] {
	return async.OpFunc[[]Target](func(l *reactor.Loop, done func([]Target, error)) func() {
		start := time.Now()
		finish := func(sync bool) func([]Target, error) {
			return func(ts []Target, err error) {
				r.observeResolve(time.Since(start), sync, err)
				done(ts, err)
			}
		}
		if r.closed.Load() {
			finish(true)(nil, ErrClosed)
			return nil
		}
		u, err := parseSIPURI(uri)
		if err != nil {
			finish(true)(nil, err)
			return nil
		}
		cq := &cacheOnly{r: r}
		ts, err := resolution{r: r, q: cq}.run(context.Background(), u)
		if !errors.Is(err, errMiss) {
			r.countHits(cq.hits[:cq.n])
			finish(true)(ts, err)
			return nil
		}
		op := async.Blocking(func(ctx context.Context) ([]Target, error) {
			ctx, cancel := context.WithCancel(ctx)
			defer cancel()
			defer context.AfterFunc(r.stop, cancel)()
			ts, err := resolution{r: r, q: networkQuerier{r}}.run(ctx, u)
			if err != nil && r.closed.Load() {
				return nil, fmt.Errorf("%w: %w", ErrClosed, err)
			}
			return ts, err
		}, async.OnPool(r.pool), async.Name("dns "+u.host))
		return op.Start(l, finish(false))
	})
}

// Lookup returns a cached address of host (an A record, else AAAA) without
// querying: it is meant for tm.Config.Resolver, for names that a Resolve
// has put in the cache. IP literals and "localhost" are returned as they
// are. A name not in the cache gives an error wrapping ErrNotCached (which
// matches tm.ErrNoRoute); a cached negative answer gives ErrNXDomain or
// ErrNoRecords.
func (r *Resolver) Lookup(host string) (netip.Addr, error) {
	if host == "localhost" {
		return netip.AddrFrom4([4]byte{127, 0, 0, 1}), nil
	}
	h := strings.TrimSuffix(strings.Trim(host, "[]"), ".")
	if a, err := netip.ParseAddr(h); err == nil {
		return a.Unmap(), nil
	}
	now := r.cfg.Now()
	var negErr error
	for _, qt := range []uint16{mdns.TypeA, mdns.TypeAAAA} {
		e, ok := r.cache.get(cacheKey{canonical(h), qt}, now)
		r.observeCache(qt, ok)
		if !ok {
			continue
		}
		if e.err != nil {
			negErr = e.err
			continue
		}
		for _, rr := range e.rrs {
			switch v := rr.(type) {
			case *mdns.A:
				if a, ok := netip.AddrFromSlice(v.A.To4()); ok {
					return a, nil
				}
			case *mdns.AAAA:
				if a, ok := netip.AddrFromSlice(v.AAAA.To16()); ok {
					return a.Unmap(), nil
				}
			}
		}
	}
	if negErr != nil {
		return netip.Addr{}, fmt.Errorf("dns: %s: %w", host, negErr)
	}
	return netip.Addr{}, fmt.Errorf("%w: %s", ErrNotCached, host)
}

// intN draws for SRV weights.
func (r *Resolver) intN(n int) int { return r.cfg.Rand(n) }

// naptrTransport maps a NAPTR service to a supported transport ("" if none).
func (r *Resolver) naptrTransport(service string) string {
	for _, tp := range r.transports {
		if strings.EqualFold(transports[tp].naptr, service) {
			return tp
		}
	}
	return ""
}

// cacheOnly is the querier of the synchronous pass: every miss is errMiss.
type cacheOnly struct {
	r    *Resolver
	hits [16]uint16 // types of the hits, reported if the pass succeeds
	n    int
}

func (q *cacheOnly) query(_ context.Context, name string, qtype uint16) ([]mdns.RR, time.Duration, error) {
	now := q.r.cfg.Now()
	e, ok := q.r.cache.get(cacheKey{canonical(name), qtype}, now)
	if !ok {
		return nil, 0, errMiss
	}
	if q.n < len(q.hits) {
		q.hits[q.n] = qtype
		q.n++
	}
	return e.rrs, e.expires.Sub(now), e.err
}
