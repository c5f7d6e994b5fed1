package tm

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The tombstone log keeps records across chunks, finds each by its key
// (exactly: a hash match with another key is not a hit), gives back what
// was stored (response, IPv4, IPv6 and IPv4-mapped destinations, transport)
// and returns whole chunks as the oldest records go.
func TestTombLogRecords(t *testing.T) {
	var lg tombLog
	tpA, tpB := &fakeTP{}, &tallyTP{}
	dsts := []netip.AddrPort{
		netip.MustParseAddrPort("127.0.0.1:5061"),
		netip.MustParseAddrPort("[2001:db8::7]:5070"),
		netip.MustParseAddrPort("[::ffff:192.0.2.1]:5060"),
	}
	const n = 10000
	resp := func(i int) []byte {
		if i%7 == 0 {
			return nil // a dropped request: nothing to resend
		}
		return fmt.Appendf(nil, "SIP/2.0 401 Unauthorized\r\nX-N: %d\r\nX-Pad: %0*d\r\n\r\n", i, 100+i%400, 0)
	}
	tpOf := func(i int) Transport {
		if i%2 == 0 {
			return tpA
		}
		return tpB
	}
	for i := 0; i < n; i++ {
		require.Positive(t, lg.add(fmt.Sprint("key-", i), resp(i), dsts[i%3], tpOf(i), int64(i)))
	}
	require.Greater(t, len(lg.chunks), 2, "the records span several chunks")
	require.EqualValues(t, n, lg.count)
	for _, i := range []int{0, 1, 2, 7, 4999, n - 1} {
		r, ok := lg.find(fmt.Sprint("key-", i))
		require.True(t, ok, i)
		assert.Equal(t, resp(i), r.resp, i)
		assert.Equal(t, dsts[i%3], r.dst, i)
		assert.Equal(t, tpOf(i), r.tp, i)
		assert.EqualValues(t, i, r.expiry)
	}
	_, ok := lg.find("key-none")
	assert.False(t, ok)

	// An index entry pointing at another key's record is not a hit.
	lg.idx[lg.hash("impostor")] = lg.idx[lg.hash("key-5")]
	_, ok = lg.find("impostor")
	assert.False(t, ok)
	delete(lg.idx, lg.hash("impostor"))

	chunks := len(lg.chunks)
	for i := 0; i < n/2; i++ {
		r, pos, ok := lg.oldest()
		require.True(t, ok)
		require.Equal(t, fmt.Sprint("key-", i), string(r.key))
		lg.popOldest(r, pos)
	}
	assert.Less(t, len(lg.chunks), chunks, "chunks of expired records returned")
	assert.LessOrEqual(t, len(lg.spare), spareChunks)
	_, ok = lg.find("key-10")
	assert.False(t, ok, "an expired record is gone")
	_, ok = lg.find(fmt.Sprint("key-", n-1))
	assert.True(t, ok)
	for {
		r, pos, ok := lg.oldest()
		if !ok {
			break
		}
		lg.popOldest(r, pos)
	}
	assert.Zero(t, lg.count)
	assert.Empty(t, lg.chunks)
	assert.Empty(t, lg.idx)
	lg.reset()
	assert.Empty(t, lg.spare)
}

// Records that cannot be stored (a scoped IPv6 destination) leave the
// transaction as it was: it still absorbs retransmissions for Timer J.
func TestTombLogRefusesWhatItCannotStore(t *testing.T) {
	var lg tombLog
	assert.Zero(t, lg.add("k", []byte("x"), netip.MustParseAddrPort("[fe80::1%eth0]:5060"), &fakeTP{}, 0))
	assert.Zero(t, lg.add(string(make([]byte, 70000)), nil, uacAddr, &fakeTP{}, 0))
	assert.Zero(t, lg.count)
}

// Through the server: thousands of tombstones over several chunks of the
// log, the first and the last still answering retransmissions byte for
// byte; after Timer J nothing is left, accounted bytes included, and the
// log holds no chunk.
func TestTombstonesAcrossChunks(t *testing.T) {
	r := newRig(t, Config{}, Routes{Request: challenge})
	const n = 5000
	reg := func(i int) string {
		return request("REGISTER", "sip:127.0.0.1", fmt.Sprint("tc-", i), fmt.Sprint("z9hG4bK-tc", i), 1,
			fmt.Sprintf("X-Pad: %0400d\n", i))
	}
	var first, last string
	for i := 0; i < n; i++ {
		r.recv(uacAddr, reg(i))
		out := r.expect("127.0.0.1:5061 401")
		switch i {
		case 0:
			first = out[0].msg.String()
		case n - 1:
			last = out[0].msg.String()
		}
	}
	lg := &r.s.loops[0].tombs.log
	require.Greater(t, len(lg.chunks), 1, "several chunks")
	st := r.s.Stats()
	assert.EqualValues(t, n, st.Tombstones)
	assert.Empty(t, r.s.loops[0].stx)

	r.recv(uacAddr, reg(0))
	assert.Equal(t, first, r.expect("127.0.0.1:5061 401")[0].msg.String())
	r.recv(uacAddr, reg(n-1))
	assert.Equal(t, last, r.expect("127.0.0.1:5061 401")[0].msg.String())
	assert.EqualValues(t, 2, r.s.Stats().RetransAbsorbed)

	r.advance(33 * time.Second) // past Timer J
	st = r.s.Stats()
	assert.Zero(t, st.Tombstones)
	assert.Zero(t, st.TransactionBytes)
	assert.Empty(t, lg.chunks)
	r.recv(uacAddr, reg(0)) // a new transaction now
	r.expect("127.0.0.1:5061 401")
	assert.EqualValues(t, n+1, r.s.Stats().ServerTxCreated)
}
