package tm

import (
	"github.com/asyncsip/asyncsip/tm/internal/sipindex"
)

// Loose routing from the index (issue 19): what looseRoute
// (recordroute.go) decides for a request, read from its datagram and
// sipindex.Index, so that an in-dialog ACK or BYE along our signed
// Record-Route is relayed without a sipgo message. ixLooseRoute reports
// ok=false for what it does not read exactly as sipgo would (the caller
// then materialises the request and calls looseRoute): the strict-router
// case (a Request-URI naming us without a user part, with Routes), a
// Route value that is not a plain "<sip:[user@]host[:port];params>", a
// parameter list with whitespace or quotes, a To or From tag not read
// plainly. Held to looseRoute by ixroute_test.go.

// routeValues iterates the values of the Route fields of an index, in
// order, a comma-separated field giving one value per element (as sipgo
// splits them: commas outside double quotes and angle brackets).
type routeValues struct {
	ix    *sipindex.Index
	field int // index in ix.Fields of the current field, -1 before the first
	pos   int // next offset in the current field's value
}

// next returns the next Route value's span and the index of its field;
// ok is false at the end, bad is true for a value it does not split as
// sipgo does (an empty element, a backslash, a folded field).
func (it *routeValues) next() (val sipindex.Span, field int, ok, bad bool) {
	ix := it.ix
	data := ix.Data()
	for {
		if it.field >= 0 && it.field < len(ix.Fields) {
			f := ix.Fields[it.field]
			if it.pos < int(f.Value.End) {
				v := data[it.pos:f.Value.End]
				end, good := routeValueEnd(v)
				if !good {
					return sipindex.Span{}, 0, false, true
				}
				s, e := 0, end
				for s < e && (v[s] == ' ' || v[s] == '\t') {
					s++
				}
				for e > s && (v[e-1] == ' ' || v[e-1] == '\t') {
					e--
				}
				if s == e {
					return sipindex.Span{}, 0, false, true
				}
				val = sipindex.Span{Start: int32(it.pos + s), End: int32(it.pos + e)}
				if end < len(v) {
					it.pos += end + 1 // past the comma
					if it.pos >= int(f.Value.End) {
						return sipindex.Span{}, 0, false, true // a trailing comma
					}
				} else {
					it.pos = int(f.Value.End)
				}
				return val, it.field, true, false
			}
		}
		it.field++
		for it.field < len(ix.Fields) && ix.Fields[it.field].Kind != sipindex.KindRoute {
			it.field++
		}
		if it.field >= len(ix.Fields) {
			return sipindex.Span{}, 0, false, false
		}
		f := ix.Fields[it.field]
		if f.Folded {
			return sipindex.Span{}, 0, false, true
		}
		it.pos = int(f.Value.Start)
	}
}

// routeValueEnd is the offset of the comma ending the first value of v
// (len(v) when none); good is false for a backslash or unbalanced quotes
// or brackets.
func routeValueEnd(v []byte) (int, bool) {
	inQ, inB := false, false
	for i, c := range v {
		switch {
		case c == '\\':
			return 0, false
		case c == '"' && !inB:
			inQ = !inQ
		case inQ:
		case c == '<':
			if inB {
				return 0, false
			}
			inB = true
		case c == '>':
			if !inB {
				return 0, false
			}
			inB = false
		case c == ',' && !inB:
			return i, true
		}
	}
	return len(v), !inQ && !inB
}

// fieldLineEnd is where the line of field i ends (after its CRLF): the
// next field's start, or the empty line.
func fieldLineEnd(ix *sipindex.Index, i int) int32 {
	if i+1 < len(ix.Fields) {
		return ix.Fields[i+1].Name.Start
	}
	return ix.Body.Start - 2
}

// ixRouteCuts returns the byte ranges that remove the first k (≤ 2) Route
// values, for ixSplice.Cuts: a field all of whose values go loses its
// whole line, one that keeps some loses its first values and their commas
// (what RemoveHeader("Route") k times, then serializing, leaves). ok is
// false when there are fewer than k values or routeValues does not read
// them.
func ixRouteCuts(ix *sipindex.Index, k int) (cuts [2]sipindex.Span, ok bool) {
	if k < 0 || k > 2 {
		return cuts, false
	}
	if k == 0 {
		return cuts, true
	}
	it := routeValues{ix: ix, field: -1}
	var vals [2]sipindex.Span
	var fields [2]int
	for i := 0; i < k; i++ {
		v, fi, more, bad := it.next()
		if bad || !more {
			return cuts, false
		}
		vals[i], fields[i] = v, fi
	}
	nv, nfi, nmore, bad := it.next()
	if bad {
		return cuts, false
	}
	n := 0
	for i := 0; i < k; i++ {
		if i > 0 && fields[i] == fields[i-1] {
			continue // the same field as the value before: one cut
		}
		fi := fields[i]
		if fi == fields[k-1] && nmore && nfi == fi {
			cuts[n] = sipindex.Span{Start: vals[i].Start, End: nv.Start}
		} else {
			cuts[n] = sipindex.Span{Start: ix.Fields[fi].Name.Start, End: fieldLineEnd(ix, fi)}
		}
		n++
	}
	if n == 2 && cuts[0].End == cuts[1].Start {
		cuts = [2]sipindex.Span{{Start: cuts[0].Start, End: cuts[1].End}}
	}
	return cuts, true
}
