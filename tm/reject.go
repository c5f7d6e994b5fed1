package tm

import (
	"bytes"
	"errors"
	"net/netip"
	"strconv"
	"strings"
)

// Errors from validation that call for a response other than 400.
var (
	// errUnsupportedScheme: the Request-URI scheme is not sip, sips, tel or
	// urn (RFC 3261 §16.3 step 2: 416 Unsupported URI Scheme).
	errUnsupportedScheme = errors.New("tm: unsupported Request-URI scheme")
	// errVersion: the SIP version is not SIP/2.0 (505 Version Not Supported).
	errVersion = errors.New("tm: unsupported SIP version")
	// errNotImplemented: an unknown method whose CSeq names another method
	// (RFC 4475 §3.1.2.18: 501 Not Implemented).
	errNotImplemented = errors.New("tm: method not implemented")
)

// statusFor is the response to a request that failed validation.
func statusFor(err error) (int, string) {
	switch {
	case errors.Is(err, errUnsupportedScheme):
		return 416, "Unsupported URI Scheme"
	case errors.Is(err, errVersion):
		return 505, "Version Not Supported"
	case errors.Is(err, errNotImplemented):
		return 501, "Not Implemented"
	case errors.Is(err, errBadCLength):
		return 400, "Bad Request (Content-Length)"
	case errors.Is(err, errTooManyVias):
		return 400, "Bad Request (Too Many Via)"
	}
	return 400, "Bad Request"
}

// knownSchemes are the Request-URI schemes the proxy routes.
func knownScheme(s string) bool {
	switch strings.ToLower(s) {
	case "sip", "sips", "tel", "urn":
		return true
	}
	return false
}

// rejectUnparsed answers a request that the sanity gate or the parser
// refused, as RFC 4475 §3.1.2 asks: 400 for a malformed request, 505 for
// another SIP version, 416 for an unknown Request-URI scheme. Responses,
// ACKs and oversized messages are never answered.
func (s *Server) rejectUnparsed(ls *loopState, data []byte, from netip.AddrPort, tp Transport, perr error) {
	if errors.Is(perr, errTooLarge) || errors.Is(perr, errTooManyHdrs) {
		return
	}
	eol := bytes.Index(data, []byte("\r\n"))
	if eol < 0 {
		return
	}
	f := strings.Fields(string(data[:eol]))
	if len(f) < 3 || !isToken(f[0]) || !strings.HasPrefix(f[len(f)-1], "SIP/") {
		return
	}
	code, reason := 400, "Bad Request"
	uri := strings.Join(f[1:len(f)-1], " ")
	if f[len(f)-1] != "SIP/2.0" {
		code, reason = 505, "Version Not Supported"
	} else if c := strings.IndexByte(uri, ':'); c > 0 && isSchemeName(uri[:c]) && !knownScheme(uri[:c]) {
		code, reason = 416, "Unsupported URI Scheme"
	}
	s.replyRaw(ls, data, f[0], from, tp, code, reason)
}

// replyRaw answers, without a transaction, a request that will not be
// processed (it failed the parser or validation). The response is built
// from the raw header lines — every Via, From, To (given a tag), Call-ID and
// CSeq (the first when repeated), unfolded and copied as received, in
// compact form — so that it is
// as small as a response can be: it is sent only when it is no larger than
// the request (no amplification towards a spoofed source). Nothing is sent
// for an ACK, or when one of those headers is missing or holds
// control characters. The answer goes to the source address and port (as
// with rport): a Via that names another port may itself be malformed.
func (s *Server) replyRaw(ls *loopState, data []byte, method string, from netip.AddrPort, tp Transport, code int, reason string) {
	if method == "ACK" || !from.IsValid() {
		return
	}
	b, ok := rawResponse(data, code, reason, s.toTag(ls))
	if !ok {
		return
	}
	if len(b) > len(data) {
		s.stats.countDrop("amplification")
		return
	}
	_ = s.send(ls, tp, b, from)
}

// rawResponse builds the response of replyRaw.
func rawResponse(data []byte, code int, reason, toTag string) ([]byte, bool) {
	eol := bytes.Index(data, []byte("\r\n"))
	if eol < 0 {
		return nil, false
	}
	h, ok := rawHeaders(data[eol+2:])
	if !ok {
		return nil, false
	}
	to := h.to
	if !strings.Contains(strings.ToLower(to), "tag=") {
		to += ";tag=" + toTag
	}
	var b bytes.Buffer
	b.WriteString("SIP/2.0 " + strconv.Itoa(code) + " " + reason + "\r\n")
	for _, v := range h.via {
		b.WriteString("v: " + v + "\r\n")
	}
	b.WriteString("f: " + h.from + "\r\nt: " + to + "\r\ni: " + h.callID +
		"\r\nCSeq: " + h.cseq + "\r\nl: 0\r\n\r\n")
	return b.Bytes(), true
}

type rawHdrs struct {
	via                    []string
	from, to, callID, cseq string
}

// rawHeaders reads the header lines a response needs, up to the empty line
// or the end of the datagram.
func rawHeaders(head []byte) (rawHdrs, bool) {
	var h rawHdrs
	if end := bytes.Index(head, []byte("\r\n\r\n")); end >= 0 {
		head = head[:end+2]
	}
	for len(head) > 0 {
		n := logicalLineLen(head)
		name, value, ok := splitField(head[:n])
		head = head[n:]
		if !ok {
			continue
		}
		v := strings.TrimSpace(unfold(value))
		dst := (*string)(nil)
		switch strings.ToLower(string(name)) {
		case "via", "v":
			if !printable(v) {
				return h, false
			}
			h.via = append(h.via, v)
			continue
		case "from", "f":
			dst = &h.from
		case "to", "t":
			dst = &h.to
		case "call-id", "i":
			dst = &h.callID
		case "cseq":
			dst = &h.cseq
		default:
			continue
		}
		if !printable(v) {
			return h, false // nothing that could break the response apart
		}
		if *dst == "" { // the first of repeated values (multi01)
			*dst = v
		}
	}
	ok := len(h.via) > 0 && h.from != "" && h.to != "" && h.callID != "" && h.cseq != ""
	return h, ok
}

// printable reports whether v is non-empty and has no control characters
// but tab (nothing that could break the response apart).
func printable(v string) bool {
	if v == "" {
		return false
	}
	for i := 0; i < len(v); i++ {
		if c := v[i]; (c < 0x20 && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}

// isToken reports whether s is an RFC 3261 token (a method name).
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' {
			continue
		}
		if !strings.ContainsRune("-.!%*_+`'~", rune(c)) {
			return false
		}
	}
	return true
}

// isSchemeName reports whether s is an RFC 3986 scheme.
func isSchemeName(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		alpha := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
		if !alpha && (i == 0 || !(c >= '0' && c <= '9' || c == '+' || c == '-' || c == '.')) {
			return false
		}
	}
	return s != ""
}
