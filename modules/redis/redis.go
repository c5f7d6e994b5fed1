package redis

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"
)

// Defaults of the Config fields left zero.
const (
	DefaultTimeout       = time.Second
	DefaultMaxInFlight   = 4096
	DefaultDispatchers   = 4
	DefaultMaxBatch      = 128
	DefaultRetryInterval = 250 * time.Millisecond
	DefaultDialTimeout   = time.Second
)

// Errors of this package. Callers branch on them with errors.Is. Errors of
// the await itself (async.ErrTimeout from an Await's own timeout) pass
// through untouched.
var (
	// ErrNil is the error of an op whose reply was Redis's nil (GET of a
	// missing key, HGET of a missing field): an empty result, not a
	// failure. It is distinct from every other error.
	ErrNil = errors.New("redis: nil")
	// ErrUnavailable is the error of an op that could not reach Redis:
	// the connection was refused, reset or closed, a dial failed, or the
	// server is loading. After such an error the client fails new ops at
	// once with ErrUnavailable (no wait, nothing sent) until a background
	// PING succeeds — one at once, then one every RetryInterval; then ops
	// go through again, with the same Client. A timeout on a connection
	// that was up is not unavailability: it is async.ErrTimeout.
	ErrUnavailable = errors.New("redis: unavailable")
	// ErrClosed is the error of an op started on a closed Client.
	ErrClosed = errors.New("redis: client closed")
	// ErrCommand is the error of an op whose command the client refuses
	// to send: empty, or one that changes the connection's mode
	// (SUBSCRIBE, MONITOR, MULTI...; use Subscribe, or a Script for atomic work).
	ErrCommand = errors.New("redis: command not allowed")
	// ErrType is the error of an op whose reply does not have the type
	// the op returns (Int of a string reply, Strings of an integer).
	ErrType = errors.New("redis: unexpected reply type")
)

// ReplyError is an error reply of the Redis server ("WRONGTYPE Operation
// against a key holding the wrong kind of value", "ERR ...", a script's
// error). The connection is fine; the command failed.
type ReplyError struct {
	// Msg is the whole error message as Redis sent it.
	Msg string
}

// Error returns "redis: " and the message.
func (e *ReplyError) Error() string { return "redis: " + e.Msg }

// Prefix returns the error code: the message's first word ("WRONGTYPE",
// "ERR", "NOSCRIPT").
func (e *ReplyError) Prefix() string {
	for i := 0; i < len(e.Msg); i++ {
		if e.Msg[i] == ' ' {
			return e.Msg[:i]
		}
	}
	return e.Msg
}

// Config configures a Client. The zero value gives the defaults; options
// passed to Open set its fields.
type Config struct {
	// Timeout bounds every op, from Start to its result, whatever the
	// await's own timeout: an op still waiting after Timeout completes
	// with an error wrapping async.ErrTimeout (default DefaultTimeout).
	Timeout time.Duration
	// MaxInFlight bounds the ops started and not completed, queued ones
	// included; beyond it an op fails at once with async.ErrOverloaded
	// (default DefaultMaxInFlight).
	MaxInFlight int
	// Dispatchers is the number of goroutines that send queued commands
	// to Redis, each a batch at a time (default DefaultDispatchers). It is
	// not a per-op cost: the goroutines exist for the life of the Client.
	Dispatchers int
	// MaxBatch bounds the commands one dispatcher sends in one pipelined
	// batch (default DefaultMaxBatch).
	MaxBatch int
	// RetryInterval is the period of the PING that checks, while Redis is
	// unavailable, whether it is back (default DefaultRetryInterval).
	RetryInterval time.Duration
	// DialTimeout bounds connecting (default DefaultDialTimeout).
	DialTimeout time.Duration
	// Observer receives metrics events; nil means none.
	Observer Observer
	// ClientOption, when set, adjusts the rueidis options parsed from the
	// URL before the client is made (TLS, Sentinel, pool sizes). Fields
	// this package relies on (DisableRetry, DisableCache,
	// ForceSingleClient: Redis Cluster is not supported) are set after it.
	ClientOption func(*rueidis.ClientOption)
}

