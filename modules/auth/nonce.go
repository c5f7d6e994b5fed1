package auth

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// A nonce is base64url of 44 bytes:
//
//	issued (8, unix seconds) ‖ slot (4) ‖ random (8) ‖ source tag (8) ‖ MAC (16)
//
// MAC = HMAC-SHA256(secret, realm ‖ the 28 bytes before it)[:16], so only
// we can mint one and its age cannot be forged. The source tag is an HMAC
// of the first 20 bytes and the address the challenge went to; it is
// checked only with BindSource. The slot names the entry of the nonce
// table that tracks the nonce's highest nonce-count; the entry remembers
// the random part, so a nonce whose entry was reused (evicted) or that was
// issued by another instance is unknown here: stale, never accepted.
const (
	nonceLen    = 44
	offSlot     = 8
	offRand     = 12
	offTag      = 20
	offMAC      = 28
	slotBytes   = 24 // the size of one nonceSlot, for the memory figure
	nonceStripe = 64 // locks striped over the table
)

// nonceSlot tracks one issued nonce.
type nonceSlot struct {
	rand   uint64
	issued int64 // unix seconds
	nc     uint32
}

// nonceTable is a fixed ring of slots: issuing takes the next slot, so
// when the table is full the oldest nonce is forgotten. Its memory is
// fixed at creation (slotBytes per slot).
type nonceTable struct {
	slots []nonceSlot
	locks [nonceStripe]sync.Mutex
	next  atomic.Uint64
}

func newNonceTable(n int) *nonceTable {
	return &nonceTable{slots: make([]nonceSlot, n)}
}

func (t *nonceTable) issue(r uint64, issued int64) uint32 {
	i := uint32((t.next.Add(1) - 1) % uint64(len(t.slots)))
	mu := &t.locks[i%nonceStripe]
	mu.Lock()
	t.slots[i] = nonceSlot{rand: r, issued: issued}
	mu.Unlock()
	return i
}

// peek reports what use would say, without recording anything: Check
// refuses a replay before the route spends a user lookup on it.
func (t *nonceTable) peek(i uint32, r uint64, issued int64, nc uint32) error {
	if int(i) >= len(t.slots) {
		return fmt.Errorf("%w: unknown nonce", ErrStaleNonce)
	}
	mu := &t.locks[i%nonceStripe]
	mu.Lock()
	defer mu.Unlock()
	return t.slots[i].accepts(r, issued, nc)
}

// accepts reports whether nc is acceptable for the nonce (r, issued).
func (s *nonceSlot) accepts(r uint64, issued int64, nc uint32) error {
	switch {
	case s.rand != r || s.issued != issued:
		return fmt.Errorf("%w: nonce no longer tracked (evicted or issued elsewhere)", ErrStaleNonce)
	case nc <= s.nc:
		return fmt.Errorf("%w: nc %08x not above %08x", ErrReplay, nc, s.nc)
	}
	return nil
}

// use records nonce-count nc for the nonce in slot i: ErrStaleNonce when the
// slot no longer tracks it, ErrReplay when nc is not above the last one.
func (t *nonceTable) use(i uint32, r uint64, issued int64, nc uint32) error {
	if int(i) >= len(t.slots) {
		return fmt.Errorf("%w: unknown nonce", ErrStaleNonce)
	}
	mu := &t.locks[i%nonceStripe]
	mu.Lock()
	defer mu.Unlock()
	s := &t.slots[i]
	if err := s.accepts(r, issued, nc); err != nil {
		return err
	}
	s.nc = nc
	return nil
}

// errOtherSource: with BindSource, a nonce used from another address.
var errOtherSource = fmt.Errorf("%w: used from another address than it was issued to", ErrStaleNonce)

// nonce is a decoded, authenticated nonce.
type nonce struct {
	issued int64
	slot   uint32
	rand   uint64
	tag    [8]byte
}

// issueNonce returns a fresh nonce for a challenge sent to src.
func (c *Challenger) issueNonce(src netip.Addr) string {
	var b [nonceLen]byte
	issued := c.now().Unix()
	binary.BigEndian.PutUint64(b[:8], uint64(issued))
	_, _ = rand.Read(b[offRand:offTag])
	r := binary.BigEndian.Uint64(b[offRand:offTag])
	binary.BigEndian.PutUint32(b[offSlot:offRand], c.table().issue(r, issued))
	copy(b[offTag:offMAC], c.sourceTag(b[:offTag], src))
	copy(b[offMAC:], c.mac(b[:offMAC]))
	return base64.RawURLEncoding.EncodeToString(b[:])
}

func (c *Challenger) mac(data []byte) []byte {
	m := hmac.New(sha256.New, c.secret)
	m.Write([]byte(c.Realm))
	m.Write([]byte{0})
	m.Write(data)
	return m.Sum(nil)[:16]
}

func (c *Challenger) sourceTag(head []byte, src netip.Addr) []byte {
	m := hmac.New(sha256.New, c.secret)
	m.Write([]byte("source\x00"))
	m.Write(head)
	a := src.Unmap().As16()
	m.Write(a[:])
	return m.Sum(nil)[:8]
}

// checkNonce authenticates a nonce and checks its age and, with
// BindSource, the address it is used from.
func (c *Challenger) checkNonce(s string, src netip.Addr) (nonce, error) {
	var n nonce
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(b) != nonceLen || !hmac.Equal(b[offMAC:], c.mac(b[:offMAC])) {
		return n, ErrBadNonce
	}
	n.issued = int64(binary.BigEndian.Uint64(b[:8]))
	n.slot = binary.BigEndian.Uint32(b[offSlot:offRand])
	n.rand = binary.BigEndian.Uint64(b[offRand:offTag])
	copy(n.tag[:], b[offTag:offMAC])
	age := c.now().Sub(time.Unix(n.issued, 0))
	if age > c.ttl() || age < -time.Minute {
		return n, fmt.Errorf("%w: issued %s ago", ErrStaleNonce, age.Round(time.Second))
	}
	if c.BindSource && !hmac.Equal(n.tag[:], c.sourceTag(b[:offTag], src)) {
		return n, errOtherSource
	}
	return n, nil
}

func (c *Challenger) ttl() time.Duration {
	if c.NonceTTL <= 0 {
		return DefaultNonceTTL
	}
	return c.NonceTTL
}

// table returns the nonce table, created on first use with MaxNonces slots.
func (c *Challenger) table() *nonceTable {
	c.once.Do(func() {
		n := c.MaxNonces
		if n <= 0 {
			n = DefaultMaxNonces
		}
		c.nonces = newNonceTable(n)
	})
	return c.nonces
}
