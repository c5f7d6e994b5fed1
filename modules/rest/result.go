package rest

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"

	"github.com/asyncsip/asyncsip/async"
)

// Result is a complete HTTP response: status, headers and the whole body
// (at most Config.MaxBody bytes). Every status is a Result, 404 and 500
// included; the route decides what they mean. An op that fails returns the
// zero Result.
type Result struct {
	// Status is the HTTP status code (200, 404, ...).
	Status int
	// Header holds the response headers.
	Header http.Header
	// ContentType is the Content-Type header ("application/json", ...).
	ContentType string
	// Body is the response body.
	Body []byte
}

// OK reports whether the status is 2xx.
func (r Result) OK() bool { return r.Status >= 200 && r.Status < 300 }

// Text returns the body as a string.
func (r Result) Text() string { return string(r.Body) }

// JSON decodes the body into v (a pointer), whatever the status. The error
// wraps ErrDecode.
func (r Result) JSON(v any) error {
	if err := json.Unmarshal(r.Body, v); err != nil {
		return fmt.Errorf("%w: %w", ErrDecode, err)
	}
	return nil
}

// JSON returns an op that runs op and decodes its body as JSON into a T:
//
//	async.Await(c, rest.JSON[Route](client.GetJSON("/route?to="+user)), func(r Route, err error) {...})
//
// A status other than 2xx fails with a *StatusError (errors.Is ErrStatus);
// an empty 2xx body (204 No Content) gives the zero T; a body that does not
// decode fails with ErrDecode. When op comes from a Client the body is
// decoded on the client's worker, off the loop; any other op is decoded on
// the loop (async.Map).
func JSON[T any](op async.Op[Result]) async.Op[T] {
	if k, ok := op.(*call); ok {
		return &jsonCall[T]{k}
	}
	return async.Map(op, decodeJSON[T])
}

func decodeJSON[T any](r Result) (T, error) {
	var v T
	if !r.OK() {
		return v, &StatusError{Status: r.Status, ContentType: r.ContentType, Body: r.Body}
	}
	if len(r.Body) == 0 {
		return v, nil
	}
	err := r.JSON(&v)
	return v, err
}

// jsonCall is a request whose body is decoded on the worker.
type jsonCall[T any] struct{ k *call }

// readBody reads the whole body of resp, failing with errTooLarge beyond
// max bytes. A declared Content-Length over the limit fails before reading.
func readBody(resp *http.Response, max int64) ([]byte, error) {
	n := resp.ContentLength
	if n > max {
		return nil, fmt.Errorf("%w: Content-Length %d > %d", errTooLarge, n, max)
	}
	if n >= 0 {
		// Known length: one exact allocation. The spare byte makes the
		// read run into the end of the body, so the connection is reused.
		buf := make([]byte, n+1)
		m, err := io.ReadFull(resp.Body, buf)
		switch {
		case int64(m) > n:
			return nil, fmt.Errorf("%w: more than the declared %d bytes", errTooLarge, n)
		case int64(m) < n:
			if err == nil || err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
		return buf[:m], nil
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("%w: more than %d bytes", errTooLarge, max)
	}
	return b, nil
}
