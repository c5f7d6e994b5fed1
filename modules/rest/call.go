package rest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/asyncsip/asyncsip/async"
	"github.com/asyncsip/asyncsip/reactor"
)

const jsonType = "application/json"

// errNoLoop fails an op started without a loop (Await and Launch never do
// that; a direct Start(nil, done) would).
var errNoLoop = errors.New("rest: op started without a loop")

// call describes one request; it is the async.Op[Result] the client's
// methods return. It is immutable once built, so an op can be started again
// (each start sends a new request).
type call struct {
	c      *Client
	method string
	url    *url.URL
	ctype  string
	accept string
	body   []byte
	req    *http.Request // Do
	err    error         // the request cannot be made (bad URL, bad JSON)
}

func (c *Client) newCall(method, raw, ctype string, body []byte) *call {
	k := &call{c: c, method: method, ctype: ctype, body: body}
	k.url, k.err = c.resolve(raw)
	return k
}

func (c *Client) jsonCall(method, raw string, v any) *call {
	b, err := json.Marshal(v)
	k := c.newCall(method, raw, jsonType, b)
	k.accept = jsonType
	if err != nil && k.err == nil {
		k.err = fmt.Errorf("rest: encoding the JSON body: %w", err)
	}
	return k
}

// Start starts the request on l (see async.Op).
func (k *call) Start(l *reactor.Loop, done func(Result, error)) func() {
	return start(k, l, done, keepResult)
}

func keepResult(r Result) (Result, error) { return r, nil }

// Start starts the request on l and decodes its body on the worker.
func (j *jsonCall[T]) Start(l *reactor.Loop, done func(T, error)) func() {
	return start(j.k, l, done, decodeJSON[T])
}

// flight is one started request. Its fields are used on the loop only: the
// worker's result arrives there through the pool (PostUrgent), the timer
// fires there, cancel is called there.
type flight[T any] struct {
	k      *call
	done   func(T, error)
	begin  time.Time
	timer  *reactor.Timer
	cancel func() // the pool op's cancel: cancels the request context
	over   bool
}

// outcome is what the worker hands back: the converted value, and the HTTP
// status for the Observer (set also when the conversion failed).
type outcome[T any] struct {
	v      T
	status int
}

// start runs k on the client's pool; then converts the Result on the worker
// (JSON decoding stays off the loop). The op completes on the first of: the
// worker's result, the client's timer (Timeout), the caller's cancel.
func start[T any](k *call, l *reactor.Loop, done func(T, error), then func(Result) (T, error)) func() {
	c := k.c
	f := &flight[T]{k: k, done: done, begin: time.Now()}
	c.counters.start()
	if o := c.cfg.Observer; o != nil {
		o.RequestStarted(k.method)
	}
	if k.err == nil && l == nil {
		k = &call{c: c, method: k.method, err: errNoLoop}
		f.k = k
	}
	if k.err != nil {
		f.finish(*new(T), 0, k.err)
		return nil
	}
	deadline := f.begin.Add(c.cfg.Timeout)
	op := async.Blocking(func(ctx context.Context) (outcome[T], error) {
		ctx, cancel := context.WithDeadline(ctx, deadline)
		defer cancel()
		res, err := c.roundTrip(ctx, k)
		if err != nil {
			return outcome[T]{}, err
		}
		v, err := then(res)
		return outcome[T]{v, res.Status}, err
	}, async.OnPool(c.pool))
	f.timer = l.AfterFunc(c.cfg.Timeout, f.expire)
	cancel := op.Start(l, f.complete)
	if f.over {
		return nil
	}
	f.cancel = cancel
	return f.abort
}

// complete receives the worker's result (or the pool's refusal, inline).
func (f *flight[T]) complete(o outcome[T], err error) {
	if f.over {
		return
	}
	f.timer.Stop()
	if err != nil {
		err = fmt.Errorf("rest: %s %s: %w", f.k.method, f.k.url.Redacted(), err)
	}
	f.finish(o.v, o.status, err)
}

// expire fires when Timeout has passed, whether the request is running or
// still queued: the request is cancelled and its late result dropped.
func (f *flight[T]) expire() {
	if f.over {
		return
	}
	if f.cancel != nil {
		f.cancel()
	}
	err := fmt.Errorf("rest: %s %s after %v: %w: %w", f.k.method, f.k.url.Redacted(),
		f.k.c.cfg.Timeout, ErrTimeout, async.ErrTimeout)
	f.finish(*new(T), 0, err)
}

// abort is the op's cancel: nobody wants the result any more.
func (f *flight[T]) abort() {
	if f.over {
		return
	}
	f.over = true
	f.timer.Stop()
	if f.cancel != nil {
		f.cancel()
	}
	f.observe(0, async.ErrCancelled)
}

func (f *flight[T]) finish(v T, status int, err error) {
	f.over = true
	f.observe(status, err)
	f.done(v, err)
}

func (f *flight[T]) observe(status int, err error) {
	c := f.k.c
	kind := KindOf(err)
	c.counters.finish(kind)
	if o := c.cfg.Observer; o != nil {
		o.RequestFinished(f.k.method, status, kind, time.Since(f.begin))
	}
}

// roundTrip runs on a worker: it sends the request and reads the whole
// body, failing with a classified error.
func (c *Client) roundTrip(ctx context.Context, k *call) (Result, error) {
	req, err := k.request(ctx)
	if err != nil {
		return Result{}, err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return Result{}, classify(ctx, err)
	}
	body, err := readBody(resp, c.cfg.MaxBody)
	_ = resp.Body.Close()
	if err != nil {
		return Result{}, classify(ctx, err)
	}
	return Result{
		Status:      resp.StatusCode,
		Header:      resp.Header,
		ContentType: resp.Header.Get("Content-Type"),
		Body:        body,
	}, nil
}

// request builds the http.Request of one start of k.
func (k *call) request(ctx context.Context) (*http.Request, error) {
	c := k.c
	if k.req != nil {
		req := k.req.Clone(ctx)
		req.URL = k.url
		if k.req.GetBody != nil && k.req.Body != nil && k.req.Body != http.NoBody {
			b, err := k.req.GetBody()
			if err != nil {
				return nil, fmt.Errorf("rest: request body: %w", err)
			}
			req.Body = b
		}
		for name, vs := range c.header {
			if _, set := req.Header[name]; !set {
				req.Header[name] = vs
			}
		}
		markIdempotent(req)
		return req, nil
	}
	var body io.Reader
	if k.body != nil {
		body = bytes.NewReader(k.body)
	}
	req, err := http.NewRequestWithContext(ctx, k.method, "", body)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadURL, err)
	}
	req.URL, req.Host = k.url, k.url.Host
	if len(c.header) > 0 {
		req.Header = c.header.Clone()
	}
	if k.ctype != "" {
		req.Header.Set("Content-Type", k.ctype)
	}
	if k.accept != "" {
		req.Header.Set("Accept", k.accept)
	}
	markIdempotent(req)
	return req, nil
}

// markIdempotent lets net/http retry PUT and DELETE, idempotent by RFC 9110
// §9.2.2, as it retries GET: once, when a reused keep-alive connection turns
// out to be closed by the server before any response. An Idempotency-Key
// entry with no value does that without sending a header.
func markIdempotent(req *http.Request) {
	if req.Method != http.MethodPut && req.Method != http.MethodDelete {
		return
	}
	if _, set := req.Header["Idempotency-Key"]; !set {
		req.Header["Idempotency-Key"] = nil
	}
}
