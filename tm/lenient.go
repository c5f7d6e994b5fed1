package tm

import (
	"bytes"
	"net/netip"
	"strings"

	"github.com/emiago/sipgo/sip"
)

// Repairs made at the parser seam. sipgo reads nearly every valid message
// of RFC 4475 and RFC 5118, but gets three constructs wrong in ways that
// would change what the proxy forwards. Each is undone here, so that what
// goes out means what came in.

// swsHeaders are the headers whose values follow the name-addr / Via
// grammar, where RFC 3261 §25.1 allows whitespace around ";", "=", "/" and
// "," (SEMI, EQUAL, SLASH, COMMA). sipgo keeps that whitespace inside
// parameter names and values: "tag = x" became a parameter named "tag "
// with the value " x" (RFC 4475 §3.1.1.1, wsinv).
var swsHeaders = []string{"via", "v", "from", "f", "to", "t", "contact", "m", "route", "record-route"}

// repairSWS returns data with the whitespace around separators removed from
// the values of swsHeaders (outside quoted strings), each rewritten header
// on one line. It returns data itself, without allocating, when no header
// needs it — the common case.
func repairSWS(data []byte) []byte {
	end := bytes.Index(data, []byte("\r\n\r\n"))
	if end < 0 {
		return data
	}
	first := bytes.Index(data, []byte("\r\n"))
	head := data[first+2 : end+2]
	if !needsSWSRepair(head) {
		return data
	}
	out := make([]byte, 0, len(data))
	out = append(out, data[:first+2]...)
	for len(head) > 0 {
		n := logicalLineLen(head)
		field := head[:n]
		head = head[n:]
		name, value, ok := splitField(field)
		if !ok || !isSWSHeader(name) {
			out = append(out, field...)
			continue
		}
		out = append(out, name...)
		out = append(out, ": "...)
		out = append(out, compactSWS(unfold(value))...)
		out = append(out, "\r\n"...)
	}
	out = append(out, data[end+2:]...)
	return out
}

// needsSWSRepair reports whether one of the swsHeaders is folded or has
// whitespace next to a separator.
func needsSWSRepair(head []byte) bool {
	for len(head) > 0 {
		n := logicalLineLen(head)
		field := head[:n]
		head = head[n:]
		name, value, ok := splitField(field)
		if !ok || !isSWSHeader(name) {
			continue
		}
		if bytes.Contains(value, []byte("\r\n")) || hasLooseSWS(value) {
			return true
		}
	}
	return false
}

// logicalLineLen is the length of the first header field of head with its
// continuation lines and final CRLF.
func logicalLineLen(head []byte) int {
	n := 0
	for {
		i := bytes.Index(head[n:], []byte("\r\n"))
		if i < 0 {
			return len(head)
		}
		n += i + 2
		if n >= len(head) || (head[n] != ' ' && head[n] != '\t') {
			return n
		}
	}
}

// splitField splits "Name : value\r\n" into the trimmed name and value.
func splitField(field []byte) (name, value []byte, ok bool) {
	c := bytes.IndexByte(field, ':')
	if c < 0 {
		return nil, nil, false
	}
	return bytes.TrimSpace(field[:c]), bytes.TrimSpace(field[c+1:]), true
}

func isSWSHeader(name []byte) bool {
	for _, h := range swsHeaders {
		if len(name) == len(h) && bytes.EqualFold(name, []byte(h)) {
			return true
		}
	}
	return false
}

// unfold turns continuation lines (CRLF followed by whitespace) into one space.
func unfold(v []byte) string {
	var b strings.Builder
	for len(v) > 0 {
		i := bytes.Index(v, []byte("\r\n"))
		if i < 0 {
			b.Write(v)
			break
		}
		b.Write(v[:i])
		b.WriteByte(' ')
		v = v[i+2:]
	}
	return b.String()
}

func isSWSSep(c byte) bool { return c == ';' || c == '=' || c == '/' || c == ',' }
func isWSP(c byte) bool    { return c == ' ' || c == '\t' }

