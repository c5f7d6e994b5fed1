// Package sipindex indexes a raw SIP message without building it: one pass
// over the bytes records the start line, where every header field is, and
// the values the transaction layer needs (top Via and its branch, From and To
// tags, Call-ID, CSeq, Max-Forwards, Content-Length, Route and Record-Route).
// Nothing is copied: every value is a span of the datagram, read back with
// Index.Bytes.
//
// It is the first part of asyncsip's own message core (issue 19): a proxy
// that only relays can decide a message's owner loop, its transaction and
// its validity from an Index, and build the full sipgo message only when a
// route asks for it. Its verdicts are held to those of tm's sipgo-based
// parser and validation by a differential test over the RFC 4475 and RFC
// 5118 messages and the fuzz corpus, and by FuzzDifferential.
package sipindex

import (
	"errors"
	"fmt"
)

// Errors, matched with errors.Is; the wrapped text says what was wrong.
var (
	ErrTooLarge      = errors.New("sipindex: message too large")
	ErrMalformed     = errors.New("sipindex: malformed message")
	ErrMissingHeader = errors.New("sipindex: missing mandatory header")
	ErrTooManyHdrs   = errors.New("sipindex: too many headers")
	ErrTooManyVias   = errors.New("sipindex: too many Via headers")
	ErrBadCLength    = errors.New("sipindex: Content-Length does not match the body")
	ErrVersion       = errors.New("sipindex: unsupported SIP version")
	// ErrUnsupportedScheme: a Request-URI scheme a proxy does not route
	// (answered 416, RFC 3261 §8.2.2.1).
	ErrUnsupportedScheme = errors.New("sipindex: unsupported Request-URI scheme")
)

// Span is a half-open byte range [Start, End) of the indexed message.
// The zero Span is empty and means "absent".
type Span struct{ Start, End int32 }

// Len is the span's length in bytes.
func (s Span) Len() int { return int(s.End - s.Start) }

// Kind names the headers the index knows. Others are KindOther.
type Kind uint8

// The known header kinds.
const (
	KindOther Kind = iota
	KindVia
	KindFrom
	KindTo
	KindCallID
	KindCSeq
	KindMaxForwards
	KindContentLength
	KindRoute
	KindRecordRoute
	KindContact
	KindContentType
)

// Field is one header field: its name and value as they appear (the value
// without leading and trailing whitespace; a folded value keeps its line
// breaks, see Folded).
type Field struct {
	Name, Value Span
	Kind        Kind
	// Folded is set when the value continues on further lines (RFC 3261
	// §7.3.1); Index.Value returns it unfolded.
	Folded bool
}

// Limits bound what a message may contain. Zero fields take the defaults,
// which are those of tm.Limits.
type Limits struct {
	MaxMessage int // bytes, default 65507
	MaxHeaders int // header fields, default 128
	MaxVias    int // Via values, default 64
}

func (l Limits) withDefaults() Limits {
	if l.MaxMessage <= 0 {
		l.MaxMessage = 65507
	}
	if l.MaxHeaders <= 0 {
		l.MaxHeaders = 128
	}
	if l.MaxVias <= 0 {
		l.MaxVias = 64
	}
	return l
}

// Index is the result of Parse. Reuse one Index for many messages: Parse
// resets it and keeps the capacity of Fields, so indexing allocates nothing
// once Fields has grown to the largest header count seen.
type Index struct {
	data []byte

	// Request is true for a request, false for a response.
	Request bool
	// Method and RequestURI are set for a request.
	Method, RequestURI Span
	// Status and Reason are set for a response.
	Status int
	Reason Span

	// Fields lists every header field in order.
	Fields []Field
	// Body is what follows the empty line (bounded by Content-Length when
	// present).
	Body Span

	// The values the transaction layer needs.
	CallID        Span
	CSeq          uint32
	CSeqMethod    Span
	FromTag       Span
	ToTag         Span
	TopVia        Span // the first Via value (one value of a comma list)
	Branch        Span // the branch parameter of TopVia
	Vias          int  // Via values in all Via fields
	MaxForwards   int  // -1 when absent
	ContentLength int  // -1 when absent
	Routes        int  // Route fields
	RecordRoutes  int  // Record-Route fields
}

