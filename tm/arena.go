package tm

import (
	"encoding/binary"
	"hash/maphash"
	"net/netip"
	"reflect"
	"runtime"

	"golang.org/x/sys/unix"
)

// Tombstones off the Go heap.
//
// Kept as Go objects (a map entry with a string key, a struct and the
// response as a []byte), tombstones cost about 2 KB of RSS each, because
// the collector lets the heap grow to twice the live data (GOGC=100): a
// flood of 5,000 REGISTERs/s answered 401 (160,000 tombstones in Timer J)
// took the process to 322 MiB RSS (TestMeasureRegisterFlood, before this
// change; 151 MiB after). Every tombstone of a loop lives for the same Timer J, so they are
// records appended to a FIFO log of 1 MiB chunks mapped outside the Go heap
// (anonymous mmap): expiry reads the oldest records and returns whole
// chunks. The index maps a keyed 64-bit hash of the transaction key to the
// record's position; it holds no pointers, so the collector does not scan
// it, and the record carries the key so a lookup is exact.

const (
	chunkShift = 20
	chunkSize  = 1 << chunkShift
	// recHead is a record's fixed part: expiry (8), key hash (8), key
	// length (2), response length (4), transport index (1), destination
	// address family (1: 4 or 6), address (16) and port (2).
	recHead = 42
	// spareChunks are kept mapped for reuse instead of unmapped at once.
	spareChunks = 2
)

// chunk is one piece of a loop's tombstone log.
type chunk struct {
	b       []byte
	used    int
	mapped  bool            // from mmap (else a heap fallback)
	cleanup runtime.Cleanup // unmaps b if the chunk is lost without release (a Server never closed)
}

// tombLog is one loop's tombstones: the log, its index and the transports
// the records refer to by index. Only its loop touches it.
type tombLog struct {
	idx    map[uint64]uint64 // key hash → position (chunk number << chunkShift | offset)
	chunks []*chunk          // live chunks, oldest first
	first  uint64            // number of chunks[0]
	tail   int               // offset in chunks[0] of the oldest live record
	spare  []*chunk
	tps    []Transport
	seed   maphash.Seed
	count  int64 // live records
	bytes  int64 // bytes accounted for them
}

// tombRec is a record read back from the log. resp points into the log:
// copy it before the log moves on.
type tombRec struct {
	expiry int64
	hash   uint64
	key    []byte
	resp   []byte
	tp     Transport
	dst    netip.AddrPort
	size   int
}

func newChunk() *chunk {
	b, err := unix.Mmap(-1, 0, chunkSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE)
	if err != nil {
		return &chunk{b: make([]byte, chunkSize)}
	}
	c := &chunk{b: b, mapped: true}
	c.cleanup = runtime.AddCleanup(c, func(b []byte) { _ = unix.Munmap(b) }, b)
	return c
}

func (c *chunk) release() {
	if c.mapped {
		c.cleanup.Stop()
		_ = unix.Munmap(c.b)
	}
	c.b = nil
}

func (lg *tombLog) hash(key string) uint64 {
	if lg.idx == nil {
		lg.idx = make(map[uint64]uint64)
		lg.seed = maphash.MakeSeed()
	}
	return maphash.String(lg.seed, key)
}

// tpIndex returns the index of tp in lg.tps, adding it (false when the
// index would not fit a byte, or when tp's dynamic type cannot be compared:
// its transaction then keeps for Timer J as a Go object).
func (lg *tombLog) tpIndex(tp Transport) (byte, bool) {
	if !reflect.TypeOf(tp).Comparable() {
		return 0, false
	}
	for i, t := range lg.tps {
		if t == tp {
			return byte(i), true
		}
	}
	if len(lg.tps) > 255 {
		return 0, false
	}
	lg.tps = append(lg.tps, tp)
	return byte(len(lg.tps) - 1), true
}