// hasLooseSWS reports whether compactSWS would change v (without allocating).
func hasLooseSWS(v []byte) bool {
	if bytes.IndexByte(v, '"') < 0 {
		// No quoted string (the common case): only the spaces and tabs
		// need a look, found with the vectorised IndexByte.
		if bytes.IndexByte(v, '\t') >= 0 {
			return true
		}
		for i := bytes.IndexByte(v, ' '); i >= 0; {
			if i+1 == len(v) || isWSP(v[i+1]) || isSWSSep(v[i+1]) || (i > 0 && isSWSSep(v[i-1])) {
				return true
			}
			j := bytes.IndexByte(v[i+1:], ' ')
			if j < 0 {
				break
			}
			i += j + 1
		}
		return false
	}
	quoted := false
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case quoted:
			if c == '\\' {
				i++
			} else if c == '"' {
				quoted = false
			}
		case c == '"':
			quoted = true
		case c == '\t':
			return true
		case c == ' ':
			if i+1 == len(v) || isWSP(v[i+1]) || isSWSSep(v[i+1]) || (i > 0 && isSWSSep(v[i-1])) {
				return true
			}
		}
	}
	return false
}

// compactSWS removes whitespace next to ";", "=", "/" and "," and turns
// other runs of whitespace into one space, outside quoted strings.
func compactSWS(v string) string {
	var b []byte // nil until something changes
	emit := func(i int, c byte) {
		if b == nil {
			b = append(make([]byte, 0, len(v)), v[:i]...)
		}
		b = append(b, c)
	}
	keep := func(i int) {
		if b != nil {
			b = append(b, v[i])
		}
	}
	quoted := false
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case quoted:
			keep(i)
			if c == '\\' && i+1 < len(v) {
				i++
				keep(i)
			} else if c == '"' {
				quoted = false
			}
		case c == '"':
			quoted = true
			keep(i)
		case isWSP(c):
			j := i
			for j < len(v) && isWSP(v[j]) {
				j++
			}
			prevSep := i > 0 && isSWSSep(v[i-1])
			nextSep := j < len(v) && isSWSSep(v[j])
			switch {
			case prevSep || nextSep || j == len(v):
				if b == nil {
					b = append(make([]byte, 0, len(v)), v[:i]...)
				}
			case j-i == 1 && c == ' ':
				keep(i)
			default:
				emit(i, ' ')
			}
			i = j - 1
		default:
			keep(i)
		}
	}
	if b == nil {
		return v
	}
	return string(b)
}

// restoreMethod undoes sipgo's upper-casing of the request method: methods
// are case-sensitive (RFC 3261 §7.1, RFC 4475 §3.1.1.2, intmeth), and the
// CSeq method must keep matching it.
func restoreMethod(req *sip.Request, data []byte) {
	sp := bytes.IndexByte(data, ' ')
	if sp <= 0 || string(data[:sp]) == string(req.Method) {
		return
	}
	req.Method = sip.RequestMethod(data[:sp])
}

// bracketMappedVias keeps the brackets of IPv4-mapped IPv6 Via hosts:
// sipgo stores the host without them and writes "[::ffff:192.0.2.10]:19823"
// back as "::ffff:192.0.2.10:19823", which no one can parse (RFC 5118 §4.9).
func bracketMappedVias(msg sip.Message) {
	var hs []sip.Header
	switch m := msg.(type) {
	case *sip.Request:
		hs = m.Headers()
	case *sip.Response:
		hs = m.Headers()
	}
	for _, h := range hs {
		v, ok := h.(*sip.ViaHeader)
		if !ok || strings.IndexByte(v.Host, ':') < 0 || strings.HasPrefix(v.Host, "[") {
			continue
		}
		if a, err := netip.ParseAddr(v.Host); err == nil && a.Is4In6() {
			v.Host = "[" + v.Host + "]"
		}
	}
}
