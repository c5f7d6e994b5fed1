package sipindex

import (
	"bytes"
	"fmt"
)

// kindOf maps a header name (full or compact form, any case) to its Kind.
func kindOf(name []byte) Kind {
	if len(name) == 1 {
		switch lower(name[0]) {
		case 'v':
			return KindVia
		case 'f':
			return KindFrom
		case 't':
			return KindTo
		case 'i':
			return KindCallID
		case 'l':
			return KindContentLength
		case 'm':
			return KindContact
		case 'c':
			return KindContentType
		}
		return KindOther
	}
	switch len(name) {
	case 3:
		if equalFold(name, "via") {
			return KindVia
		}
	case 4:
		if equalFold(name, "from") {
			return KindFrom
		}
		if equalFold(name, "cseq") {
			return KindCSeq
		}
	case 2:
		if equalFold(name, "to") {
			return KindTo
		}
	case 5:
		if equalFold(name, "route") {
			return KindRoute
		}
	case 7:
		if equalFold(name, "call-id") {
			return KindCallID
		}
		if equalFold(name, "contact") {
			return KindContact
		}
	case 12:
		if equalFold(name, "max-forwards") {
			return KindMaxForwards
		}
		if equalFold(name, "record-route") {
			return KindRecordRoute
		}
		if equalFold(name, "content-type") {
			return KindContentType
		}
	case 14:
		if equalFold(name, "content-length") {
			return KindContentLength
		}
	}
	return KindOther
}

// viaValues counts the comma-separated values of a Via field value v
// (which starts at offset base of the message) and returns the span of the
// first one. Commas inside quoted strings or brackets do not separate.
func viaValues(v []byte, base int) (int, Span, error) {
	n := 0
	var first Span
	start := 0
	flush := func(end int) error {
		s, e := start, end
		for s < e && isLWS(v[s]) {
			s++
		}
		for e > s && isLWS(v[e-1]) {
			e--
		}
		if s == e {
			return fmt.Errorf("%w: empty Via value", ErrMalformed)
		}
		if err := checkVia(v[s:e]); err != nil {
			return err
		}
		if n == 0 {
			first = Span{int32(base + s), int32(base + e)}
		}
		n++
		return nil
	}
	for {
		i, ok := indexOutside(v, start, ',')
		if !ok {
			return 0, Span{}, fmt.Errorf("%w: unterminated quoted string in Via", ErrMalformed)
		}
		if err := flush(i); err != nil {
			return 0, Span{}, err
		}
		if i == len(v) {
			break
		}
		start = i + 1
	}
	return n, first, nil
}

// viaBranch returns the value of the branch parameter of the Via value at
// span via of data (empty when absent).
func viaBranch(data []byte, via Span) (Span, error) {
	v := data[via.Start:via.End]
	return param(v, int(via.Start), paramStart(v), "branch")
}

// paramStart returns the offset of the first ';' of v outside quotes and
// brackets, or len(v).
func paramStart(v []byte) int {
	i, _ := indexOutside(v, 0, ';')
	return i
}

// indexOutside returns the offset of the first sep in v from offset from
// that is outside quoted strings and IPv6 brackets, or len(v); ok is false
// when a quoted string is not terminated.
func indexOutside(v []byte, from int, sep byte) (int, bool) {
	inQuote, inBracket := false, false
	for i := from; i < len(v); i++ {
		c := v[i]
		switch {
		case inQuote:
			if c == '\\' {
				i++
			} else if c == '"' {
				inQuote = false
			}
		case c == '"':
			inQuote = true
		case c == '[':
			inBracket = true
		case c == ']':
			inBracket = false
		case c == sep && !inBracket:
			return i, true
		}
	}
	return len(v), !inQuote
}

