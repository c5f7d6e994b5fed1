package e2etest

import (
	"fmt"
	"strings"
)

// Request builds a raw request from 127.0.0.1:port; via is the Via
// transport ("UDP", "TCP", …), extra are whole header lines.
func Request(method, ruri, via string, port int, callID, body string, extra ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s SIP/2.0\r\n", method, ruri)
	fmt.Fprintf(&b, "Via: SIP/2.0/%s 127.0.0.1:%d;branch=z9hG4bK-%s-%s;rport\r\n", via, port, callID, method)
	b.WriteString("Max-Forwards: 70\r\n")
	fmt.Fprintf(&b, "From: <sip:alice@127.0.0.1>;tag=a-%s\r\n", callID)
	fmt.Fprintf(&b, "To: <%s>\r\n", ruri)
	fmt.Fprintf(&b, "Call-ID: %s\r\n", callID)
	fmt.Fprintf(&b, "CSeq: 1 %s\r\n", method)
	fmt.Fprintf(&b, "Contact: <sip:alice@127.0.0.1:%d;transport=%s>\r\n", port, strings.ToLower(via))
	for _, h := range extra {
		b.WriteString(h + "\r\n")
	}
	fmt.Fprintf(&b, "Content-Length: %d\r\n\r\n%s", len(body), body)
	return b.String()
}

// Answer builds a response to a raw request: its Vias, Record-Routes,
// From, To (with a tag), Call-ID and CSeq.
func Answer(req string, code int, reason string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "SIP/2.0 %d %s\r\n", code, reason)
	for _, line := range strings.Split(req, "\r\n") {
		name, _, _ := strings.Cut(line, ":")
		switch strings.ToLower(strings.TrimSpace(name)) {
		case "via", "record-route", "from", "call-id", "cseq":
			b.WriteString(line + "\r\n")
		case "to":
			b.WriteString(line + ";tag=uas\r\n")
		}
	}
	b.WriteString("Content-Length: 0\r\n\r\n")
	return b.String()
}

// Header returns the first value of a header in a raw message ("" when
// absent).
func Header(msg, name string) string {
	for _, line := range strings.Split(msg, "\r\n") {
		n, v, ok := strings.Cut(line, ":")
		if ok && strings.EqualFold(strings.TrimSpace(n), name) {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// Headers returns every value of a header in a raw message, in order.
func Headers(msg, name string) []string {
	var out []string
	for _, line := range strings.Split(msg, "\r\n") {
		n, v, ok := strings.Cut(line, ":")
		if ok && strings.EqualFold(strings.TrimSpace(n), name) {
			out = append(out, strings.TrimSpace(v))
		}
	}
	return out
}

// StatusLine returns the first line of a raw message.
func StatusLine(msg string) string {
	line, _, _ := strings.Cut(msg, "\r\n")
	return line
}

// CRLF turns the LF line ends of a message written as a Go raw string
// into the CRLF that SIP requires (a CR already there gets another).
func CRLF(msg string) string { return strings.ReplaceAll(msg, "\n", "\r\n") }
