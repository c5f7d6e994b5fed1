package shared

import (
	"errors"
	"fmt"
	"time"

	"github.com/asyncsip/asyncsip/async"
)

// Counter counts things held by instances — the concurrent calls of a
// profile value, say. Each instance owns its part of every count; the total
// is the sum over the instances alive. An instance that dies stops its
// heartbeat (Sync) and its part expires with it, so its calls stop counting
// without anyone releasing them.
type Counter interface {
	// Acquire counts one more under key for this instance, unless limit is
	// above zero and the total is at limit already: then it counts nothing
	// and returns OK false. The check and the count are one atomic step.
	Acquire(key string, limit int) async.Op[Acquired]
	// Release counts one fewer under key for this instance (never below
	// zero) and returns the total after it.
	Release(key string) async.Op[int]
	// Total returns the count under key over the instances alive.
	Total(key string) async.Op[int]
	// Sync is the heartbeat: it states this instance's counts (keys absent
	// count zero) and keeps the instance alive for the store's TTL. A count
	// lost while the store was unreachable is corrected by the next Sync.
	Sync(own map[string]int) async.Op[struct{}]
}

// Acquired is the result of Counter.Acquire.
type Acquired struct {
	// Total is the count under the key after the call.
	Total int
	// OK reports whether the acquire counted (false: at the limit).
	OK bool
}

// Rates counts events per key (requests per source address) across
// instances in fixed windows, and bans keys over a limit.
type Rates interface {
	// Add adds counts (key → events seen here since the last Add) to the
	// current window of length window. A key whose total in the window
	// goes above limit is banned for banFor. It returns the keys of counts
	// that are banned now (by this Add or an earlier one, from any
	// instance) with the end of their ban.
	Add(counts map[string]int64, limit int64, window, banFor time.Duration) async.Op[map[string]time.Time]
}

// Nonces remembers the highest nonce-count used with each digest nonce, so
// that a replay is refused whichever instance it reaches.
type Nonces interface {
	// Use records nc for the nonce key and reports true when nc is above
	// every count used with key before; false (nothing recorded) for a
	// replay. The entry is forgotten ttl after its last use.
	Use(key string, nc uint32, ttl time.Duration) async.Op[bool]
}

// Board holds small values by key with a time to live: what one instance
// learnt that the others should see (a destination's state).
type Board interface {
	// Put sets key to value for ttl.
	Put(key, value string, ttl time.Duration) async.Op[struct{}]
	// Get returns the values of keys that are set (absent keys are left
	// out).
	Get(keys ...string) async.Op[map[string]string]
}

// Binding is one contact of an address of record.
type Binding struct {
	// Contact is the contact URI.
	Contact string
	// Expires is when the binding ends (unix seconds precision). In a
	// Save, a zero or past Expires removes the binding.
	Expires time.Time
	// CallID and CSeq are those of the REGISTER that saved it.
	CallID string
	CSeq   int64
}

// Live reports whether b is in force at now.
func (b Binding) Live(now time.Time) bool { return b.Expires.After(now) }

// Saved is the result of Location.Save: the live bindings before and after
// it, each sorted by contact.
type Saved struct {
	Before, After []Binding
}

// Location is a registrar's location table: the bindings of each address of
// record (AOR), each with its own expiry.
type Location interface {
	// Save applies a REGISTER to aor in one atomic step: with wildcard every
	// binding is removed first; then each of binds is added or refreshed
	// (Expires in the future) or removed (Expires zero or past). If more
	// than max bindings would then be live, nothing is changed and the
	// error is a *TooManyError.
	Save(aor string, binds []Binding, wildcard bool, max int, now time.Time) async.Op[Saved]
	// Lookup returns the live bindings of aor, the latest to expire first
	// (ties by contact), at most limit of them (limit <= 0: all).
	Lookup(aor string, limit int, now time.Time) async.Op[[]Binding]
	// Remove removes one binding and reports whether it was there.
	Remove(aor, contact string) async.Op[bool]
	// RemoveAll removes every binding of aor.
	RemoveAll(aor string) async.Op[int]
}

// TooManyError is the error of a Location.Save that would leave more than
// its max bindings live: nothing was stored.
type TooManyError struct {
	// Live is the number of bindings the save would have left.
	Live int
}

func (e *TooManyError) Error() string {
	return fmt.Sprintf("shared: %d bindings would be live, more than allowed", e.Live)
}

// ErrBadKey is the error of an op given an empty key.
var ErrBadKey = errors.New("shared: empty key")