// param reads the ";name[=value]" list of v from offset from (which is at
// a ';' or the end) and returns the value span of parameter name (matched
// case-insensitively, RFC 3261 §7.3.1), a quoted value with its quotes.
// Whitespace around ';' and '=' is allowed (§25.1 SEMI, EQUAL). A list
// that does not follow the grammar — an empty name, an unterminated quoted
// string, anything but ';' between parameters — is an error.
func param(v []byte, base, from int, name string) (Span, error) {
	var found Span
	i := from
	for {
		for i < len(v) && isLWS(v[i]) {
			i++
		}
		if i >= len(v) {
			break
		}
		if v[i] != ';' {
			return Span{}, fmt.Errorf("%w: %q where a parameter should start", ErrMalformed, v[i:])
		}
		i++
		for i < len(v) && isLWS(v[i]) {
			i++
		}
		ns := i
		for i < len(v) && isToken(v[i]) {
			i++
		}
		ne := i
		if ne == ns {
			return Span{}, fmt.Errorf("%w: empty parameter name in %q", ErrMalformed, v)
		}
		for i < len(v) && isLWS(v[i]) {
			i++
		}
		var val Span
		if i < len(v) && v[i] == '=' {
			i++
			for i < len(v) && isLWS(v[i]) {
				i++
			}
			vs := i
			if i < len(v) && v[i] == '"' {
				i++
				for i < len(v) && v[i] != '"' {
					if v[i] == '\\' {
						i++
					}
					i++
				}
				if i >= len(v) {
					return Span{}, fmt.Errorf("%w: unterminated quoted string in %q", ErrMalformed, v)
				}
				i++
			} else {
				// token or host (an IPv6 reference included), §25.1
				for i < len(v) && (isToken(v[i]) || v[i] == ':' || v[i] == '[' || v[i] == ']') {
					i++
				}
				if i == vs {
					return Span{}, fmt.Errorf("%w: empty value of parameter %q", ErrMalformed, v[ns:ne])
				}
				if i < len(v) && v[i] != ';' && !isLWS(v[i]) {
					return Span{}, fmt.Errorf("%w: %q in the value of parameter %q", ErrMalformed, v[i], v[ns:ne])
				}
			}
			val = Span{int32(base + vs), int32(base + i)}
			for i < len(v) && isLWS(v[i]) {
				i++
			}
		}
		if found == (Span{}) && equalFold(v[ns:ne], name) {
			found = val
		}
	}
	return found, nil
}

var errUnbalanced = fmt.Errorf("%w: unbalanced quotes or angle brackets", ErrMalformed)

// addressTag returns the tag parameter of a From or To value v (starting at
// base): name-addr ("Display" <uri>;params) or addr-spec (uri;params, where
// the parameters after the URI belong to the header, RFC 3261 §20.10).
func addressTag(v []byte, base int) (Span, error) {
	i := 0
	for i < len(v) && isLWS(v[i]) {
		i++
	}
	if i == len(v) {
		return Span{}, fmt.Errorf("%w: empty address", ErrMalformed)
	}
	lt := -1
	for j := i; j < len(v); j++ {
		c := v[j]
		if c == '"' {
			j++
			for j < len(v) && v[j] != '"' {
				if v[j] == '\\' {
					j++
				}
				j++
			}
			if j >= len(v) {
				return Span{}, errUnbalanced
			}
			continue
		}
		if c == '<' {
			lt = j
			break
		}
		if c == ';' || c == '>' {
			break
		}
	}
	from := 0
	if lt >= 0 {
		gt := indexByte(v, '>', lt+1)
		if gt < 0 {
			return Span{}, errUnbalanced
		}
		if err := checkURI(v[lt+1:gt], false); err != nil {
			return Span{}, err
		}
		from = gt + 1
		j := from
		for j < len(v) && isLWS(v[j]) {
			j++
		}
		if j < len(v) && v[j] != ';' {
			return Span{}, fmt.Errorf("%w: %q after the address", ErrMalformed, v[j:])
		}
	} else {
		from = paramStartAddrSpec(v)
		e := from
		for e > i && isLWS(v[e-1]) {
			e--
		}
		if err := checkURI(v[i:e], false); err != nil {
			return Span{}, err
		}
	}
	return param(v, base, from, "tag")
}

// paramStartAddrSpec is where an addr-spec's header parameters start: the
// first ';' (a URI in addr-spec form cannot carry parameters of its own).
func paramStartAddrSpec(v []byte) int {
	j := indexByte(v, ';', 0)
	if j < 0 {
		return len(v)
	}
	return j
}