// Bytes returns the bytes of s in the indexed message (nil for an empty
// span). They alias the message.
func (ix *Index) Bytes(s Span) []byte {
	if s.End <= s.Start {
		return nil
	}
	return ix.data[s.Start:s.End]
}

// String is Bytes as a string (allocates).
func (ix *Index) String(s Span) string { return string(ix.Bytes(s)) }

// Value returns a field's value, unfolded when it was folded (the only case
// that allocates).
func (ix *Index) Value(f Field) []byte {
	v := ix.Bytes(f.Value)
	if !f.Folded {
		return v
	}
	return unfold(v)
}

// Data returns the indexed message.
func (ix *Index) Data() []byte { return ix.data }

// Find returns the first field of kind k, and whether there is one.
func (ix *Index) Find(k Kind) (Field, bool) {
	for _, f := range ix.Fields {
		if f.Kind == k {
			return f, true
		}
	}
	return Field{}, false
}

func (ix *Index) reset(data []byte) {
	fields := ix.Fields[:0]
	*ix = Index{data: data, Fields: fields, MaxForwards: -1, ContentLength: -1}
}

// Parse indexes data and checks what RFC 3261 §16.3 and §8.1.1 require
// before a proxy acts on a message: a well-formed start line of SIP/2.0;
// Via, From, To, Call-ID and CSeq present and not repeated (nor
// Max-Forwards or Content-Length); a request's CSeq method equal to its
// method; Content-Length within the datagram; the header and Via counts
// within lim. data must not change while the Index is in use.
func (ix *Index) Parse(data []byte, lim Limits) error {
	lim = lim.withDefaults()
	ix.reset(data)
	if len(data) > lim.MaxMessage {
		return fmt.Errorf("%w: %d bytes > %d", ErrTooLarge, len(data), lim.MaxMessage)
	}
	if len(data) < 16 {
		return fmt.Errorf("%w: %d bytes", ErrMalformed, len(data))
	}
	eol := indexCRLF(data, 0)
	if eol < 0 {
		return fmt.Errorf("%w: no CRLF after the start line", ErrMalformed)
	}
	if err := ix.startLine(data[:eol]); err != nil {
		return err
	}
	pos := eol + 2
	var counts [KindContentType + 1]int
	for {
		if pos+1 < len(data) && data[pos] == '\r' && data[pos+1] == '\n' {
			pos += 2
			break
		}
		if pos >= len(data) {
			return fmt.Errorf("%w: no empty line after the headers", ErrMalformed)
		}
		if len(ix.Fields) >= lim.MaxHeaders {
			return fmt.Errorf("%w: more than %d", ErrTooManyHdrs, lim.MaxHeaders)
		}
		f, next, err := ix.field(data, pos)
		if err != nil {
			return err
		}
		pos = next
		ix.Fields = append(ix.Fields, f)
		counts[f.Kind]++
		if err := ix.known(f); err != nil {
			return err
		}
		if ix.Vias > lim.MaxVias {
			return fmt.Errorf("%w: more than %d", ErrTooManyVias, lim.MaxVias)
		}
	}
	for _, m := range [...]struct {
		k    Kind
		name string
	}{{KindVia, "Via"}, {KindFrom, "From"}, {KindTo, "To"}, {KindCallID, "Call-ID"}, {KindCSeq, "CSeq"}} {
		if counts[m.k] == 0 {
			return fmt.Errorf("%w: %s", ErrMissingHeader, m.name)
		}
	}
	if counts[KindContentLength] > 1 {
		return fmt.Errorf("%w: %d Content-Length headers", ErrBadCLength, counts[KindContentLength])
	}
	for _, k := range [...]Kind{KindFrom, KindTo, KindCallID, KindCSeq, KindMaxForwards} {
		if counts[k] > 1 {
			return fmt.Errorf("%w: a single-value header is repeated", ErrMalformed)
		}
	}
	body := len(data) - pos
	ix.Body = Span{int32(pos), int32(len(data))}
	if ix.ContentLength >= 0 {
		if ix.ContentLength > body {
			return fmt.Errorf("%w: Content-Length %d, body %d bytes", ErrBadCLength, ix.ContentLength, body)
		}
		ix.Body.End = int32(pos + ix.ContentLength)
	}
	if ix.Request && !equalBytes(ix.Bytes(ix.CSeqMethod), ix.Bytes(ix.Method)) {
		return fmt.Errorf("%w: CSeq method %s differs from %s", ErrMalformed, ix.Bytes(ix.CSeqMethod), ix.Bytes(ix.Method))
	}
	return nil
}

