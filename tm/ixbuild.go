package tm

import (
	"bytes"
	"net/netip"
	"strconv"

	"github.com/emiago/sipgo/sip"

	"github.com/asyncsip/asyncsip/tm/internal/sipindex"
)

// Byte-level builders over an index (issue 19): what the request path
// reads from a request and what it sends — a response to it, the request
// relayed on a branch — computed from the datagram and its
// sipindex.Index, without building a sipgo message.
//
// Each function answers exactly what the parsed path (sipgo's parser, tm's
// repairs, then the code named in its comment) answers, and is held to it
// by a differential test over the RFC 4475/5118 corpora and the fuzz
// corpus (ixbuild_test.go). Each takes an index that is clean (indexed.go:
// accepted, no folded header) and reports ok=false for what it does not
// read exactly as sipgo would (a parameter list with whitespace or quotes,
// a repeated parameter it reads, a top Via not written the usual way…):
// the caller then materialises the request and takes the parsed path.

// addrParams returns the header parameters (";a=b;c") of a From, To,
// Route or Record-Route value v: after the '>' of a name-addr, from the
// first ';' of an addr-spec. ok is false for an unbalanced value.
func addrParams(v []byte) ([]byte, bool) {
	for j := 0; j < len(v); j++ {
		switch v[j] {
		case '"':
			j++
			for j < len(v) && v[j] != '"' {
				if v[j] == '\\' {
					j++
				}
				j++
			}
			if j >= len(v) {
				return nil, false
			}
		case '<':
			gt := bytes.IndexByte(v[j:], '>')
			if gt < 0 {
				return nil, false
			}
			return v[j+gt+1:], true
		case ';':
			return v[j:], true
		}
	}
	return nil, true
}

// plainParam finds parameter name (matched exactly, as sipgo's
// HeaderParams.Get does) in the parameter list p (";a=b;c", possibly
// empty). The list must be plain: ';'-separated, every name a token, every
// value tokens, ':' or brackets — no whitespace, no quotes — else ok is
// false. A name that appears twice is refused too (sipgo keeps the last
// value in the place of the first). name and val are offsets in p: ns is
// where the name starts, ve where the parameter ends; val is [vs, ve) and
// empty without '=' (vs == ve).
func plainParam(p []byte, name string) (ns, vs, ve int, found, ok bool) {
	i := 0
	for i < len(p) {
		if p[i] != ';' {
			return 0, 0, 0, false, false
		}
		i++
		s := i
		for i < len(p) && tokenByte(p[i]) {
			i++
		}
		e := i
		if e == s {
			return 0, 0, 0, false, false
		}
		v0, v1 := e, e
		if i < len(p) && p[i] == '=' {
			i++
			v0 = i
			for i < len(p) && (tokenByte(p[i]) || p[i] == ':' || p[i] == '[' || p[i] == ']') {
				i++
			}
			if i == v0 {
				return 0, 0, 0, false, false
			}
			v1 = i
		}
		if i < len(p) && p[i] != ';' {
			return 0, 0, 0, false, false
		}
		if string(p[s:e]) == name {
			if found {
				return 0, 0, 0, false, false
			}
			ns, vs, ve, found = s, v0, v1, true
		}
	}
	return ns, vs, ve, found, true
}

// tokenByte is a token character (RFC 3261 §25.1).
func tokenByte(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	switch c {
	case '-', '.', '!', '%', '*', '_', '+', '`', '\'', '~':
		return true
	}
	return false
}

// addrTag reads the tag parameter of the first field of kind k (From or
// To) as sipgo does (Params.Get("tag")): val is its value (empty for a
// bare ";tag"), has whether there is one.
func addrTag(ix *sipindex.Index, k sipindex.Kind) (val []byte, has, ok bool) {
	f, found := ix.Find(k)
	if !found || f.Folded {
		return nil, false, false
	}
	p, ok := addrParams(ix.Bytes(f.Value))
	if !ok {
		return nil, false, false
	}
	_, vs, ve, has, ok := plainParam(p, "tag")
	if !ok {
		return nil, false, false
	}
	return p[vs:ve], has, true
}

