package dns

import (
	"github.com/asyncsip/asyncsip/internal/sipdns"
)

// The resolver itself lives in internal/sipdns, so that the asyncsip facade
// (which does not import modules/) resolves host names by default with the
// same code; this package is its public API. Every name below is that
// package's, under the name users know.

type (
	// Config configures a Resolver. The zero value queries the servers of
	// /etc/resolv.conf with the defaults documented on each field.
	Config = sipdns.Config
	// Resolver resolves SIP URIs (RFC 3263) with a cache. It is safe for
	// concurrent use from every loop; create one per server and Close it.
	// Resolve returns the targets as an async op; Lookup reads the cache
	// only (for tm.Config.Resolver); NextHop is the first target as a
	// tm.Config.Lookup.
	Resolver = sipdns.Resolver
	// Target is one next hop found by Resolve: an address, a port and a
	// transport, in the order RFC 3263 says to try them.
	Target = sipdns.Target
	// Observer receives what a Resolver does, for metrics.
	Observer = sipdns.Observer
	// Stats are a resolver's counters since NewResolver.
	Stats = sipdns.Stats
	// Kind classifies an error of this package for metric labels.
	Kind = sipdns.Kind
)

// NewResolver returns a resolver for cfg; bad servers or transports give an
// error wrapping ErrBadConfig.
func NewResolver(cfg Config) (*Resolver, error) { return sipdns.NewResolver(cfg) }

// KindOf classifies err; async.ErrTimeout (the await's timeout) is
// KindTimeout like ErrTimeout.
func KindOf(err error) Kind { return sipdns.KindOf(err) }

// The kinds of outcome KindOf returns.
const (
	KindOK         = sipdns.KindOK
	KindNXDomain   = sipdns.KindNXDomain
	KindNoRecords  = sipdns.KindNoRecords
	KindServFail   = sipdns.KindServFail
	KindTimeout    = sipdns.KindTimeout
	KindBadURI     = sipdns.KindBadURI
	KindOverloaded = sipdns.KindOverloaded
	KindNotCached  = sipdns.KindNotCached
	KindOther      = sipdns.KindOther
)

// The errors of resolution; test them with errors.Is.
var (
	// ErrNXDomain: the name does not exist (matches tm.ErrUnresolvable).
	ErrNXDomain = sipdns.ErrNXDomain
	// ErrNoRecords: the name exists but has no record of the type asked
	// (matches tm.ErrUnresolvable).
	ErrNoRecords = sipdns.ErrNoRecords
	// ErrServFail: the server answered a failure code or could not be
	// reached.
	ErrServFail = sipdns.ErrServFail
	// ErrTimeout: no server answered in time; it also matches
	// async.ErrTimeout.
	ErrTimeout = sipdns.ErrTimeout
	// ErrBadURI: the URI is not a SIP or SIPS URI with a host, or its
	// transport is not supported.
	ErrBadURI = sipdns.ErrBadURI
	// ErrNotCached: Lookup found no cached address (matches tm.ErrNoRoute).
	ErrNotCached = sipdns.ErrNotCached
	// ErrClosed: the resolver was closed.
	ErrClosed = sipdns.ErrClosed
	// ErrBadConfig: Config has an invalid field.
	ErrBadConfig = sipdns.ErrBadConfig
)