// Option sets a field of the Config of a Client.
type Option func(*Config)

// Timeout sets Config.Timeout.
func Timeout(d time.Duration) Option { return func(c *Config) { c.Timeout = d } }

// MaxInFlight sets Config.MaxInFlight.
func MaxInFlight(n int) Option { return func(c *Config) { c.MaxInFlight = n } }

// Dispatchers sets Config.Dispatchers.
func Dispatchers(n int) Option { return func(c *Config) { c.Dispatchers = n } }

// MaxBatch sets Config.MaxBatch.
func MaxBatch(n int) Option { return func(c *Config) { c.MaxBatch = n } }

// RetryInterval sets Config.RetryInterval.
func RetryInterval(d time.Duration) Option { return func(c *Config) { c.RetryInterval = d } }

// DialTimeout sets Config.DialTimeout.
func DialTimeout(d time.Duration) Option { return func(c *Config) { c.DialTimeout = d } }

// WithObserver sets Config.Observer.
func WithObserver(o Observer) Option { return func(c *Config) { c.Observer = o } }

// WithConfig replaces the whole Config (later options still apply).
func WithConfig(cfg Config) Option { return func(c *Config) { *c = cfg } }

func (c *Config) defaults() {
	if c.Timeout <= 0 {
		c.Timeout = DefaultTimeout
	}
	if c.MaxInFlight <= 0 {
		c.MaxInFlight = DefaultMaxInFlight
	}
	if c.Dispatchers <= 0 {
		c.Dispatchers = DefaultDispatchers
	}
	if c.MaxBatch <= 0 {
		c.MaxBatch = DefaultMaxBatch
	}
	if c.RetryInterval <= 0 {
		c.RetryInterval = DefaultRetryInterval
	}
	if c.DialTimeout <= 0 {
		c.DialTimeout = DefaultDialTimeout
	}
}

// Client is a Redis connection (rueidis, auto-pipelined) that runs commands
// as async ops. Its methods are safe for concurrent use; the op
// constructors may be called anywhere, the ops are started on loops.
type Client struct {
	cfg  Config
	opt  rueidis.ClientOption
	rc   atomic.Pointer[rueidisClient] // nil until the first connection succeeds
	q    queue
	m    counters
	down atomic.Bool // Redis unreachable: fail fast, a prober is running

	mu      sync.Mutex // guards probing, closed, subs and the prober's lifetime
	probing bool
	closed  bool
	stop    chan struct{} // closed by Close: ends the prober and subscriptions
	wg      sync.WaitGroup
	subs    map[*Subscription]struct{}
}

// rueidisClient boxes the interface so that it can sit in an atomic.Pointer.
type rueidisClient struct{ rueidis.Client }

// Open returns a Client for the Redis server named by url:
// redis://[[user]:password@]host[:port][/db], rediss://... (TLS) or
// unix://path (rueidis.ParseURL, which also reads Sentinel options from the
// query). It connects at once; when Redis is unreachable it still returns a
// Client, which starts unavailable (ops fail with ErrUnavailable) and
// connects in the background. Only a bad URL or bad options are errors.
func Open(url string, opts ...Option) (*Client, error) {
	var cfg Config
	for _, o := range opts {
		if o != nil {
			o(&cfg)
		}
	}
	cfg.defaults()
	ro, err := rueidis.ParseURL(url)
	if err != nil {
		return nil, fmt.Errorf("redis: open %q: %w", url, err)
	}
	ro.Dialer.Timeout = cfg.DialTimeout
	if cfg.ClientOption != nil {
		cfg.ClientOption(&ro)
	}
	// Failures surface at once (no retry loop inside rueidis hides a dead
	// server until the deadline), and nothing is cached client-side.
	ro.DisableRetry = true
	ro.DisableCache = true
	// Standalone or Sentinel, never Cluster: ops name no key slots. (Left
	// to guess, rueidis first tries Cluster, and leaves a goroutine behind
	// when the server is down.)
	ro.ForceSingleClient = true
	c := &Client{cfg: cfg, opt: ro, stop: make(chan struct{}), subs: map[*Subscription]struct{}{}}
	c.q.init(cfg.MaxBatch)
	if err := c.connect(); err != nil {
		if !isUnavailable(err) {
			return nil, fmt.Errorf("redis: open %q: %w", url, err)
		}
		c.markDown()
	}
	c.wg.Add(cfg.Dispatchers)
	for range cfg.Dispatchers {
		go c.dispatch()
	}
	return c, nil
}

