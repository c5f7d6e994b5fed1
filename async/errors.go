package async

import (
	"errors"
	"fmt"
	"time"
)

// Errors produced by this package. Callers branch on them with errors.Is:
// the errors async returns wrap them with the op's name (see Name) and
// details. Errors returned by ops themselves are passed through untouched.
var (
	// ErrTimeout is the error a resume or report receives when its op did
	// not complete within the await's timeout. The op was cancelled.
	ErrTimeout = errors.New("async: timeout")
	// ErrOverloaded is the error an op completes with, at once, when the
	// resource it needs is saturated: for Blocking, every worker of the
	// pool is busy and its queue is full. A route typically answers 503
	// with Retry-After.
	ErrOverloaded = errors.New("async: overloaded")
	// ErrCancelled is reported to an Observer when an await was aborted
	// because its context ended; the resume never sees it.
	ErrCancelled = errors.New("async: cancelled")
	// ErrNotSuspendable is the error a resume receives when Await could not
	// suspend its context (no context or loop, or the host refused; the
	// host's own error is wrapped as well).
	ErrNotSuspendable = errors.New("async: cannot suspend")
	// ErrNilOp is the error a resume or report receives when it was given
	// a nil op, or an op built from a nil function.
	ErrNilOp = errors.New("async: nil op")
	// ErrClosed is the error an op completes with when its Pool is closed.
	ErrClosed = errors.New("async: pool closed")
	// ErrPanic is the error an op completes with when its code panicked;
	// the panic value is in the message.
	ErrPanic = errors.New("async: op panicked")
)

// wrap returns sentinel, prefixed by the op's name when there is one. The
// nameless case allocates nothing.
func wrap(name string, sentinel error) error {
	if name == "" {
		return sentinel
	}
	return fmt.Errorf("%s: %w", name, sentinel)
}

func timeoutError(name string, d time.Duration) error {
	if name == "" {
		return fmt.Errorf("after %v: %w", d, ErrTimeout)
	}
	return fmt.Errorf("%s after %v: %w", name, d, ErrTimeout)
}

func suspendError(name string, err error) error {
	if err == nil {
		return wrap(name, ErrNotSuspendable)
	}
	if name == "" {
		return fmt.Errorf("%w: %w", ErrNotSuspendable, err)
	}
	return fmt.Errorf("%s: %w: %w", name, ErrNotSuspendable, err)
}

func panicError(name string, r any) error {
	if name == "" {
		return fmt.Errorf("%w: %v", ErrPanic, r)
	}
	return fmt.Errorf("%s: %w: %v", name, ErrPanic, r)
}
