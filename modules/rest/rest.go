// Package rest runs HTTP requests (REST queries) from asyncsip routes without
// blocking the worker loops: the asyncsip counterpart of OpenSIPS's
// rest_client (rest_get, rest_post, rest_put), minus its blocking connects.
//
// A Client's methods return async.Op values; a route awaits them and
// continues with the response:
//
//	client, _ := rest.NewClient(rest.Config{BaseURL: "http://127.0.0.1:8080/", Timeout: time.Second})
//	srv.Request(func(c *tm.Context) {
//		if c.InDialog() { // ACK, BYE: along the call's Route, no lookup
//			c.Relay()
//			return
//		}
//		async.Await(c, client.Get("route?to="+url.QueryEscape(c.Recipient().User)), func(r rest.Result, err error) {
//			if err != nil || r.Status != 200 {
//				c.Reply(503, "Routing unavailable")
//				return
//			}
//			c.SetDestination("sip:" + r.Text())
//			c.Relay()
//		})
//	})
//
// Each request runs in net/http on the client's own bounded worker pool
// (async.Blocking): connects, TLS handshakes and transfers happen there, never
// on a loop. Config.Timeout bounds the whole request, from the moment the op
// starts. When MaxConcurrent requests are running and the Queue is full a new
// request fails at once with async.ErrOverloaded. Failures wrap sentinel
// errors (ErrConnRefused, ErrConnectTimeout, ErrTimeout, ErrBodyTooLarge,
// ErrBadURL, ErrTLS) that a route tests with errors.Is.
package rest

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"time"

	"github.com/asyncsip/asyncsip/async"
)

// Defaults of the Config fields left zero.
const (
	DefaultConnectTimeout  = 2 * time.Second
	DefaultTimeout         = 5 * time.Second
	DefaultMaxBody         = 1 << 20
	DefaultMaxConcurrent   = 256
	DefaultIdleConnTimeout = 4 * time.Second
)

// Config configures a Client. The zero value is usable: absolute URLs only,
// the defaults above, no queue, system root CAs.
type Config struct {
	// BaseURL, when set, is the URL relative request URLs are resolved
	// against (RFC 3986): with "http://h/api/", "v1/route" is
	// "http://h/api/v1/route" and "/health" is "http://h/health". End it
	// with a slash to keep its last path segment.
	BaseURL string
	// Header holds headers sent with every request (Authorization,
	// User-Agent, ...). Headers set by the op (Content-Type, Accept) or by
	// the request given to Do win.
	Header http.Header
	// ConnectTimeout bounds the TCP connect plus, for HTTPS, the TLS
	// handshake (default DefaultConnectTimeout). Exceeding it gives
	// ErrConnectTimeout.
	ConnectTimeout time.Duration
	// Timeout bounds the whole request, from the start of the op to the
	// last byte of the body, time spent queued included (default
	// DefaultTimeout). Exceeding it gives ErrTimeout. The route's Await
	// timeout, if shorter, still applies.
	Timeout time.Duration
	// MaxBody is the largest response body accepted, in bytes (default
	// DefaultMaxBody). A larger one gives ErrBodyTooLarge.
	MaxBody int64
	// MaxConcurrent bounds the requests being transferred at once: it is
	// the number of workers of the client's pool (default
	// DefaultMaxConcurrent).
	MaxConcurrent int
	// Queue bounds the requests waiting for a worker when MaxConcurrent are
	// running. The default, 0, is no queue: a request beyond MaxConcurrent
	// fails at once with async.ErrOverloaded, so the route can answer 503
	// immediately. A queued request still counts its wait against Timeout.
	Queue int
	// MaxIdleConnsPerHost bounds the keep-alive connections kept open per
	// host (default MaxConcurrent, so that a steady load reuses its
	// connections instead of reconnecting).
	MaxIdleConnsPerHost int
	// IdleConnTimeout closes keep-alive connections idle for longer
	// (default DefaultIdleConnTimeout). Keep it below the server's own idle
	// timeout (5 s for Node.js and Apache, 75 s for nginx): a connection the
	// server closes just as a request reuses it fails a POST (GET, PUT and
	// DELETE are retried once).
	IdleConnTimeout time.Duration
	// MaxRedirects is how many redirects a request follows; the default, 0,
	// follows none and returns the 3xx response as the Result.
	MaxRedirects int
	// TLS configures HTTPS (client certificates, minimum version, ...).
	// Nil means the defaults of crypto/tls.
	TLS *tls.Config
	// RootCAs, when set, replaces TLS.RootCAs: the authorities that HTTPS
	// servers' certificates must chain to (a private CA, httptest's).
	RootCAs *x509.CertPool
	// Observer, when set, receives every request's start and outcome.
	Observer Observer
}

