package tm

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/emiago/sipgo/sip"
)

// This file is the parser seam: the one place that turns bytes into messages
// and messages into bytes. A faster parser replaces sipgo's here, and nowhere
// else.

// Errors from the sanity gate, the parser and validation. Each is matched
// with errors.Is; the wrapped text says what exactly was wrong.
var (
	errTooLarge      = errors.New("tm: message too large")
	errMalformed     = errors.New("tm: malformed message")
	errMissingHeader = errors.New("tm: missing mandatory header")
	errTooManyVias   = errors.New("tm: too many Via headers")
	errTooManyHdrs   = errors.New("tm: too many headers")
	errBadCLength    = errors.New("tm: Content-Length does not match the body")
)

// Limits bound what a message may contain. Zero fields take the defaults.
type Limits struct {
	// MaxMessage is the largest message accepted, in bytes (default 65507).
	MaxMessage int
	// MaxHeaders is the most header fields accepted (default 128).
	MaxHeaders int
	// MaxVias is the most Via header values accepted (default 64; the
	// valid RFC 4475 §3.1.1.7 message carries 34).
	MaxVias int
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

// precheck is the cheap sanity gate run before parsing: size, a plausible
// start line, the header count, and Content-Length against the datagram. It
// looks at bytes only and allocates nothing.
func precheck(data []byte, lim Limits) error {
	lim = lim.withDefaults()
	if len(data) > lim.MaxMessage {
		return fmt.Errorf("%w: %d bytes > %d", errTooLarge, len(data), lim.MaxMessage)
	}
	if len(data) < 16 {
		return fmt.Errorf("%w: %d bytes", errMalformed, len(data))
	}
	eol := bytes.Index(data, []byte("\r\n"))
	if eol < 0 {
		return fmt.Errorf("%w: no CRLF after the start line", errMalformed)
	}
	line := data[:eol]
	isResp := bytes.HasPrefix(line, []byte("SIP/2.0 "))
	if !isResp && !bytes.HasSuffix(line, []byte(" SIP/2.0")) {
		return fmt.Errorf("%w: start line is neither a request nor a response", errMalformed)
	}
	end := bytes.Index(data, []byte("\r\n\r\n"))
	if end < 0 {
		return fmt.Errorf("%w: no empty line after the headers", errMalformed)
	}
	head := data[:end+2]
	if n := bytes.Count(head, []byte("\r\n")) - 1; n > lim.MaxHeaders {
		return fmt.Errorf("%w: %d > %d", errTooManyHdrs, n, lim.MaxHeaders)
	}
	body := len(data) - (end + 4)
	if cl, ok := findContentLength(head); ok {
		if cl < 0 || cl > body {
			return fmt.Errorf("%w: Content-Length %d, body %d bytes", errBadCLength, cl, body)
		}
	}
	return nil
}

// findContentLength finds a Content-Length (or compact "l") header value.
// It returns -1 for an unparsable value.
func findContentLength(head []byte) (int, bool) {
	for len(head) > 0 {
		i := bytes.Index(head, []byte("\r\n"))
		if i < 0 {
			break
		}
		line := head[:i]
		head = head[i+2:]
		c := bytes.IndexByte(line, ':')
		if c < 0 {
			continue
		}
		name := bytes.TrimSpace(line[:c])
		if !bytes.EqualFold(name, []byte("Content-Length")) && !bytes.EqualFold(name, []byte("l")) {
			continue
		}
		v, err := strconv.Atoi(string(bytes.TrimSpace(line[c+1:])))
		if err != nil {
			return -1, true
		}
		return v, true
	}
	return 0, false
}

// parse runs the sanity gate and the parser. The returned message owns its
// memory: it does not alias data.
func parse(p *sip.Parser, data []byte, lim Limits) (sip.Message, error) {
	if err := precheck(data, lim); err != nil {
		return nil, err
	}
	msg, err := p.ParseSIP(repairSWS(data))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errMalformed, err)
	}
	if req, ok := msg.(*sip.Request); ok {
		restoreMethod(req, data)
	}
	bracketMappedVias(msg)
	return msg, nil
}

// newParser returns a parser configured for lim.
func newParser(lim Limits) *sip.Parser {
	p := sip.NewParser()
	p.MaxMessageLength = lim.withDefaults().MaxMessage
	return p
}

