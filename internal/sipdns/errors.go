package sipdns

import (
	"errors"

	"github.com/asyncsip/asyncsip/async"
	"github.com/asyncsip/asyncsip/tm"
)

// The errors of resolution; test them with errors.Is.
var (
	// ErrNXDomain: the name does not exist. It matches tm.ErrUnresolvable
	// (a relay to it is answered 404).
	ErrNXDomain error = &unresolvable{"dns: no such domain"}
	// ErrNoRecords: the name exists but has no record of the type asked
	// (for a whole resolution: no target has an address). It matches
	// tm.ErrUnresolvable.
	ErrNoRecords error = &unresolvable{"dns: no records"}
	// ErrServFail: the server answered SERVFAIL, REFUSED or another
	// failure code, or could not be reached (connection refused).
	ErrServFail = errors.New("dns: server failure")
	// ErrTimeout: no server answered within Timeout after every attempt.
	// It also matches async.ErrTimeout (the await's own timeout), so a
	// route can test for either with errors.Is(err, async.ErrTimeout).
	ErrTimeout = timeoutError{}
	// ErrBadURI: the URI is not a SIP or SIPS URI with a host, or its
	// transport is not one this resolver supports.
	ErrBadURI = errors.New("dns: bad SIP URI")
	// ErrNotCached: Lookup found no cached address for the host (it never
	// queries). It wraps tm.ErrNoRoute, so tm answers the request 503.
	ErrNotCached = notCached{}
	// ErrClosed: the resolver was closed.
	ErrClosed = errors.New("dns: resolver closed")
	// ErrBadConfig: Config has an invalid field.
	ErrBadConfig = errors.New("dns: bad config")
)

type timeoutError struct{}

func (timeoutError) Error() string        { return "dns: timeout" }
func (timeoutError) Is(target error) bool { return target == async.ErrTimeout }

type notCached struct{}

func (notCached) Error() string        { return "dns: host not in cache" }
func (notCached) Is(target error) bool { return target == tm.ErrNoRoute }

// unresolvable is a permanent "this name has no address" answer.
type unresolvable struct{ msg string }

func (e *unresolvable) Error() string        { return e.msg }
func (e *unresolvable) Is(target error) bool { return target == tm.ErrUnresolvable }