// add appends a record and indexes it; it reports its size, or 0 when it
// cannot be stored (too large, too many transports).
func (lg *tombLog) add(key string, resp []byte, dst netip.AddrPort, tp Transport, expiry int64) int {
	size := recHead + len(key) + len(resp)
	if len(key) > 0xffff || size > chunkSize || dst.Addr().Zone() != "" {
		return 0
	}
	ti, ok := lg.tpIndex(tp)
	if !ok {
		return 0
	}
	h := lg.hash(key)
	if n := len(lg.chunks); n == 0 || lg.chunks[n-1].used+size > chunkSize {
		var c *chunk
		if k := len(lg.spare); k > 0 {
			c, lg.spare = lg.spare[k-1], lg.spare[:k-1]
		} else {
			c = newChunk()
		}
		if n == 0 {
			lg.tail = 0
		}
		lg.chunks = append(lg.chunks, c)
	}
	c := lg.chunks[len(lg.chunks)-1]
	off := c.used
	b := c.b[off : off+size]
	binary.LittleEndian.PutUint64(b[0:], uint64(expiry))
	binary.LittleEndian.PutUint64(b[8:], h)
	binary.LittleEndian.PutUint16(b[16:], uint16(len(key)))
	binary.LittleEndian.PutUint32(b[18:], uint32(len(resp)))
	b[22] = ti
	b[23] = 6
	if dst.Addr().Is4() {
		b[23] = 4
	}
	a16 := dst.Addr().As16()
	copy(b[24:40], a16[:])
	binary.LittleEndian.PutUint16(b[40:], dst.Port())
	copy(b[recHead:], key)
	copy(b[recHead+len(key):], resp)
	c.used += size
	lg.idx[h] = (lg.first+uint64(len(lg.chunks)-1))<<chunkShift | uint64(off)
	lg.count++
	return size
}

// at reads the record at position pos (which must be live).
func (lg *tombLog) at(pos uint64) tombRec {
	c := lg.chunks[pos>>chunkShift-lg.first]
	b := c.b[pos&(chunkSize-1):]
	kl := int(binary.LittleEndian.Uint16(b[16:]))
	rl := int(binary.LittleEndian.Uint32(b[18:]))
	addr := netip.AddrFrom16([16]byte(b[24:40]))
	if b[23] == 4 {
		addr = addr.Unmap()
	}
	r := tombRec{
		expiry: int64(binary.LittleEndian.Uint64(b[0:])),
		hash:   binary.LittleEndian.Uint64(b[8:]),
		key:    b[recHead : recHead+kl],
		tp:     lg.tps[b[22]],
		dst:    netip.AddrPortFrom(addr, binary.LittleEndian.Uint16(b[40:])),
		size:   recHead + kl + rl,
	}
	if rl > 0 {
		r.resp = b[recHead+kl : recHead+kl+rl]
	}
	return r
}

// live reports whether pos is inside the live part of the log.
func (lg *tombLog) live(pos uint64) bool {
	n := pos >> chunkShift
	if n < lg.first || n >= lg.first+uint64(len(lg.chunks)) {
		return false
	}
	off := int(pos & (chunkSize - 1))
	return (n != lg.first || off >= lg.tail) && off < lg.chunks[n-lg.first].used
}

// find returns the record of key.
func (lg *tombLog) find(key string) (tombRec, bool) {
	if lg.count == 0 {
		return tombRec{}, false
	}
	pos, ok := lg.idx[lg.hash(key)]
	if !ok || !lg.live(pos) {
		return tombRec{}, false
	}
	r := lg.at(pos)
	if string(r.key) != key {
		return tombRec{}, false
	}
	return r, true
}

// oldest returns the oldest live record and its position.
func (lg *tombLog) oldest() (tombRec, uint64, bool) {
	for len(lg.chunks) > 0 {
		if c := lg.chunks[0]; lg.tail < c.used {
			pos := lg.first<<chunkShift | uint64(lg.tail)
			return lg.at(pos), pos, true
		}
		lg.popChunk()
	}
	return tombRec{}, 0, false
}

// popOldest removes the oldest record (returned by oldest at pos).
func (lg *tombLog) popOldest(r tombRec, pos uint64) {
	if lg.idx[r.hash] == pos {
		delete(lg.idx, r.hash)
	}
	lg.tail += r.size
	lg.count--
	if lg.tail >= lg.chunks[0].used {
		lg.popChunk()
	}
}

// popChunk returns the oldest chunk, every record of which is gone.
func (lg *tombLog) popChunk() {
	c := lg.chunks[0]
	lg.chunks[0] = nil
	lg.chunks = lg.chunks[1:]
	lg.first++
	lg.tail = 0
	c.used = 0
	if len(lg.spare) < spareChunks {
		lg.spare = append(lg.spare, c)
	} else {
		c.release()
	}
	if len(lg.chunks) == 0 {
		lg.chunks = nil
	}
}

// reset drops every record and unmaps every chunk.
func (lg *tombLog) reset() {
	for _, c := range lg.chunks {
		c.release()
	}
	for _, c := range lg.spare {
		c.release()
	}
	lg.chunks, lg.spare, lg.idx = nil, nil, nil
	lg.tail, lg.count, lg.bytes = 0, 0, 0
}
