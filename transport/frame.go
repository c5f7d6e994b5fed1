package transport

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"
)

// readSIP reads one message framed by Content-Length (RFC 3261 §18.3).
// CRLF keep-alives before it are answered (RFC 5626 §3.5.1: a CRLFCRLF
// ping gets a CRLF pong).
func (c *conn) readSIP(br *bufio.Reader) ([]byte, error) {
	h := c.t.h
	_ = c.nc.SetReadDeadline(time.Now().Add(h.cfg.IdleTimeout))
	n := 0
	for {
		b, err := br.ReadByte()
		if err != nil {
			return nil, err
		}
		if b != '\r' && b != '\n' {
			_ = br.UnreadByte()
			break
		}
		if n++; n == 4 { // a CRLFCRLF ping
			n = 0
			h.st.keepalive.Add(1)
			_ = c.enqueueRaw([]byte("\r\n"))
			_ = c.nc.SetReadDeadline(time.Now().Add(h.cfg.IdleTimeout))
		}
	}
	_ = c.nc.SetReadDeadline(time.Now().Add(h.cfg.MessageTimeout))
	head, err := readHead(br, h.cfg.MaxHeader)
	if err != nil {
		return nil, err
	}
	cl, err := contentLength(head)
	if err != nil {
		return nil, err
	}
	if len(head)+cl > h.maxMsg {
		return nil, fmt.Errorf("%w: message of %d bytes > %d", errFraming, len(head)+cl, h.maxMsg)
	}
	msg := slices.Grow(head, cl)[:len(head)+cl]
	if _, err := io.ReadFull(br, msg[len(head):]); err != nil {
		return nil, err
	}
	return msg, nil
}

// readHead reads a header section up to and including its empty line,
// bounded by max bytes.
func readHead(br *bufio.Reader, max int) ([]byte, error) {
	head := make([]byte, 0, 1024)
	for {
		start := len(head)
		for {
			frag, err := br.ReadSlice('\n')
			head = append(head, frag...)
			if len(head) > max {
				return nil, fmt.Errorf("%w: header section > %d bytes", errFraming, max)
			}
			if err == nil {
				break
			}
			if !errors.Is(err, bufio.ErrBufferFull) {
				return nil, err
			}
		}
		if len(bytes.TrimRight(head[start:], "\r\n")) == 0 {
			return head, nil
		}
	}
}

// contentLength finds Content-Length (or "l") in a header section; a
// missing one means no body. Conflicting or malformed values are framing
// errors: the stream cannot be resynchronised.
func contentLength(head []byte) (int, error) {
	cl := -1
	for line := range bytes.Lines(head) {
		i := bytes.IndexByte(line, ':')
		if i <= 0 {
			continue
		}
		name := bytes.TrimRight(line[:i], " \t")
		if !bytes.EqualFold(name, []byte("Content-Length")) && !bytes.EqualFold(name, []byte("l")) {
			continue
		}
		v := bytes.TrimSpace(line[i+1:])
		n := 0
		if len(v) == 0 || len(v) > 9 {
			return 0, fmt.Errorf("%w: Content-Length %q", errFraming, v)
		}
		for _, d := range v {
			if d < '0' || d > '9' {
				return 0, fmt.Errorf("%w: Content-Length %q", errFraming, v)
			}
			n = n*10 + int(d-'0')
		}
		if cl >= 0 && cl != n {
			return 0, fmt.Errorf("%w: two Content-Length values", errFraming)
		}
		cl = n
	}
	return max(cl, 0), nil
}