// startLine reads "METHOD SP Request-URI SP SIP/2.0" or
// "SIP/2.0 SP Status-Code SP Reason-Phrase".
func (ix *Index) startLine(line []byte) error {
	if hasPrefix(line, "SIP/") {
		if !hasPrefix(line, "SIP/2.0 ") {
			return fmt.Errorf("%w: %q", ErrVersion, firstWord(line))
		}
		rest := line[8:]
		if len(rest) < 3 || !isDigit(rest[0]) || !isDigit(rest[1]) || !isDigit(rest[2]) || (len(rest) > 3 && rest[3] != ' ') {
			return fmt.Errorf("%w: status code in %q", ErrMalformed, line)
		}
		ix.Status = int(rest[0]-'0')*100 + int(rest[1]-'0')*10 + int(rest[2]-'0')
		if ix.Status < 100 || ix.Status > 699 {
			return fmt.Errorf("%w: status code %d", ErrMalformed, ix.Status)
		}
		if len(rest) > 4 {
			ix.Reason = Span{12, int32(len(line))}
		}
		return nil
	}
	ix.Request = true
	sp1 := indexByte(line, ' ', 0)
	if sp1 <= 0 {
		return fmt.Errorf("%w: start line is neither a request nor a response", ErrMalformed)
	}
	for _, c := range line[:sp1] {
		if !isToken(c) {
			return fmt.Errorf("%w: method %q", ErrMalformed, line[:sp1])
		}
	}
	sp2 := indexByte(line, ' ', sp1+1)
	if sp2 < 0 || sp2 == sp1+1 {
		return fmt.Errorf("%w: start line is neither a request nor a response", ErrMalformed)
	}
	ver := line[sp2+1:]
	if !hasPrefix(ver, "SIP/") {
		return fmt.Errorf("%w: start line is neither a request nor a response", ErrMalformed)
	}
	if string(ver) != "SIP/2.0" {
		return fmt.Errorf("%w: %q", ErrVersion, ver)
	}
	if err := checkURI(line[sp1+1:sp2], true); err != nil {
		return err
	}
	ix.Method = Span{0, int32(sp1)}
	ix.RequestURI = Span{int32(sp1 + 1), int32(sp2)}
	return nil
}

