package tm

import (
	"net/netip"
	"time"

	"github.com/asyncsip/asyncsip/reactor"
)

// Transaction memory under floods.
//
// A non-INVITE server transaction over UDP that has sent its final response
// must absorb retransmissions for Timer J (64*T1 = 32 s) — at 5,000
// requests/s that is 160,000 transactions waiting. A full serverTx keeps
// its parsed request and Context (several KB each); all Timer J needs is
// the key, the serialized final response and where it went. So a completed
// transaction becomes a tombstone: a map entry and a slot in a FIFO queue
// (every tombstone of a loop lives for the same Timer J, so the queue is in
// expiry order and one loop timer sweeps it — no timer per tombstone).
//
// Memory held by live transactions (an estimate per transaction) and by
// tombstones (their bytes) is accounted in one atomic counter across loops;
// over Config.MaxTransactionBytes new requests get 503 without a
// transaction.

// liveTxBytes is what a live server transaction is accounted for: its
// parsed request, Context and maps (TestTombstoneShrinksMemoryPerTransaction
// measures about 2.6 KB for a REGISTER; counted higher for INVITEs with
// bodies).
const liveTxBytes = 3 << 10

// tombOverhead is a tombstone's fixed cost beyond its key and response:
// the map entry, the queue slot and the struct.
const tombOverhead = 160

// tombstone is a completed transaction that only absorbs retransmissions.
type tombstone struct {
	last []byte // the final response; nil when the request was dropped
	dst  netip.AddrPort
	tp   Transport
	size int64
}

type tombEntry struct {
	key string
	at  time.Time
}

// tombTable is one loop's tombstones.
type tombTable struct {
	m     map[string]tombstone
	q     []tombEntry
	head  int
	sweep *reactor.Timer
}

// entomb replaces t, a completed non-INVITE transaction over UDP, by a
// tombstone that lives until Timer J. It reports false (t stays as it is)
// when its Context still has work: a pending branch or a suspension.
func (t *serverTx) entomb() bool {
	if c := t.ctx; c != nil && (c.suspended || c.pendingBranches() > 0) {
		return false
	}
	s, ls := t.s, t.ls
	tb := tombstone{last: t.last, dst: t.dst, tp: t.tp}
	tb.size = int64(len(t.key)+len(t.last)) + tombOverhead
	t.last = nil
	t.terminate()
	tt := &ls.tombs
	if tt.m == nil {
		tt.m = make(map[string]tombstone)
	}
	tt.m[t.key] = tb
	s.txBytes.Add(tb.size)
	s.stats.tombstones.Add(1)
	tt.q = append(tt.q, tombEntry{key: t.key, at: ls.loop.Now().Add(64 * s.timers.T1)})
	if !tt.sweep.Pending() {
		tt.sweep = ls.loop.AfterFunc(64*s.timers.T1, func() { s.sweepTombs(ls) })
	}
	return true
}

// sweepTombs removes the expired tombstones of ls and re-arms the sweep.
func (s *Server) sweepTombs(ls *loopState) {
	tt := &ls.tombs
	now := ls.loop.Now()
	for tt.head < len(tt.q) && !tt.q[tt.head].at.After(now) {
		s.dropTomb(ls, tt.q[tt.head].key)
		tt.q[tt.head] = tombEntry{}
		tt.head++
	}
	if tt.head == len(tt.q) {
		tt.q, tt.head = tt.q[:0], 0
		return
	}
	if tt.head > len(tt.q)/2 {
		// Compact so the queue does not keep its high-water mark forever.
		n := copy(tt.q, tt.q[tt.head:])
		clear(tt.q[n:])
		tt.q, tt.head = tt.q[:n], 0
	}
	tt.sweep = ls.loop.AfterFunc(tt.q[tt.head].at.Sub(now), func() { s.sweepTombs(ls) })
}

func (s *Server) dropTomb(ls *loopState, key string) {
	if tb, ok := ls.tombs.m[key]; ok {
		delete(ls.tombs.m, key)
		s.txBytes.Add(-tb.size)
		s.stats.tombstones.Add(-1)
	}
}

// absorbTomb handles a retransmission of a request whose transaction is a
// tombstone: the final response goes out again. It reports whether key was
// one.
func (s *Server) absorbTomb(ls *loopState, key string) bool {
	tb, ok := ls.tombs.m[key]
	if !ok {
		return false
	}
	s.stats.retransAbsorbed.Add(1)
	if tb.last != nil {
		s.stats.sent.Add(1)
		_ = tb.tp.Send(ls.loop, tb.last, tb.dst)
	}
	return true
}

// clearTombs drops every tombstone of ls (Close).
func (s *Server) clearTombs(ls *loopState) {
	ls.tombs.sweep.Stop()
	for k := range ls.tombs.m {
		s.dropTomb(ls, k)
	}
	ls.tombs.q, ls.tombs.head = nil, 0
}

// overCap reports whether a new transaction would exceed a bound: the
// per-loop count or the global bytes.
func (s *Server) overCap(ls *loopState) bool {
	return len(ls.stx) >= s.cfg.MaxTransactions || s.txBytes.Load()+liveTxBytes > s.cfg.MaxTransactionBytes
}

// releaseInvite drops what a completed INVITE server transaction (non-2xx
// final, waiting for its ACK) no longer needs: the request and, when it
// has no work left, the Context.
func (t *serverTx) releaseInvite() {
	t.req = nil
	if c := t.ctx; c != nil && !c.suspended && c.pendingBranches() == 0 {
		t.ctx = nil
	}
}
