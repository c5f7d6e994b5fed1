package rest

import (
	"context"
	"net/http"
)

// An op of a Client says what it sends — for logs and siptest's exchanges
// (Describe), and for fakes that answer it without a server (Inspect,
// Outcome: modules/rest/resttest).

// Describe returns "rest: METHOD URL" (the URL without its password): the
// label of the op's await (async.Describer).
func (k *call) Describe() string {
	if k.url == nil {
		return "rest: " + k.method + " (bad URL)"
	}
	return "rest: " + k.method + " " + k.url.Redacted()
}

// Describe is the description of the request (see call.Describe).
func (j *jsonCall[T]) Describe() string { return j.k.Describe() }

func (k *call) inspected() *call { return k }

func (j *jsonCall[T]) inspected() *call { return j.k }

func (k *call) outcome(r Result) (any, error) { return r, nil }

func (j *jsonCall[T]) outcome(r Result) (any, error) { return decodeJSON[T](r) }

type inspectable interface {
	inspected() *call
	outcome(Result) (any, error)
}

// Inspect returns the request an op of a Client sends — its method, its URL
// resolved against BaseURL, the client's and the op's headers, its body —
// without sending it, and false for any other op, or for an op that cannot
// make its request (a bad URL, a value that does not encode: it fails when
// started). It lets a fake recognize a client's ops.
func Inspect(op any) (*http.Request, bool) {
	o, ok := op.(inspectable)
	if !ok || o.inspected().err != nil {
		return nil, false
	}
	req, err := o.inspected().request(context.Background())
	if err != nil {
		return nil, false
	}
	return req, true
}

// Outcome returns what op, an op of a Client, gives its resume when the
// server answers r: r itself for Get, Post, Do and the others; for JSON of
// one of them the decoded value, or the error JSON gives (a *StatusError
// for a status other than 2xx, ErrDecode). For any other op it returns r.
func Outcome(op any, r Result) (any, error) {
	if o, ok := op.(inspectable); ok {
		return o.outcome(r)
	}
	return r, nil
}