// field reads the header field starting at pos (with its continuation
// lines) and returns it with the position after its final CRLF.
func (ix *Index) field(data []byte, pos int) (Field, int, error) {
	if data[pos] == ' ' || data[pos] == '\t' {
		return Field{}, 0, fmt.Errorf("%w: header line starts with whitespace", ErrMalformed)
	}
	colon := -1
	nameEnd := -1
	i := pos
	for ; i < len(data); i++ {
		c := data[i]
		if c == ':' {
			colon = i
			break
		}
		if c == ' ' || c == '\t' {
			if nameEnd < 0 {
				nameEnd = i
			}
			continue
		}
		if c == '\r' || c == '\n' {
			return Field{}, 0, fmt.Errorf("%w: header line without a colon: %q", ErrMalformed, data[pos:i])
		}
		if nameEnd >= 0 || !isToken(c) {
			return Field{}, 0, fmt.Errorf("%w: %q in header name %q", ErrMalformed, c, data[pos:i])
		}
	}
	if colon < 0 {
		return Field{}, 0, fmt.Errorf("%w: header line without a colon", ErrMalformed)
	}
	if nameEnd < 0 {
		nameEnd = colon
	}
	f := Field{Name: Span{int32(pos), int32(nameEnd)}}
	// The value runs to the CRLF not followed by SP/HT.
	vs := colon + 1
	end := -1
	for j := vs; ; {
		k := indexCRLF(data, j)
		if k < 0 {
			return Field{}, 0, fmt.Errorf("%w: header %q not terminated", ErrMalformed, data[pos:nameEnd])
		}
		if k+2 < len(data) && (data[k+2] == ' ' || data[k+2] == '\t') {
			f.Folded = true
			j = k + 2
			continue
		}
		end = k
		break
	}
	ve := end
	for vs < ve && isLWS(data[vs]) {
		vs++
	}
	for ve > vs && isLWS(data[ve-1]) {
		ve--
	}
	for k := vs; k < ve; k++ {
		// CR and LF only as CRLF followed by whitespace (a fold): a bare
		// one would let a header smuggle another past a later hop.
		switch data[k] {
		case '\r':
			if data[k+1] != '\n' || !isWS(data[k+2]) {
				return Field{}, 0, fmt.Errorf("%w: bare CR in header %q", ErrMalformed, data[pos:nameEnd])
			}
		case '\n':
			if data[k-1] != '\r' {
				return Field{}, 0, fmt.Errorf("%w: bare LF in header %q", ErrMalformed, data[pos:nameEnd])
			}
		}
	}
	f.Value = Span{int32(vs), int32(ve)}
	f.Kind = kindOf(data[pos:nameEnd])
	return f, end + 2, nil
}

// known extracts the values of the headers the index knows.
func (ix *Index) known(f Field) error {
	// A folded value is read in place: the parsers below treat CR and LF
	// as whitespace, so spans stay offsets into the message.
	v := ix.Bytes(f.Value)
	switch f.Kind {
	case KindVia:
		n, top, err := viaValues(v, int(f.Value.Start))
		if err != nil {
			return err
		}
		if ix.Vias == 0 {
			ix.TopVia = top
			if ix.Branch, err = viaBranch(ix.data, top); err != nil {
				return fmt.Errorf("%w (in Via)", err)
			}
		}
		ix.Vias += n
	case KindFrom, KindTo:
		tag, err := addressTag(v, int(f.Value.Start))
		if err != nil {
			name := "To"
			if f.Kind == KindFrom {
				name = "From"
			}
			return fmt.Errorf("%w (in %s)", err, name)
		}
		if f.Kind == KindFrom {
			ix.FromTag = tag
		} else {
			ix.ToTag = tag
		}
	case KindCallID:
		if len(v) == 0 {
			return fmt.Errorf("%w: Call-ID", ErrMissingHeader)
		}
		for _, c := range v {
			if isLWS(c) {
				return fmt.Errorf("%w: Call-ID contains whitespace", ErrMalformed)
			}
		}
		ix.CallID = f.Value
	case KindCSeq:
		num, m, err := cseq(v, int(f.Value.Start))
		if err != nil {
			return err
		}
		ix.CSeq, ix.CSeqMethod = num, m
	case KindMaxForwards:
		n, ok := smallUint(v, 255)
		if !ok {
			return fmt.Errorf("%w: Max-Forwards %q", ErrMalformed, v)
		}
		ix.MaxForwards = n
	case KindContentLength:
		n, ok := smallUint(v, 1<<30)
		if !ok {
			return fmt.Errorf("%w: Content-Length %q", ErrBadCLength, v)
		}
		ix.ContentLength = n
	case KindRoute:
		ix.Routes++
	case KindRecordRoute:
		ix.RecordRoutes++
	}
	return nil
}