// Client runs HTTP requests as async ops. It is safe for concurrent use
// from every loop; one client per remote service (or per set of limits) is
// the intended use. Close it to release its connections and workers.
type Client struct {
	cfg      Config
	base     *url.URL
	header   http.Header
	pool     *async.Pool
	tr       *http.Transport
	hc       *http.Client
	dialer   net.Dialer
	tls      *tls.Config
	closing  context.Context // cancelled by Close: aborts dials in progress
	stop     context.CancelFunc
	counters counters
}

// NewClient returns a client configured by cfg. It fails, with an error
// wrapping ErrBadURL, only when BaseURL is invalid. It starts no goroutine
// and opens no connection until the first request.
func NewClient(cfg Config) (*Client, error) {
	c := &Client{cfg: cfg, header: cfg.Header.Clone()}
	if cfg.BaseURL != "" {
		u, err := url.Parse(cfg.BaseURL)
		if err != nil {
			return nil, fmt.Errorf("rest: base URL: %w: %w", ErrBadURL, err)
		}
		if err := checkURL(u); err != nil {
			return nil, fmt.Errorf("rest: base URL %q: %w", u.Redacted(), err)
		}
		c.base = u
	}
	c.setDefaults()
	c.closing, c.stop = context.WithCancel(context.Background())
	c.pool = async.NewPool(async.PoolConfig{Workers: c.cfg.MaxConcurrent, Queue: poolQueue(c.cfg.Queue)})
	c.tls = &tls.Config{}
	if cfg.TLS != nil {
		c.tls = cfg.TLS.Clone()
	}
	if cfg.RootCAs != nil {
		c.tls.RootCAs = cfg.RootCAs
	}
	if len(c.tls.NextProtos) == 0 {
		c.tls.NextProtos = []string{"h2", "http/1.1"}
	}
	c.tr = &http.Transport{
		DialContext:         c.dial,
		DialTLSContext:      c.dialTLS,
		ForceAttemptHTTP2:   true,
		MaxIdleConns:        0, // bounded per host
		MaxIdleConnsPerHost: c.cfg.MaxIdleConnsPerHost,
		IdleConnTimeout:     c.cfg.IdleConnTimeout,
		// The response headers must arrive within the total timeout,
		// which the request context enforces.
		ExpectContinueTimeout: time.Second,
	}
	c.hc = &http.Client{Transport: c.tr, CheckRedirect: c.checkRedirect}
	return c, nil
}

func (c *Client) setDefaults() {
	cfg := &c.cfg
	if cfg.ConnectTimeout <= 0 {
		cfg.ConnectTimeout = DefaultConnectTimeout
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.MaxBody <= 0 {
		cfg.MaxBody = DefaultMaxBody
	}
	if cfg.MaxConcurrent <= 0 {
		cfg.MaxConcurrent = DefaultMaxConcurrent
	}
	if cfg.MaxIdleConnsPerHost <= 0 {
		cfg.MaxIdleConnsPerHost = cfg.MaxConcurrent
	}
	if cfg.IdleConnTimeout <= 0 {
		cfg.IdleConnTimeout = DefaultIdleConnTimeout
	}
}

// poolQueue maps Config.Queue to async.PoolConfig.Queue (where 0 means a
// default queue and < 0 none).
func poolQueue(q int) int {
	if q <= 0 {
		return -1
	}
	return q
}

func (c *Client) checkRedirect(req *http.Request, via []*http.Request) error {
	if len(via) > c.cfg.MaxRedirects {
		return http.ErrUseLastResponse
	}
	return nil
}

// Close stops the client: new requests fail with async.ErrClosed, dials in
// progress are aborted, and Close waits until the running requests are over
// (or ctx ends; they are then cancelled and Close returns ctx.Err()). Then
// it closes the keep-alive connections. Close is idempotent.
func (c *Client) Close(ctx context.Context) error {
	c.stop()
	err := c.pool.Close(ctx)
	c.tr.CloseIdleConnections()
	return err
}

// Pool returns the client's own pool of workers, which runs every request
// of the client, so that its saturation can be exported:
//
//	exp.WatchPool("rest", c.Pool()) // exp: a *metrics.Exporter (modules/metrics)
func (c *Client) Pool() *async.Pool { return c.pool }

// Stats returns the client's counters and gauges.
func (c *Client) Stats() Stats {
	s := c.counters.snapshot()
	s.Pool = c.pool.Stats()
	return s
}

// Get returns an op that sends a GET request to url.
func (c *Client) Get(url string) async.Op[Result] { return c.newCall(http.MethodGet, url, "", nil) }

// Post returns an op that sends a POST request with body, of type
// contentType, to url.
func (c *Client) Post(url, contentType string, body []byte) async.Op[Result] {
	return c.newCall(http.MethodPost, url, contentType, body)
}

// Put returns an op that sends a PUT request with body, of type
// contentType, to url.
func (c *Client) Put(url, contentType string, body []byte) async.Op[Result] {
	return c.newCall(http.MethodPut, url, contentType, body)
}

// Delete returns an op that sends a DELETE request to url.
func (c *Client) Delete(url string) async.Op[Result] {
	return c.newCall(http.MethodDelete, url, "", nil)
}

// GetJSON is Get with "Accept: application/json"; wrap it in JSON to decode
// the body into a Go value.
func (c *Client) GetJSON(url string) async.Op[Result] {
	k := c.newCall(http.MethodGet, url, "", nil)
	k.accept = jsonType
	return k
}

// PostJSON returns an op that POSTs v encoded as JSON to url. A v that
// cannot be encoded fails the op at once.
func (c *Client) PostJSON(url string, v any) async.Op[Result] {
	return c.jsonCall(http.MethodPost, url, v)
}

// PutJSON returns an op that PUTs v encoded as JSON to url.
func (c *Client) PutJSON(url string, v any) async.Op[Result] {
	return c.jsonCall(http.MethodPut, url, v)
}

// Do returns an op that sends req: any method, headers and body. A relative
// req.URL is resolved against BaseURL; the client's default headers fill in
// those req does not set; the context of req is replaced by the op's. A
// body is sent again when the op is started again only if req.GetBody is
// set (http.NewRequest sets it for bytes, strings and bytes.Buffer bodies).
func (c *Client) Do(req *http.Request) async.Op[Result] {
	k := &call{c: c}
	switch {
	case req == nil:
		k.err = fmt.Errorf("rest: nil request: %w", ErrBadURL)
	case req.URL == nil:
		k.err = fmt.Errorf("rest: request without URL: %w", ErrBadURL)
	default:
		k.method = req.Method
		if k.method == "" {
			k.method = http.MethodGet
		}
		k.url, k.err = c.resolveURL(req.URL)
		k.req = req
	}
	return k
}

// resolve parses raw and resolves it against BaseURL.
func (c *Client) resolve(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("rest: %w: %w", ErrBadURL, err)
	}
	return c.resolveURL(u)
}