// ixHasToTag is hasToTag (recordroute.go) read from the index: the To
// header carries a "tag" parameter.
func ixHasToTag(ix *sipindex.Index) (has, ok bool) {
	_, has, ok = addrTag(ix, sipindex.KindTo)
	return has, ok
}

// ixFromTag is the From tag as dialogIDs reads it (empty when absent).
func ixFromTag(ix *sipindex.Index) (tag []byte, ok bool) {
	tag, _, ok = addrTag(ix, sipindex.KindFrom)
	return tag, ok
}

// ixToTag is the To tag as requestSigned reads it (empty when absent).
func ixToTag(ix *sipindex.Index) (tag []byte, ok bool) {
	tag, _, ok = addrTag(ix, sipindex.KindTo)
	return tag, ok
}

// ixCallID is the Call-ID as sipgo reads it (the trimmed value).
func ixCallID(ix *sipindex.Index) []byte { return ix.Bytes(ix.CallID) }

// ixMaxForwards is req.MaxForwards() read from the index: the value and
// whether the header is there (a clean index has a valid one, ≤ 255).
func ixMaxForwards(ix *sipindex.Index) (n int, ok bool) {
	if ix.MaxForwards < 0 {
		return 0, false
	}
	return ix.MaxForwards, true
}

// ixProxyRequire reports whether proxyRequire (request.go) is not empty:
// some Proxy-Require field (name in any case) holds an option tag.
func ixProxyRequire(ix *sipindex.Index) bool {
	var b [64]byte
	return len(appendProxyRequire(b[:0], ix)) > 0
}

// appendProxyRequire appends what proxyRequire returns: the option tags of
// every Proxy-Require field, trimmed, joined by ", ".
func appendProxyRequire(dst []byte, ix *sipindex.Index) []byte {
	n := 0
	for _, f := range ix.Fields {
		if f.Kind != sipindex.KindOther || !equalFoldStr(ix.Bytes(f.Name), "Proxy-Require") {
			continue
		}
		v := ix.Bytes(f.Value)
		for len(v) > 0 {
			t := v
			if c := bytes.IndexByte(v, ','); c >= 0 {
				t, v = v[:c], v[c+1:]
			} else {
				v = nil
			}
			if t = bytes.TrimSpace(t); len(t) > 0 {
				if n > 0 {
					dst = append(dst, ", "...)
				}
				dst = append(dst, t...)
				n++
			}
		}
	}
	return dst
}

// ixRecordRoutable is recordRoutable (recordroute.go) read from the index.
func ixRecordRoutable(ix *sipindex.Index) (rr, ok bool) {
	switch string(ix.Bytes(ix.Method)) {
	case "REGISTER", "CANCEL", "ACK":
		return false, true
	}
	has, ok := ixHasToTag(ix)
	return !has, ok
}

// ixTimestamp is the first Timestamp field (req.GetHeader("Timestamp"):
// name in any case), and whether there is one.
func ixTimestamp(ix *sipindex.Index) (sipindex.Field, bool) {
	for _, f := range ix.Fields {
		if f.Kind == sipindex.KindOther && equalFoldStr(ix.Bytes(f.Name), "Timestamp") {
			return f, true
		}
	}
	return sipindex.Field{}, false
}

// ixMethod is req.Method (after restoreMethod: as written) without
// allocating for the methods sipgo names.
func ixMethod(ix *sipindex.Index) sip.RequestMethod {
	m := ix.Bytes(ix.Method)
	switch string(m) {
	case "INVITE":
		return sip.INVITE
	case "ACK":
		return sip.ACK
	case "CANCEL":
		return sip.CANCEL
	case "BYE":
		return sip.BYE
	case "REGISTER":
		return sip.REGISTER
	case "OPTIONS":
		return sip.OPTIONS
	case "SUBSCRIBE":
		return sip.SUBSCRIBE
	case "NOTIFY":
		return sip.NOTIFY
	case "REFER":
		return sip.REFER
	case "INFO":
		return sip.INFO
	case "MESSAGE":
		return sip.MESSAGE
	case "PRACK":
		return sip.PRACK
	case "UPDATE":
		return sip.UPDATE
	case "PUBLISH":
		return sip.PUBLISH
	}
	return sip.RequestMethod(m)
}

