package tm

import (
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
// transaction becomes a tombstone: a record in a FIFO log outside the Go
// heap and an entry in a pointer-free index (arena.go). Every tombstone of
// a loop lives for the same Timer J, so the log is in expiry order and one
// loop timer sweeps it — no timer per tombstone.
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

// tombOverhead is what a tombstone costs beyond its record in the log
// (arena.go): its index entry.
const tombOverhead = 32

// tombTable is one loop's tombstones: records in an off-heap log
// (arena.go) swept by one timer.
type tombTable struct {
	log   tombLog
	sweep *reactor.Timer
}

// entomb replaces t, a completed non-INVITE transaction over UDP, by a
// tombstone that lives until Timer J. It reports false (t stays as it is)
// when its Context still has work (a pending branch or a suspension) or
// the record cannot be stored.
func (t *serverTx) entomb() bool {
	if c := t.ctx; c != nil && (c.suspended || c.pendingBranches() > 0) {
		return false
	}
	s, ls := t.s, t.ls
	tt := &ls.tombs
	expiry := ls.loop.Now().Add(64 * s.timers.T1)
	n := tt.log.add(t.key, t.last, t.dst, t.tp, expiry.UnixNano())
	if n == 0 {
		return false
	}
	size := int64(n + tombOverhead)
	t.last = nil
	t.terminate()
	tt.log.bytes += size
	s.txBytes.Add(size)
	s.stats.tombstones.Add(1)
	if !tt.sweep.Pending() {
		tt.sweep = ls.loop.AfterFunc(64*s.timers.T1, func() { s.sweepTombs(ls) })
	}
	return true
}

// sweepTombs removes the expired tombstones of ls (the oldest first: they
// all live for the same Timer J) and re-arms the sweep.
func (s *Server) sweepTombs(ls *loopState) {
	lg := &ls.tombs.log
	now := ls.loop.Now().UnixNano()
	for {
		r, pos, ok := lg.oldest()
		if !ok {
			return
		}
		if r.expiry > now {
			ls.tombs.sweep = ls.loop.AfterFunc(time.Duration(r.expiry-now), func() { s.sweepTombs(ls) })
			return
		}
		size := int64(r.size + tombOverhead)
		lg.popOldest(r, pos)
		lg.bytes -= size
		s.txBytes.Add(-size)
		s.stats.tombstones.Add(-1)
	}
}

// absorbTomb handles a retransmission of a request whose transaction is a
// tombstone: the final response goes out again. It reports whether key was
// one.
func (s *Server) absorbTomb(ls *loopState, key string) bool {
	r, ok := ls.tombs.log.find(key)
	if !ok {
		return false
	}
	s.stats.retransAbsorbed.Add(1)
	if r.resp != nil {
		// A copy: the log's memory is reused once the record expires.
		_ = s.send(ls, r.tp, append([]byte(nil), r.resp...), r.dst)
	}
	return true
}

// clearTombs drops every tombstone of ls and unmaps its log (Close).
func (s *Server) clearTombs(ls *loopState) {
	tt := &ls.tombs
	tt.sweep.Stop()
	s.txBytes.Add(-tt.log.bytes)
	s.stats.tombstones.Add(-tt.log.count)
	tt.log.reset()
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
