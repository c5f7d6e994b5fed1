package tm

import (
	"fmt"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/asyncsip/asyncsip/reactor"
)

func challenge(c *Context) { _ = c.Reply(401, "Unauthorized") }

// A completed non-INVITE transaction over UDP becomes a tombstone: its
// retransmissions still get the final response until Timer J, then it is
// gone and its bytes are released.
func TestTombstoneAbsorbsRetransmissions(t *testing.T) {
	r := newRig(t, Config{}, Routes{Request: challenge})
	reg := request("REGISTER", "sip:127.0.0.1", "tb-1", "z9hG4bK-tb1", 1, "")
	r.recv(uacAddr, reg)
	first := r.expect("127.0.0.1:5061 401")[0].msg
	assert.Empty(t, r.s.loops[0].stx, "no full transaction kept")
	st := r.s.Stats()
	assert.EqualValues(t, 1, st.Tombstones)
	assert.Positive(t, st.TransactionBytes)
	assert.Less(t, st.TransactionBytes, int64(liveTxBytes))

	r.advance(10 * time.Second)
	r.recv(uacAddr, reg)
	again := r.expect("127.0.0.1:5061 401")[0].msg
	assert.Equal(t, first.String(), again.String(), "the same response, To tag included")

	r.advance(23 * time.Second) // past Timer J (32 s)
	st = r.s.Stats()
	assert.Zero(t, st.Tombstones)
	assert.Zero(t, st.TransactionBytes)
	assert.Equal(t, st.ServerTxCreated, st.ServerTxDone)
	r.recv(uacAddr, reg) // now a new transaction
	r.expect("127.0.0.1:5061 401")
	assert.EqualValues(t, 2, r.s.Stats().ServerTxCreated)
}

// A dropped request's tombstone absorbs retransmissions silently.
func TestTombstoneOfDroppedRequestIsSilent(t *testing.T) {
	r := newRig(t, Config{}, Routes{Request: func(c *Context) { c.Drop() }})
	msg := request("OPTIONS", "sip:127.0.0.1", "tb-2", "z9hG4bK-tb2", 1, "")
	r.recv(uacAddr, msg)
	r.recv(uacAddr, msg)
	r.expect()
	assert.EqualValues(t, 1, r.s.Stats().Tombstones)
	assert.EqualValues(t, 1, r.s.Stats().RetransAbsorbed)
}

// tallyTP counts what it would send and keeps nothing (memory figures
// without a recorder).
type tallyTP struct{ discardTP }

func (c *tallyTP) Send(*reactor.Loop, []byte, netip.AddrPort) error { c.n++; return nil }

// heapPerTx is the heap held per transaction after n requests of routes.
func heapPerTx(t *testing.T, n int, routes Routes) (int64, *Server) {
	clk := reactor.NewFakeClock(time.Unix(1_700_000_000, 0))
	g := reactor.NewManualGroup(1, clk)
	s := NewServer(g.Loops(), Config{}, routes)
	tp := &tallyTP{}
	s.AddTransport(tp)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&before)
	for i := 0; i < n; i++ {
		raw := request("REGISTER", "sip:127.0.0.1", fmt.Sprint("mem-", i), fmt.Sprint("z9hG4bK-mem", i), 1,
			"Authorization: Digest username=\"alice\", realm=\"example.com\", nonce=\"abc\", uri=\"sip:127.0.0.1\", response=\"0123456789abcdef0123456789abcdef\"\n")
		s.Receive(g.Loop(0), []byte(raw), uacAddr, tp)
		g.Loop(0).RunPending()
	}
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&after)
	st := s.Stats()
	require.Equal(t, n, tp.n+int(st.Suspended), "every request answered or suspended")
	runtime.KeepAlive(s)
	return (int64(after.HeapAlloc) - int64(before.HeapAlloc)) / int64(n), s
}

// The tombstone is what makes a flood of answered requests cheap: it holds
// a fraction of what a live transaction (request + Context) holds.
func TestTombstoneShrinksMemoryPerTransaction(t *testing.T) {
	const n = 3000
	tomb, s := heapPerTx(t, n, Routes{Request: challenge})
	assert.EqualValues(t, n, s.Stats().Tombstones)
	sp := &suspender{}
	live, s2 := heapPerTx(t, n, Routes{Request: sp.route(nil)})
	assert.EqualValues(t, n, s2.Stats().Suspended)
	t.Logf("heap per transaction: tombstone %d B, live %d B", tomb, live)
	assert.Less(t, tomb, int64(1500), "a tombstone stays small")
	assert.Less(t, 3*tomb, live, "a tombstone is a fraction of a live transaction")
	assert.LessOrEqual(t, s.Stats().TransactionBytes, int64(n*1000), "accounted bytes match")
}

// MaxTransactionBytes holds across loops: one budget, not one per loop.
func TestGlobalTransactionCap(t *testing.T) {
	sp := &suspender{}
	limit := int64(10 * liveTxBytes)
	r := newRigN(t, 2, Config{MaxTransactionBytes: limit}, Routes{Request: sp.route(nil)})
	// Call-IDs alternating between the two loops (ownership hashes the
	// Call-ID with a per-server random seed: 10 arbitrary Call-IDs all
	// landed on one loop in a run, which proves nothing about a global cap).
	var ids [2][]string
	for i := 0; len(ids[0]) < 15 || len(ids[1]) < 15; i++ {
		id := fmt.Sprint("gc-", i)
		k := 0
		if r.s.owner(id) == r.s.loops[1] {
			k = 1
		}
		if len(ids[k]) < 15 {
			ids[k] = append(ids[k], id)
		}
	}
	for i := 0; i < 30; i++ {
		id := ids[i%2][i/2]
		r.recv(uacAddr, request("MESSAGE", "sip:bob@127.0.0.1:5062", id, "z9hG4bK-"+id, 1, ""))
	}
	n0, n1 := len(r.s.loops[0].stx), len(r.s.loops[1].stx)
	assert.Equal(t, 10, n0+n1, "10 admitted in all")
	assert.Positive(t, n0)
	assert.Positive(t, n1)
	st := r.s.Stats()
	assert.EqualValues(t, 20, st.Overload)
	assert.LessOrEqual(t, st.TransactionBytes, limit)
	refused := 0
	for _, s := range r.take() {
		if short(s.msg) == "503" {
			refused++
			assert.NotEmpty(t, s.msg.GetHeaders("Retry-After"))
		}
	}
	assert.Equal(t, 20, refused, "every refused request answered")
}