// validate checks what RFC 3261 §16.3 (and §8.1.1 for responses) requires of
// a message before a proxy acts on it: Via, From, To, Call-ID and CSeq
// present and not repeated (nor Max-Forwards or Content-Length); a
// request's CSeq method equal to its method (errNotImplemented when the
// method is unknown too); SIP/2.0 (errVersion); a Request-URI of a known
// scheme (errUnsupportedScheme) without headers; and the Via count within
// lim.
func validate(msg sip.Message, lim Limits) error {
	lim = lim.withDefaults()
	if msg.Via() == nil {
		return fmt.Errorf("%w: Via", errMissingHeader)
	}
	if msg.From() == nil {
		return fmt.Errorf("%w: From", errMissingHeader)
	}
	if msg.To() == nil {
		return fmt.Errorf("%w: To", errMissingHeader)
	}
	if msg.CallID() == nil || *msg.CallID() == "" {
		return fmt.Errorf("%w: Call-ID", errMissingHeader)
	}
	cseq := msg.CSeq()
	if cseq == nil {
		return fmt.Errorf("%w: CSeq", errMissingHeader)
	}
	if n := len(msg.GetHeaders("Via")); n > lim.MaxVias {
		return fmt.Errorf("%w: %d > %d", errTooManyVias, n, lim.MaxVias)
	}
	if err := singleHeaders(msg); err != nil {
		return err
	}
	if req, ok := msg.(*sip.Request); ok {
		if err := validateRequest(req); err != nil {
			return err
		}
	}
	if cl := msg.ContentLength(); cl != nil && int(*cl) != len(msg.Body()) {
		return fmt.Errorf("%w: Content-Length %d, body %d bytes", errBadCLength, int(*cl), len(msg.Body()))
	}
	return nil
}

// singleHeaders refuses a message that repeats a header allowed once
// (RFC 4475 §3.3.8 multi01, §3.3.9 mcl01).
func singleHeaders(msg sip.Message) error {
	var hs []sip.Header
	switch m := msg.(type) {
	case *sip.Request:
		hs = m.Headers()
	case *sip.Response:
		hs = m.Headers()
	}
	var from, to, callID, cseq, mf, cl int
	for _, h := range hs {
		switch h.(type) {
		case *sip.FromHeader:
			from++
		case *sip.ToHeader:
			to++
		case *sip.CallIDHeader:
			callID++
		case *sip.CSeqHeader:
			cseq++
		case *sip.MaxForwardsHeader:
			mf++
		case *sip.ContentLengthHeader:
			cl++
		}
	}
	if cl > 1 {
		return fmt.Errorf("%w: %d Content-Length headers", errBadCLength, cl)
	}
	if from > 1 || to > 1 || callID > 1 || cseq > 1 || mf > 1 {
		return fmt.Errorf("%w: a single-value header is repeated", errMalformed)
	}
	return nil
}

// validateRequest is the request part of validate.
func validateRequest(req *sip.Request) error {
	if req.SipVersion != "" && req.SipVersion != "SIP/2.0" {
		return fmt.Errorf("%w: %s", errVersion, req.SipVersion)
	}
	if cseq := req.CSeq(); cseq.MethodName != req.Method {
		if !standardMethod(req.Method) {
			return fmt.Errorf("%w: %w: CSeq method %s differs from %s", errMalformed, errNotImplemented, cseq.MethodName, req.Method)
		}
		return fmt.Errorf("%w: CSeq method %s differs from %s", errMalformed, cseq.MethodName, req.Method)
	}
	u := &req.Recipient
	if u.Scheme != "" && !knownScheme(u.Scheme) {
		return fmt.Errorf("%w: %q", errUnsupportedScheme, u.Scheme)
	}
	isSIP := u.Scheme == "" || strings.EqualFold(u.Scheme, "sip") || strings.EqualFold(u.Scheme, "sips")
	if isSIP && u.Host == "" {
		return fmt.Errorf("%w: Request-URI has no host", errMalformed)
	}
	if u.Headers != nil && u.Headers.Length() > 0 {
		// RFC 3261 §19.1.1: headers are not allowed in a Request-URI
		// (RFC 4475 §3.1.2.11 escruri).
		return fmt.Errorf("%w: Request-URI carries headers", errMalformed)
	}
	return nil
}

// standardMethod reports whether m is a method of RFC 3261 or a common
// extension (the methods tm knows; others are forwarded as they are).
func standardMethod(m sip.RequestMethod) bool {
	switch m {
	case sip.INVITE, sip.ACK, sip.CANCEL, sip.BYE, sip.REGISTER, sip.OPTIONS, sip.SUBSCRIBE,
		sip.NOTIFY, sip.REFER, sip.INFO, sip.MESSAGE, sip.PRACK, sip.UPDATE, sip.PUBLISH:
		return true
	}
	return false
}

// writer is the serializer: sipgo's StringWrite into a reused buffer.
type writer struct{ buf bytes.Buffer }

// bytes serializes msg; the result is valid until the next call.
func (w *writer) bytes(msg sip.Message) []byte {
	w.buf.Reset()
	msg.StringWrite(&w.buf)
	return w.buf.Bytes()
}
