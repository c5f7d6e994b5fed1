package rest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"syscall"

	"github.com/asyncsip/asyncsip/async"
)

// Errors a route branches on with errors.Is. The error an op completes with
// wraps one of them, prefixed by the method and the (redacted) URL, and keeps
// the underlying net/http error as well. A request that fails carries no
// Result: a partial body is discarded.
var (
	// ErrBadURL: the URL could not be parsed, is not http or https, has no
	// host, or the request could not be built. No I/O was attempted.
	ErrBadURL = errors.New("rest: bad URL")
	// ErrConnRefused: the server refused the TCP connection (nothing listens
	// on the port).
	ErrConnRefused = errors.New("rest: connection refused")
	// ErrConnectTimeout: the TCP connect (and, for HTTPS, the TLS handshake)
	// did not finish within Config.ConnectTimeout.
	ErrConnectTimeout = errors.New("rest: connect timeout")
	// ErrTimeout: the whole request (waiting for a worker, connecting,
	// sending, receiving the body) did not finish within Config.Timeout. Any
	// partial body is discarded. Errors wrapping it also wrap
	// async.ErrTimeout, so a route that handles every timeout alike needs one
	// check.
	ErrTimeout = errors.New("rest: timeout")
	// ErrBodyTooLarge: the response body is larger than Config.MaxBody. It
	// was not read beyond the limit, and the connection is not reused.
	ErrBodyTooLarge = errors.New("rest: response body too large")
	// ErrTLS: the TLS handshake failed (unknown authority, wrong name, ...).
	ErrTLS = errors.New("rest: TLS handshake failed")
	// ErrStatus: JSON got a response whose status is not 2xx. The error is
	// a *StatusError carrying the status and the body.
	ErrStatus = errors.New("rest: unexpected status")
	// ErrDecode: the response body is not valid JSON for the target type.
	ErrDecode = errors.New("rest: cannot decode JSON body")
)

// Overload and shutdown are reported with the errors of package async: an
// error wrapping async.ErrOverloaded when MaxConcurrent requests are running
// and the Queue is full, async.ErrClosed after Client.Close.

// StatusError is the error JSON returns for a response whose status is not
// 2xx. errors.Is(err, ErrStatus) is true; errors.As gives the details.
type StatusError struct {
	// Status is the HTTP status code.
	Status int
	// ContentType is the response's Content-Type header.
	ContentType string
	// Body is the response body (at most Config.MaxBody bytes).
	Body []byte
}

// Error returns "rest: unexpected status N".
func (e *StatusError) Error() string { return fmt.Sprintf("rest: unexpected status %d", e.Status) }

// Is reports whether target is ErrStatus.
func (e *StatusError) Is(target error) bool { return target == ErrStatus }

// dialError marks an error that happened while connecting (TCP connect and
// TLS handshake), as opposed to while the request was transferred.
type dialError struct {
	err     error
	timeout bool // the connect timeout expired
	tls     bool // the TCP connect succeeded, the handshake failed
}

func (e *dialError) Error() string { return e.err.Error() }
func (e *dialError) Unwrap() error { return e.err }

// errTooLarge is what readBody returns; classify turns it into
// ErrBodyTooLarge.
var errTooLarge = errors.New("body exceeds the limit")

// classify wraps err, the failure of a request whose context is ctx, with
// the sentinel that says what went wrong.
func classify(ctx context.Context, err error) error {
	if err == nil {
		return nil
	}
	var de *dialError
	isDial := errors.As(err, &de)
	switch {
	case errors.Is(err, errTooLarge):
		return fmt.Errorf("%w: %w", ErrBodyTooLarge, err)
	case isDial && de.timeout:
		return fmt.Errorf("%w: %w", ErrConnectTimeout, err)
	case errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Errorf("%w: %w", ErrConnRefused, err)
	case isDial && de.tls && !isTimeout(err):
		return fmt.Errorf("%w: %w", ErrTLS, err)
	case errors.Is(ctx.Err(), context.Canceled):
		// Cancelled by the loop (the await timed out or its context
		// ended, or the client's own timer fired): nobody reads this.
		return fmt.Errorf("%w: %w", async.ErrCancelled, err)
	case ctx.Err() != nil || isTimeout(err):
		return fmt.Errorf("%w: %w: %w", ErrTimeout, async.ErrTimeout, err)
	}
	return err
}

func isTimeout(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
