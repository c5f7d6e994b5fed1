package tm

import (
	"bytes"
	"fmt"
	"net/netip"

	"github.com/emiago/sipgo/sip"

	"github.com/asyncsip/asyncsip/tm/internal/sipindex"
)

// The index on the message path (issue 19). Every datagram is indexed once
// (tm/internal/sipindex: no allocation, about a fifth of the parser's time)
// before sipgo sees it. The index decides the owner loop, replaces the
// sanity gate and the checks of validate it already made, tells whether the
// lenient SWS repair is needed, and absorbs retransmissions — a repeated
// request or final response, an ACK for a non-2xx — without building a
// sipgo message at all.
//
// Only a "clean" index is used: Parse accepted the message and no header is
// folded (so fields are lines, as the gate counts them, and values are
// spans of the datagram). Anything else takes the former path unchanged
// (gate, parse, validate), so a message the index refuses is answered
// exactly as before; where the two verdicts differ (indexVerdictDiffers in
// sipindex_diff_test.go) the index is the stricter one, and such a message
// takes the former path too. A message with a clean index is still parsed
// and validated before the core sees it, except a retransmission matched
// to a live transaction: that is matched on the bytes (branch, sent-by,
// CSeq method) the parser would read, and nothing else of it is used.

// indexLimits are lim as the index takes them.
func indexLimits(lim Limits) sipindex.Limits {
	return sipindex.Limits{MaxMessage: lim.MaxMessage, MaxHeaders: lim.MaxHeaders, MaxVias: lim.MaxVias}
}

// index indexes data into ls.ix and reports whether the index is clean.
func (ls *loopState) index(data []byte, lim sipindex.Limits) bool {
	if ls.ix.Parse(data, lim) != nil {
		return false
	}
	for _, f := range ls.ix.Fields {
		if f.Folded {
			return false
		}
	}
	return true
}

// parseIndexed is parse for a message with a clean index: the gate's
// checks are implied by the index (size, start line, header count,
// Content-Length), and the SWS repair runs only when a header needs it.
func parseIndexed(p *sip.Parser, data []byte, ix *sipindex.Index) (sip.Message, error) {
	in := data
	if needsSWSRepairIndexed(ix) {
		in = repairSWS(data)
	}
	msg, err := p.ParseSIP(in)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errMalformed, err)
	}
	if req, ok := msg.(*sip.Request); ok {
		restoreMethod(req, data)
	}
	bracketMappedVias(msg)
	return msg, nil
}

// needsSWSRepairIndexed is needsSWSRepair over the index's fields (which
// are not folded: the caller checked).
func needsSWSRepairIndexed(ix *sipindex.Index) bool {
	for _, f := range ix.Fields {
		switch f.Kind {
		case sipindex.KindVia, sipindex.KindFrom, sipindex.KindTo, sipindex.KindContact,
			sipindex.KindRoute, sipindex.KindRecordRoute:
			if hasLooseSWS(ix.Bytes(f.Value)) {
				return true
			}
		}
	}
	return false
}

// absorbIndexed handles, from the index alone, a message that only repeats
// what a live transaction already has or that stops at this hop: a
// retransmitted request (the last response is sent again), an ACK for a
// non-2xx final (§17.2.1), a retransmitted final response (§17.1.1.2,
// §17.1.2.2; the ACK is sent again for an INVITE), or a 100 Trying to a
// relayed INVITE. It reports whether it handled the message; when it
// did not, nothing happened and the message goes on to the parser.
func (s *Server) absorbIndexed(ls *loopState, src netip.AddrPort, tp Transport) bool {
	ix := &ls.ix
	if !ix.Request {
		ls.kbuf = append(append(append(ls.kbuf[:0], ix.Bytes(ix.Branch)...), '|'), ix.Bytes(ix.CSeqMethod)...)
		t := ls.ctx[string(ls.kbuf)]
		if t == nil {
			return false
		}
		// A 100 to a relayed INVITE is hop by hop: it only moves the
		// client transaction (the branch ignores it, §16.7 step 5).
		_, relayed := t.user.(*Branch)
		trying := ix.Status == 100 && t.invite && relayed && (t.state == stTrying || t.state == stProceeding)
		if !trying && !t.absorbs(ix.Status) {
			return false
		}
		if !s.cfg.Security.AnyResponseSource && !t.sentTo(src, tp) {
			s.stats.countDrop("source")
			return true
		}
		if trying {
			t.provisional()
		} else {
			t.absorb(ix.Status)
		}
		return true
	}
	method := ix.Bytes(ix.Method)
	ack := string(method) == "ACK"
	if ack {
		method = []byte("INVITE")
	} else if string(method) == "CANCEL" {
		return false
	}
	key, ok := appendIndexedServerKey(ls.kbuf[:0], ix, method)
	ls.kbuf = key
	if !ok {
		return false
	}
	t := ls.stx[string(key)]
	switch {
	case t == nil:
		return false
	case ack:
		if !t.invite || t.state == stAccepted {
			return false // an ACK for a 2xx goes end to end: parsed and routed
		}
		t.ack()
	default:
		t.retransmit()
	}
	return true
}

// appendIndexedServerKey appends serverKey's bytes for the indexed request
// with method (ACK already replaced by INVITE). It returns false, and the
// key is not usable, for what it cannot read as sipgo does: a branch
// without the RFC 3261 magic cookie (the RFC 2543 key), or a sent-by that
// is not a plain host (name or IPv4) with a port.
func appendIndexedServerKey(b []byte, ix *sipindex.Index, method []byte) ([]byte, bool) {
	br := ix.Bytes(ix.Branch)
	if len(br) <= 7 || string(br[:7]) != "z9hG4bK" {
		return b, false
	}
	host, port, ok := plainSentBy(ix.Bytes(ix.TopVia))
	if !ok {
		return b, false
	}
	b = append(b, br...)
	b = append(b, '|')
	b = append(b, host...)
	b = append(b, ':')
	b = append(b, port...)
	b = append(b, '|')
	return append(b, method...), true
}

