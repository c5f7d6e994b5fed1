package sharedredis

import (
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/asyncsip/asyncsip/modules/redis"
	"github.com/asyncsip/asyncsip/modules/shared"
)

// DefaultTTL is the default of Options.TTL.
const DefaultTTL = 5 * time.Second

// Options configures a Store.
type Options struct {
	// Prefix starts every key (default "asyncsip:"); instances that share
	// state use the same one.
	Prefix string
	// Instance names this instance, unique among those sharing the Redis
	// (default host name and process id).
	Instance string
	// TTL is how long the instance's part of the Counter's counts lives
	// after its last heartbeat (Counter.Sync, Acquire or Release) — a few
	// heartbeat intervals (default DefaultTTL).
	TTL time.Duration
}

// Store makes the shared-state stores of one instance on one Redis client.
type Store struct {
	c    *redis.Client
	opts Options
}

// New returns the stores of this instance on c.
func New(c *redis.Client, opts Options) *Store {
	if opts.Prefix == "" {
		opts.Prefix = "asyncsip:"
	}
	if opts.Instance == "" {
		host, _ := os.Hostname()
		opts.Instance = host + "/" + strconv.Itoa(os.Getpid())
	}
	if opts.TTL <= 0 {
		opts.TTL = DefaultTTL
	}
	return &Store{c: c, opts: opts}
}

// Options returns the options in effect (defaults filled).
func (s *Store) Options() Options { return s.opts }

// Counter returns the instance's shared.Counter.
func (s *Store) Counter() shared.Counter { return counter{s} }

// Rates returns the shared.Rates.
func (s *Store) Rates() shared.Rates { return rates{s} }

// Nonces returns the shared.Nonces.
func (s *Store) Nonces() shared.Nonces { return nonces{s} }

// Board returns the shared.Board.
func (s *Store) Board() shared.Board { return board{s} }

// Location returns the shared.Location.
func (s *Store) Location() shared.Location { return location{s} }

func (s *Store) key(kind, k string) string { return s.opts.Prefix + kind + ":" + k }

func ms(d time.Duration) string { return strconv.FormatInt(max(d.Milliseconds(), 1), 10) }

// atoi reads an integer a script returned as a string.
func atoi(s string) (int64, error) {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("sharedredis: bad number %q from a script: %w", s, err)
	}
	return n, nil
}