// connect makes the rueidis client; it dials (and fails) at once.
func (c *Client) connect() error {
	rc, err := rueidis.NewClient(c.opt)
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed { // Close came first and will not see this one
		rc.Close()
		return ErrClosed
	}
	c.rc.Store(&rueidisClient{rc})
	return nil
}

// Rueidis returns the underlying rueidis client, for what this package does
// not cover (blocking calls at start-up, client-side caching). It is nil
// while the first connection has not succeeded. Never call its blocking
// methods on a loop.
func (c *Client) Rueidis() rueidis.Client {
	if rc := c.rc.Load(); rc != nil {
		return rc.Client
	}
	return nil
}

// Available reports whether Redis was reachable at the last attempt: false
// between a connection error and the next successful PING.
func (c *Client) Available() bool { return !c.down.Load() }

// Close stops the client: queued ops fail with ErrClosed, subscriptions end,
// and the connection is closed once the dispatchers are done with their
// batches (each bounded by Timeout). Ops started after Close fail with
// ErrClosed. ctx bounds the wait.
func (c *Client) Close(ctx context.Context) error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	close(c.stop)
	subs := make([]*Subscription, 0, len(c.subs))
	for s := range c.subs {
		subs = append(subs, s)
	}
	c.mu.Unlock()
	for _, s := range subs {
		s.Close()
	}
	c.q.close()
	waited := make(chan struct{})
	go func() { c.wg.Wait(); close(waited) }()
	var err error
	select {
	case <-waited:
	case <-ctx.Done():
		err = fmt.Errorf("redis: close: %w", ctx.Err())
	}
	if rc := c.rc.Load(); rc != nil {
		rc.Close()
	}
	if err == nil {
		<-waited // the client is closed: the dispatchers end at once now
	}
	return err
}

// markDown switches the client to fast failure and starts the prober, once.
func (c *Client) markDown() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return
	}
	if c.down.CompareAndSwap(false, true) {
		c.m.downs.Add(1)
	}
	if c.probing {
		return
	}
	c.probing = true
	c.wg.Add(1)
	go c.probe()
}

// probe PINGs Redis at once, then every RetryInterval, until it answers;
// then it clears the down flag and ends. It is the only goroutine the client adds while Redis
// is down.
func (c *Client) probe() {
	defer c.wg.Done()
	t := time.NewTimer(0) // the first PING at once: a lone broken connection is back at once
	defer t.Stop()
	for {
		select {
		case <-c.stop:
			c.mu.Lock()
			c.probing = false
			c.mu.Unlock()
			return
		case <-t.C:
		}
		if c.ping() == nil {
			c.mu.Lock()
			c.probing = false
			c.down.Store(false)
			c.mu.Unlock()
			return
		}
		t.Reset(c.cfg.RetryInterval)
	}
}

// ping connects if needed and sends one PING, bounded by Timeout.
func (c *Client) ping() error {
	rc := c.rc.Load()
	if rc == nil {
		if err := c.connect(); err != nil {
			return err
		}
		return nil // NewClient's handshake answered
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.cfg.Timeout)
	defer cancel()
	return rc.Do(ctx, rc.B().Ping().Build()).Error()
}