// plainSentBy reads the sent-by of a Via value written the usual way,
// "SIP/2.0/UDP host:port;params", with a host of letters, digits, dots and
// hyphens and a port of 1 to 5 digits without a leading zero. Anything
// else (whitespace around the separators, IPv6, no port) is refused: the
// caller then takes the parser's reading.
func plainSentBy(via []byte) (host, port []byte, ok bool) {
	if len(via) < 9 || string(via[:8]) != "SIP/2.0/" {
		return nil, nil, false
	}
	i := 8
	for i < len(via) && via[i] != ' ' {
		c := via[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return nil, nil, false
		}
		i++
	}
	if i == 8 || i == len(via) {
		return nil, nil, false
	}
	i++ // the one SP
	hs := i
	for i < len(via) && via[i] != ':' {
		c := via[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '.') {
			return nil, nil, false
		}
		i++
	}
	if i == hs || i == len(via) {
		return nil, nil, false
	}
	host = via[hs:i]
	i++
	ps := i
	for i < len(via) && via[i] >= '0' && via[i] <= '9' {
		i++
	}
	port = via[ps:i]
	if len(port) == 0 || len(port) > 5 || port[0] == '0' || (i < len(via) && via[i] != ';') {
		return nil, nil, false
	}
	if n := atoiDigits(port); n > 65535 {
		return nil, nil, false
	}
	return host, port, true
}

func atoiDigits(b []byte) int {
	n := 0
	for _, c := range b {
		n = n*10 + int(c-'0')
	}
	return n
}

// relayIndexed relays a provisional (101–199) or 2xx response of a
// relayed request upstream without building a sipgo message: the bytes as
// received, our Via removed, go out on the server transaction, which keeps
// them for retransmissions. It applies when nothing needs the parsed
// response: no Reply or End route (they see Context.Resp and
// Branch.Response), no route suspended and no response queued (they would
// be processed in order first), and a message the former path would send
// unchanged but for its formatting (a Content-Length, another Via below
// ours). Whitespace around separators (SWS) stays as the sender wrote it:
// the repair in lenient.go exists for sipgo's reading, and the bytes mean
// what they meant (a Kamailio relays them as received too). Otherwise it
// reports false and the message goes on to the parser. The state changes
// are those of clientTx.receive and Context.processResponse; a relayed 2xx
// is parsed only if something asks for Branch.Response.
func (s *Server) relayIndexed(ls *loopState, data []byte, src netip.AddrPort, tp Transport) bool {
	ix := &ls.ix
	code := ix.Status
	if ix.Request || code <= 100 || code >= 300 || ix.ContentLength < 0 || ix.Vias < 2 {
		return false
	}
	ls.kbuf = append(append(append(ls.kbuf[:0], ix.Bytes(ix.Branch)...), '|'), ix.Bytes(ix.CSeqMethod)...)
	t := ls.ctx[string(ls.kbuf)]
	if t == nil || (t.state != stTrying && t.state != stProceeding) {
		return false
	}
	b, ok := t.user.(*Branch)
	if !ok || b.done {
		return false
	}
	c := b.c
	if c.routes.Reply != nil || c.routes.End != nil || c.suspended || len(c.queue) > 0 || c.stx == nil {
		return false
	}
	if !s.cfg.Security.AnyResponseSource && !t.sentTo(src, tp) {
		return false // the former path counts and drops it
	}
	wire, ok := spliceTopVia(ls.splice[:0], ix)
	if !ok {
		return false
	}
	ls.splice = wire
	if code < 200 {
		t.provisional()
	} else {
		t.success()
	}
	c.processReply(b, code, nil, wire)
	return true
}

// spliceTopVia appends to dst the indexed message without its top Via
// value, up to the end of the body as Content-Length bounds it: the first
// Via header field goes when it holds that value alone, else the value
// and its comma go (SIPp's [last_Via:] answers with every Via in one
// field). It reports false for what it does not read (the caller checked
// that no field is folded).
func spliceTopVia(dst []byte, ix *sipindex.Index) ([]byte, bool) {
	f, ok := ix.Find(sipindex.KindVia)
	if !ok || f.Folded || f.Value.Start != ix.TopVia.Start {
		return dst, false
	}
	data := ix.Data()
	if f.Value == ix.TopVia {
		end := indexCRLFFrom(data, int(f.Value.End))
		if end < 0 {
			return dst, false
		}
		dst = append(dst, data[:f.Name.Start]...)
		return append(dst, data[end+2:ix.Body.End]...), true
	}
	// "top , next": cut from the top value to the next one.
	i := int(ix.TopVia.End)
	for i < int(f.Value.End) && (data[i] == ' ' || data[i] == '\t') {
		i++
	}
	if i >= int(f.Value.End) || data[i] != ',' {
		return dst, false
	}
	i++
	for i < int(f.Value.End) && (data[i] == ' ' || data[i] == '\t') {
		i++
	}
	if i >= int(f.Value.End) {
		return dst, false
	}
	dst = append(dst, data[:ix.TopVia.Start]...)
	return append(dst, data[i:ix.Body.End]...), true
}

// indexCRLFFrom returns the index of the first CRLF at or after from, or -1.
func indexCRLFFrom(b []byte, from int) int {
	for from < len(b) {
		i := bytes.IndexByte(b[from:], '\r')
		if i < 0 {
			return -1
		}
		i += from
		if i+1 < len(b) && b[i+1] == '\n' {
			return i
		}
		from = i + 1
	}
	return -1
}