// cseq reads "number LWS method".
func cseq(v []byte, base int) (uint32, Span, error) {
	i := 0
	var n uint64
	for i < len(v) && isDigit(v[i]) {
		n = n*10 + uint64(v[i]-'0')
		if n > 1<<31-1 {
			return 0, Span{}, fmt.Errorf("%w: CSeq number out of range", ErrMalformed)
		}
		i++
	}
	if i == 0 {
		return 0, Span{}, fmt.Errorf("%w: CSeq %q has no number", ErrMalformed, v)
	}
	ws := i
	for i < len(v) && isLWS(v[i]) {
		i++
	}
	if i == ws || i == len(v) {
		return 0, Span{}, fmt.Errorf("%w: CSeq %q has no method", ErrMalformed, v)
	}
	ms := i
	for i < len(v) && isToken(v[i]) {
		i++
	}
	if i != len(v) {
		return 0, Span{}, fmt.Errorf("%w: CSeq %q", ErrMalformed, v)
	}
	return uint32(n), Span{int32(base + ms), int32(base + i)}, nil
}

// smallUint parses a decimal number ≤ max.
func smallUint(v []byte, max int) (int, bool) {
	if len(v) == 0 {
		return 0, false
	}
	n := 0
	for _, c := range v {
		if !isDigit(c) {
			return 0, false
		}
		n = n*10 + int(c-'0')
		if n > max {
			return 0, false
		}
	}
	return n, true
}

// unfold returns v with every CRLF followed by whitespace replaced by one
// space (RFC 3261 §7.3.1).
func unfold(v []byte) []byte {
	out := make([]byte, 0, len(v))
	for i := 0; i < len(v); i++ {
		if v[i] == '\r' && i+1 < len(v) && v[i+1] == '\n' {
			i++
			for i+1 < len(v) && isWS(v[i+1]) {
				i++
			}
			out = append(out, ' ')
			continue
		}
		out = append(out, v[i])
	}
	return out
}

// indexCRLF and indexByte use bytes.IndexByte (vectorised): they run over
// every byte of every message.
func indexCRLF(b []byte, from int) int {
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

func indexByte(b []byte, c byte, from int) int {
	if from >= len(b) {
		return -1
	}
	if i := bytes.IndexByte(b[from:], c); i >= 0 {
		return from + i
	}
	return -1
}

func firstWord(b []byte) []byte {
	if i := indexByte(b, ' ', 0); i >= 0 {
		return b[:i]
	}
	return b
}

func hasPrefix(b []byte, p string) bool { return len(b) >= len(p) && string(b[:len(p)]) == p }

func hasPrefixFold(b []byte, p string) bool { return len(b) >= len(p) && equalFold(b[:len(p)], p) }

func equalBytes(a, b []byte) bool { return string(a) == string(b) }

func equalFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range b {
		if lower(b[i]) != lower(s[i]) {
			return false
		}
	}
	return true
}

func lower(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }
func isWS(c byte) bool    { return c == ' ' || c == '\t' }
func isLWS(c byte) bool   { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }

// isToken reports whether c is a token character (RFC 3261 §25.1).
func isToken(c byte) bool { return tokenChars[c] }

var tokenChars = func() (t [256]bool) {
	for c := 0; c < 256; c++ {
		b := byte(c)
		switch {
		case 'a' <= b && b <= 'z', 'A' <= b && b <= 'Z', isDigit(b):
			t[c] = true
		}
		switch b {
		case '-', '.', '!', '%', '*', '_', '+', '`', '\'', '~':
			t[c] = true
		}
	}
	return t
}()