func (c *Client) resolveURL(u *url.URL) (*url.URL, error) {
	if c.base != nil && !u.IsAbs() {
		u = c.base.ResolveReference(u)
	}
	if err := checkURL(u); err != nil {
		return nil, fmt.Errorf("rest: %q: %w", u.Redacted(), err)
	}
	return u, nil
}

// checkURL accepts absolute http and https URLs with a host.
func checkURL(u *url.URL) error {
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return fmt.Errorf("%w: scheme %q is not http or https", ErrBadURL, u.Scheme)
	case u.Host == "" || u.Hostname() == "":
		return fmt.Errorf("%w: no host", ErrBadURL)
	}
	if p := u.Port(); p != "" {
		if _, err := net.LookupPort("tcp", p); err != nil {
			return fmt.Errorf("%w: port %q", ErrBadURL, p)
		}
	}
	return nil
}

// dial connects for plain HTTP, bounded by ConnectTimeout and by Close.
// net/http dials with a context detached from the request's, so the dial of
// a request that gave up goes on (for the next request) until one of those.
func (c *Client) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	dctx, cancel := c.connectContext(ctx)
	defer cancel()
	conn, err := c.dialer.DialContext(dctx, network, addr)
	if err != nil {
		return nil, c.dialFailed(dctx, err, false)
	}
	return conn, nil
}

// dialTLS connects and completes the TLS handshake for HTTPS, both within
// ConnectTimeout, so that a slow handshake is a connect timeout too.
func (c *Client) dialTLS(ctx context.Context, network, addr string) (net.Conn, error) {
	dctx, cancel := c.connectContext(ctx)
	defer cancel()
	raw, err := c.dialer.DialContext(dctx, network, addr)
	if err != nil {
		return nil, c.dialFailed(dctx, err, false)
	}
	cfg := c.tls
	if cfg.ServerName == "" {
		host, _, _ := net.SplitHostPort(addr)
		cfg = cfg.Clone()
		cfg.ServerName = host
	}
	tc := tls.Client(raw, cfg)
	if err := tc.HandshakeContext(dctx); err != nil {
		_ = raw.Close()
		return nil, c.dialFailed(dctx, err, true)
	}
	return tc, nil
}

func (c *Client) connectContext(ctx context.Context) (context.Context, context.CancelFunc) {
	dctx, cancel := context.WithTimeout(ctx, c.cfg.ConnectTimeout)
	stop := context.AfterFunc(c.closing, cancel)
	return dctx, func() { stop(); cancel() }
}

func (c *Client) dialFailed(dctx context.Context, err error, handshake bool) error {
	// The dial context has no deadline but ours (net/http detaches it from
	// the request), and the poller may report the deadline before the
	// context's timer fires: any timeout here is the connect timeout.
	timeout := (errors.Is(dctx.Err(), context.DeadlineExceeded) || isTimeout(err)) && c.closing.Err() == nil
	return &dialError{err: err, timeout: timeout, tls: handshake}
}