func equalFoldStr(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range b {
		x, y := b[i], s[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// plainVia reads a Via value written the usual way, "SIP/2.0/TRANSPORT
// host[:port][;params]", the host a name, an IPv4 address or a bracketed
// IPv6 reference, the parameters plain (plainParam) without a repeated
// rport or received. host is what
// stripBrackets(via.Host) gives after sipgo's parse; params is where the
// parameter list starts (len(v) when there is none).
func plainVia(v []byte) (host []byte, params int, ok bool) {
	if len(v) < 9 || string(v[:8]) != "SIP/2.0/" {
		return nil, 0, false
	}
	i := 8
	for i < len(v) && v[i] != ' ' {
		if !tokenByte(v[i]) {
			return nil, 0, false
		}
		i++
	}
	if i == 8 || i == len(v) {
		return nil, 0, false
	}
	i++
	if i < len(v) && v[i] == '[' {
		rb := bytes.IndexByte(v[i:], ']')
		if rb < 2 {
			return nil, 0, false
		}
		host = v[i+1 : i+rb]
		if !plainIPv6(host) {
			return nil, 0, false
		}
		i += rb + 1
	} else {
		hs := i
		for i < len(v) && (tokenByte(v[i]) && v[i] != '%' && v[i] != '!' && v[i] != '*' && v[i] != '+' && v[i] != '`' && v[i] != '\'' && v[i] != '~') {
			i++
		}
		if i == hs {
			return nil, 0, false
		}
		host = v[hs:i]
	}
	if i < len(v) && v[i] == ':' {
		i++
		ps := i
		for i < len(v) && '0' <= v[i] && v[i] <= '9' {
			i++
		}
		if i == ps || i-ps > 5 || v[ps] == '0' {
			return nil, 0, false
		}
		if n, _ := strconv.Atoi(string(v[ps:i])); n > 65535 {
			return nil, 0, false
		}
	}
	if i < len(v) && v[i] != ';' {
		return nil, 0, false
	}
	// Plain, and neither rport nor received repeated (sipgo keeps one).
	if _, _, _, _, ok := plainParam(v[i:], "rport"); !ok {
		return nil, 0, false
	}
	if _, _, _, _, ok := plainParam(v[i:], "received"); !ok {
		return nil, 0, false
	}
	return host, i, true
}

// topViaReadable reports whether sipgo reads the top Via value as the
// index does: a value followed by another in the same field ("a, b") must
// carry a parameter, as sipgo looks for the comma only among the
// parameters (it reads "SIP/2.0/UDP h, SIP/2.0/UDP g" as one Via whose
// host is "h, SIP/2.0/UDP g").
func topViaReadable(ix *sipindex.Index) bool {
	f, ok := ix.Find(sipindex.KindVia)
	if !ok || f.Value.Start != ix.TopVia.Start {
		return false
	}
	if ix.TopVia.End == f.Value.End {
		return true
	}
	return bytes.IndexByte(ix.Bytes(ix.TopVia), ';') >= 0
}

// appendReceivedVia appends the top Via value v as markReceived
// (request.go) leaves it for a request from src: ";received=<ip>" when the
// sent-by host is not src's address, and an empty rport filled with src's
// port (and received added then if still absent), both as sipgo's
// HeaderParams.Add does — a parameter already there is set in place, a new
// one goes last.
func appendReceivedVia(dst, v []byte, src netip.AddrPort) ([]byte, bool) {
	host, pi, ok := plainVia(v)
	if !ok {
		return dst, false
	}
	if !src.IsValid() {
		return append(dst, v...), true
	}
	var ipb [64]byte
	ip := src.Addr().Unmap().AppendTo(ipb[:0])
	params := v[pi:]
	_, rvs, rve, hasRecv, ok1 := plainParam(params, "received")
	rns, _, rpe, hasRport, ok2 := plainParam(params, "rport")
	if !ok1 || !ok2 {
		return dst, false
	}
	setRecv := string(host) != string(ip)
	fillRport := hasRport && rpe == rns+len("rport") // rport without a value
	addRecv := (setRecv && !hasRecv) || (fillRport && !hasRecv && !setRecv)
	dst = append(dst, v[:pi]...)
	last := 0
	// Edits in the parameter list, in order of position.
	type edit struct {
		at, end int
		recv    bool
	}
	var eds [2]edit
	n := 0
	if setRecv && hasRecv {
		// received, or received=old: the value becomes ip.
		at := rvs
		if rvs == rve {
			at = rve
		}
		eds[n] = edit{at: at, end: rve, recv: true}
		n++
	}
	if fillRport {
		eds[n] = edit{at: rpe, end: rpe}
		n++
	}
	if n == 2 && eds[1].at < eds[0].at {
		eds[0], eds[1] = eds[1], eds[0]
	}
	for _, e := range eds[:n] {
		dst = append(dst, params[last:e.at]...)
		if e.recv {
			if e.at == e.end && (e.at == 0 || params[e.at-1] != '=') {
				dst = append(dst, '=')
			}
			dst = append(dst, ip...)
		} else {
			dst = append(dst, '=')
			dst = strconv.AppendUint(dst, uint64(src.Port()), 10)
		}
		last = e.end
	}
	dst = append(dst, params[last:]...)
	if addRecv {
		dst = append(dst, ";received="...)
		dst = append(dst, ip...)
	}
	return dst, true
}

// appendIndexedResponse appends to dst the response the parsed path sends
// for s.makeResponse(req, code, reason, toTag, extra...) (request.go), req
// being the indexed request after markReceived(req, src): the status line,
// every Via value in order (the top one as appendReceivedVia leaves it),
// From, To (";tag=toTag" added when code > 100, toTag is not empty and
// the To has no tag), Call-ID, CSeq, for a 100 the first Timestamp, then
// extra as name, value pairs, and "Content-Length: 0". Values are copied
// as received (sipgo rewrites them in its own formatting; they mean the
// same). ok is false, and dst is returned unchanged, for what
// appendReceivedVia or the To tag reader do not read, or an odd extra.
func appendIndexedResponse(dst []byte, ix *sipindex.Index, src netip.AddrPort, code int, reason, toTag string, extra ...string) ([]byte, bool) {
	if !ix.Request || len(extra)%2 != 0 || code < 100 || code > 699 || !topViaReadable(ix) {
		return dst, false
	}
	addTag := false
	if code > 100 && toTag != "" {
		has, ok := ixHasToTag(ix)
		if !ok {
			return dst, false
		}
		addTag = !has
	}
	orig := len(dst)
	dst = append(dst, "SIP/2.0 "...)
	dst = strconv.AppendInt(dst, int64(code), 10)
	dst = append(dst, ' ')
	dst = append(dst, reason...)
	dst = append(dst, "\r\n"...)
	data := ix.Data()
	var from, to, callID, cseq sipindex.Field
	for _, f := range ix.Fields {
		switch f.Kind {
		case sipindex.KindVia:
			dst = append(dst, "Via: "...)
			if f.Value.Start == ix.TopVia.Start {
				var ok bool
				dst, ok = appendReceivedVia(dst, ix.Bytes(ix.TopVia), src)
				if !ok {
					return dst[:orig], false
				}
				dst = append(dst, data[ix.TopVia.End:f.Value.End]...)
			} else {
				dst = append(dst, ix.Bytes(f.Value)...)
			}
			dst = append(dst, "\r\n"...)
		case sipindex.KindFrom:
			from = f
		case sipindex.KindTo:
			to = f
		case sipindex.KindCallID:
			callID = f
		case sipindex.KindCSeq:
			cseq = f
		}
	}
	dst = append(dst, "From: "...)
	dst = append(dst, ix.Bytes(from.Value)...)
	dst = append(dst, "\r\nTo: "...)
	dst = append(dst, ix.Bytes(to.Value)...)
	if addTag {
		dst = append(dst, ";tag="...)
		dst = append(dst, toTag...)
	}
	dst = append(dst, "\r\nCall-ID: "...)
	dst = append(dst, ix.Bytes(callID.Value)...)
	dst = append(dst, "\r\nCSeq: "...)
	dst = append(dst, ix.Bytes(cseq.Value)...)
	dst = append(dst, "\r\n"...)
	if code == 100 {
		if ts, ok := ixTimestamp(ix); ok {
			dst = append(dst, ix.Bytes(ts.Name)...)
			dst = append(dst, ": "...)
			dst = append(dst, ix.Bytes(ts.Value)...)
			dst = append(dst, "\r\n"...)
		}
	}
	for i := 0; i < len(extra); i += 2 {
		dst = append(dst, extra[i]...)
		dst = append(dst, ": "...)
		dst = append(dst, extra[i+1]...)
		dst = append(dst, "\r\n"...)
	}
	dst = append(dst, "Content-Length: 0\r\n\r\n"...)
	return dst, true
}

// ixSplice says how appendSplicedRequest changes the received request:
// what startBranch (relay.go) does to its clone of Context.Req, or
// Forward for a stateless relay.
type ixSplice struct {
	// RURI is the Request-URI to send; "" keeps the received one.
	RURI string
	// Via is our Via value, put on top.
	Via string
	// RR are the Record-Route values to prepend, RR[0] on top ("" for
	// none): recordRoute's one or two values (rrHeader, signRecordRoute).
	RR [2]string
	// AddMaxForwards adds "Max-Forwards: 70" when the request has none,
	// as startBranch does (Forward does not).
	AddMaxForwards bool
	// Src is where the request came from: the top Via gets received and
	// rport as markReceived gives them.
	Src netip.AddrPort
	// Cuts are the byte ranges of the Route values removed (ixLooseRoute,
	// ixRouteCuts), in order; zero spans are unused.
	Cuts [2]sipindex.Span
}

// appendSplicedRequest appends to dst the request the parsed path sends
// for the indexed request on a branch (startBranch) or statelessly
// (Forward), as sp describes: the request line with sp.RURI, our Via on
// top, the Record-Route values below it, every received header as
// received but the top Via (markReceived's received and rport), the
// Max-Forwards (decremented; added when absent and sp.AddMaxForwards, after
// the last header as AppendHeader puts it) and the Route values of
// sp.Cuts (removed), then the body as Content-Length bounds it (a request
// without Content-Length gets one after the last header, as sipgo's
// Clone adds it). It
// reports false, dst unchanged, for a top Via appendReceivedVia does not
// read and for Max-Forwards 0 (the parsed path sends 4294967295 then: a
// stateful relay answers 483 before, a stateless one is rare enough).
func appendSplicedRequest(dst []byte, ix *sipindex.Index, sp *ixSplice) ([]byte, bool) {
	if !ix.Request || ix.MaxForwards == 0 || len(ix.Fields) == 0 || !topViaReadable(ix) {
		return dst, false
	}
	data := ix.Data()
	orig := len(dst)
	dst = append(dst, data[ix.Method.Start:ix.Method.End]...)
	dst = append(dst, ' ')
	if sp.RURI != "" {
		dst = append(dst, sp.RURI...)
	} else {
		dst = append(dst, ix.Bytes(ix.RequestURI)...)
	}
	dst = append(dst, " SIP/2.0\r\nVia: "...)
	dst = append(dst, sp.Via...)
	dst = append(dst, "\r\n"...)
	for _, rr := range sp.RR {
		if rr != "" {
			dst = append(dst, "Record-Route: "...)
			dst = append(dst, rr...)
			dst = append(dst, "\r\n"...)
		}
	}
	// The edits, in order of position: the top Via, Max-Forwards, cuts.
	const (
		edVia = iota
		edMF
		edCut
	)
	type edit struct {
		at, end int32
		kind    uint8
	}
	var eds [4]edit
	n := 0
	eds[n] = edit{ix.TopVia.Start, ix.TopVia.End, edVia}
	n++
	if ix.MaxForwards > 0 {
		f, _ := ix.Find(sipindex.KindMaxForwards)
		eds[n] = edit{f.Value.Start, f.Value.End, edMF}
		n++
	}
	for _, c := range sp.Cuts {
		if c.End > c.Start {
			eds[n] = edit{c.Start, c.End, edCut}
			n++
		}
	}
	for i := 1; i < n; i++ {
		for j := i; j > 0 && eds[j].at < eds[j-1].at; j-- {
			eds[j], eds[j-1] = eds[j-1], eds[j]
		}
	}
	last := ix.Fields[0].Name.Start
	hend := ix.Body.Start - 2 // the empty line
	for _, e := range eds[:n] {
		if e.at < last || e.end > hend {
			return dst[:orig], false
		}
		dst = append(dst, data[last:e.at]...)
		switch e.kind {
		case edVia:
			var ok bool
			if dst, ok = appendReceivedVia(dst, data[e.at:e.end], sp.Src); !ok {
				return dst[:orig], false
			}
		case edMF:
			dst = strconv.AppendInt(dst, int64(ix.MaxForwards-1), 10)
		}
		last = e.end
	}
	dst = append(dst, data[last:hend]...)
	if ix.ContentLength < 0 {
		// sipgo adds it after the last header (SetBody, in its parser
		// for a body, in Request.Clone for any): the parsed path sends it.
		dst = append(dst, "Content-Length: "...)
		dst = strconv.AppendInt(dst, int64(ix.Body.Len()), 10)
		dst = append(dst, "\r\n"...)
	}
	if ix.MaxForwards < 0 && sp.AddMaxForwards {
		dst = append(dst, "Max-Forwards: 70\r\n"...)
	}
	dst = append(dst, "\r\n"...)
	return append(dst, data[ix.Body.Start:ix.Body.End]...), true
}

// plainIPv6 reports whether b is an IPv6 address written the usual way
// (RFC 4291 §2.2: eight groups of one to four hex digits, one "::" for a
// run of zero groups, an IPv4 address in the last 32 bits, no zone),
// which net.ParseIP and netip.ParseAddr both read. sipgo writes a Via host
// back in brackets only when net.ParseIP reads it (and tm's
// bracketMappedVias when netip reads an IPv4-mapped one): anything else
// in brackets is left to the parsed path.
func plainIPv6(b []byte) bool {
	groups, gap := 0, false
	i := 0
	if len(b) >= 2 && b[0] == ':' && b[1] == ':' {
		gap, i = true, 2
		if i == len(b) {
			return true
		}
	}
	for i < len(b) {
		s := i
		for i < len(b) && i-s < 5 && isHex(b[i]) {
			i++
		}
		if i < len(b) && b[i] == '.' {
			// The IPv4 tail: the last 32 bits.
			if !plainIPv4(b[s:]) {
				return false
			}
			groups += 2
			i = len(b)
			break
		}
		if i == s || i-s > 4 {
			return false
		}
		groups++
		if i == len(b) {
			break
		}
		if b[i] != ':' {
			return false
		}
		i++
		if i < len(b) && b[i] == ':' {
			if gap {
				return false
			}
			gap = true
			i++
			if i == len(b) {
				break
			}
		} else if i == len(b) {
			return false // a trailing single ':'
		}
	}
	if gap {
		return groups <= 7
	}
	return groups == 8
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// plainIPv4 reports whether b is a dotted-quad IPv4 address without
// leading zeros (what netip.ParseAddr reads).
func plainIPv4(b []byte) bool {
	_, ok := parseIPv4(b)
	return ok
}

// parseIPv4 reads a dotted-quad IPv4 address without leading zeros, as
// netip.ParseAddr does, without allocating.
func parseIPv4(b []byte) (netip.Addr, bool) {
	var a [4]byte
	part := 0
	i := 0
	for part < 4 {
		s := i
		n := 0
		for i < len(b) && '0' <= b[i] && b[i] <= '9' && i-s < 3 {
			n = n*10 + int(b[i]-'0')
			i++
		}
		if i == s || n > 255 || (i-s > 1 && b[s] == '0') {
			return netip.Addr{}, false
		}
		a[part] = byte(n)
		part++
		if part < 4 {
			if i >= len(b) || b[i] != '.' {
				return netip.Addr{}, false
			}
			i++
		}
	}
	if i != len(b) {
		return netip.Addr{}, false
	}
	return netip.AddrFrom4(a), true
}