// checkURI checks the URI u: a scheme (RFC 3986 §3.1) followed by ':',
// and for sip and sips a host (an IPv6 reference in brackets) with an
// optional numeric port. In a Request-URI a sip URI may not carry headers
// (RFC 3261 §19.1.1) and the scheme must be one a proxy routes.
func checkURI(u []byte, requestURI bool) error {
	colon := indexByte(u, ':', 0)
	if colon <= 0 {
		return fmt.Errorf("%w: URI %q has no scheme", ErrMalformed, u)
	}
	scheme := u[:colon]
	for i, c := range scheme {
		alpha := 'a' <= lower(c) && lower(c) <= 'z'
		if i == 0 && !alpha || !alpha && !isDigit(c) && c != '+' && c != '-' && c != '.' {
			return fmt.Errorf("%w: invalid URI scheme %q", ErrMalformed, scheme)
		}
	}
	sipURI := equalFold(scheme, "sip") || equalFold(scheme, "sips")
	if !sipURI {
		if requestURI && !equalFold(scheme, "tel") && !equalFold(scheme, "urn") {
			return fmt.Errorf("%w: %q", ErrUnsupportedScheme, scheme)
		}
		return nil
	}
	rest := u[colon+1:]
	// '@' appears unescaped only after the userinfo (RFC 3261 §25.1:
	// neither hostport, params nor headers allow it), which may itself
	// hold '?' and ';'.
	if at := indexByte(rest, '@', 0); at >= 0 {
		rest = rest[at+1:]
	}
	if q := indexByte(rest, '?', 0); q >= 0 {
		if requestURI {
			return fmt.Errorf("%w: Request-URI carries headers", ErrMalformed)
		}
		rest = rest[:q]
	}
	if p := indexByte(rest, ';', 0); p >= 0 {
		rest = rest[:p]
	}
	host, port := rest, []byte(nil)
	if len(rest) > 0 && rest[0] == '[' {
		rb := indexByte(rest, ']', 0)
		if rb < 0 {
			return fmt.Errorf("%w: unterminated IPv6 reference in %q", ErrMalformed, u)
		}
		host = rest[:rb+1]
		if tail := rest[rb+1:]; len(tail) > 0 {
			if tail[0] != ':' {
				return fmt.Errorf("%w: bad host in %q", ErrMalformed, u)
			}
			port = tail[1:]
			if len(port) == 0 {
				return fmt.Errorf("%w: empty port in %q", ErrMalformed, u)
			}
		}
	} else if c := indexByte(rest, ':', 0); c >= 0 {
		host, port = rest[:c], rest[c+1:]
		if len(port) == 0 {
			return fmt.Errorf("%w: empty port in %q", ErrMalformed, u)
		}
	}
	if len(host) == 0 {
		return fmt.Errorf("%w: URI %q has no host", ErrMalformed, u)
	}
	if host[0] != '[' {
		for _, c := range host {
			if !isHostChar(c) {
				return fmt.Errorf("%w: bad host in %q", ErrMalformed, u)
			}
		}
	}
	if port != nil {
		if _, ok := smallUint(port, 65535); !ok {
			return fmt.Errorf("%w: port %q in %q", ErrMalformed, port, u)
		}
	}
	return nil
}

// checkVia checks a Via value's sent-protocol and sent-by (RFC 3261 §20.42:
// "SIP / 2.0 / transport LWS host [: port]", whitespace allowed around
// the slashes).
func checkVia(v []byte) error {
	i := 0
	for part := 0; part < 3; part++ {
		s := i
		for i < len(v) && isToken(v[i]) {
			i++
		}
		if i == s {
			return fmt.Errorf("%w: Via %q: bad sent-protocol", ErrMalformed, v)
		}
		if part == 0 && !equalFold(v[s:i], "sip") {
			return fmt.Errorf("%w: Via %q does not start with SIP", ErrMalformed, v)
		}
		for i < len(v) && isLWS(v[i]) {
			i++
		}
		if part < 2 {
			if i >= len(v) || v[i] != '/' {
				return fmt.Errorf("%w: Via %q: bad sent-protocol", ErrMalformed, v)
			}
			i++
			for i < len(v) && isLWS(v[i]) {
				i++
			}
		}
	}
	s := i
	if i < len(v) && v[i] == '[' {
		rb := indexByte(v, ']', i)
		if rb < 0 {
			return fmt.Errorf("%w: Via %q: unterminated IPv6 reference", ErrMalformed, v)
		}
		i = rb + 1
	} else {
		for i < len(v) && isHostChar(v[i]) {
			i++
		}
	}
	if i == s {
		return fmt.Errorf("%w: Via %q has no sent-by host", ErrMalformed, v)
	}
	for i < len(v) && isLWS(v[i]) {
		i++
	}
	if i < len(v) && v[i] == ':' {
		i++
		for i < len(v) && isLWS(v[i]) {
			i++
		}
		ps := i
		for i < len(v) && isDigit(v[i]) {
			i++
		}
		if _, ok := smallUint(v[ps:i], 65535); !ok {
			return fmt.Errorf("%w: Via %q: bad port", ErrMalformed, v)
		}
	}
	for i < len(v) && isLWS(v[i]) {
		i++
	}
	if i < len(v) && v[i] != ';' {
		return fmt.Errorf("%w: Via %q: unexpected %q after sent-by", ErrMalformed, v, v[i])
	}
	return nil
}

// isHostChar: a character of a hostname or IPv4 address (RFC 3261 §25.1;
// '_' is taken too, as hosts in the wild carry it).
func isHostChar(c byte) bool {
	return 'a' <= lower(c) && lower(c) <= 'z' || isDigit(c) || c == '-' || c == '.' || c == '_'
}
