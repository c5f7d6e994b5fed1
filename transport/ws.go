package transport

import (
	"bufio"
	"bytes"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"
)

// SIP over WebSocket (RFC 7118) on RFC 6455 framing: the server side only.
// Each WebSocket message carries one SIP message; client frames must be
// masked; pings are ponged; a close is echoed.

const wsGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

// WebSocket opcodes.
const (
	wsCont  = 0x0
	wsText  = 0x1
	wsBin   = 0x2
	wsClose = 0x8
	wsPing  = 0x9
	wsPong  = 0xA
)

// wsCloseError ends a WebSocket connection with a close frame.
type wsCloseError struct {
	code   uint16
	reason string
}

func (e wsCloseError) Error() string {
	return fmt.Sprintf("transport: websocket close %d: %s", e.code, e.reason)
}

func (e wsCloseError) Unwrap() error {
	if e.code == 1000 {
		return io.EOF // the peer closed cleanly
	}
	return errFraming
}

// wsHandshake reads the HTTP upgrade request and answers 101 with
// Sec-WebSocket-Protocol: sip, or an HTTP error.
func (c *conn) wsHandshake(br *bufio.Reader) error {
	h := c.t.h
	_ = c.nc.SetDeadline(time.Now().Add(h.cfg.MessageTimeout))
	defer func() { _ = c.nc.SetDeadline(time.Time{}) }()
	head, err := readHead(br, h.cfg.MaxHeader)
	if err != nil {
		return err
	}
	req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(head)))
	if err != nil {
		c.httpError("400 Bad Request", "")
		return fmt.Errorf("%w: websocket handshake: %v", errFraming, err)
	}
	key := req.Header.Get("Sec-WebSocket-Key")
	raw, kerr := base64.StdEncoding.DecodeString(key)
	switch {
	case req.Method != http.MethodGet || !hasToken(req.Header, "Upgrade", "websocket") ||
		!hasToken(req.Header, "Connection", "upgrade") || kerr != nil || len(raw) != 16:
		c.httpError("400 Bad Request", "")
		return fmt.Errorf("%w: not a websocket upgrade", errFraming)
	case req.Header.Get("Sec-WebSocket-Version") != "13":
		c.httpError("426 Upgrade Required", "Sec-WebSocket-Version: 13\r\n")
		return fmt.Errorf("%w: websocket version %q", errFraming, req.Header.Get("Sec-WebSocket-Version"))
	case !hasToken(req.Header, "Sec-WebSocket-Protocol", "sip"):
		c.httpError("400 Bad Request", "")
		return fmt.Errorf("%w: websocket subprotocol sip not offered (RFC 7118)", errFraming)
	}
	sum := sha1.Sum([]byte(key + wsGUID))
	resp := "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Accept: " + base64.StdEncoding.EncodeToString(sum[:]) + "\r\n" +
		"Sec-WebSocket-Protocol: sip\r\n\r\n"
	_, err = io.WriteString(c.nc, resp)
	return err
}

func (c *conn) httpError(status, extra string) {
	_, _ = io.WriteString(c.nc, "HTTP/1.1 "+status+"\r\n"+extra+"Content-Length: 0\r\nConnection: close\r\n\r\n")
}

// hasToken reports whether a comma-separated header lists tok.
func hasToken(hdr http.Header, name, tok string) bool {
	for _, v := range hdr.Values(name) {
		for _, t := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), tok) {
				return true
			}
		}
	}
	return false
}

// readWS reads one WebSocket message (its fragments reassembled), answering
// pings on the way. Its deadline is IdleTimeout until the first byte of a
// data frame, then MessageTimeout for the whole message.
func (c *conn) readWS(br *bufio.Reader) ([]byte, error) {
	h := c.t.h
	var msg []byte
	started := false
	_ = c.nc.SetReadDeadline(time.Now().Add(h.cfg.IdleTimeout))
	for {
		var hdr [2]byte
		if _, err := io.ReadFull(br, hdr[:1]); err != nil {
			return nil, err
		}
		if !started {
			_ = c.nc.SetReadDeadline(time.Now().Add(h.cfg.MessageTimeout))
		}
		if _, err := io.ReadFull(br, hdr[1:]); err != nil {
			return nil, err
		}
		fin, op := hdr[0]&0x80 != 0, hdr[0]&0x0f
		if hdr[0]&0x70 != 0 {
			return nil, wsCloseError{1002, "reserved bits set"}
		}
		if hdr[1]&0x80 == 0 {
			return nil, wsCloseError{1002, "client frame not masked"}
		}
		n := uint64(hdr[1] & 0x7f)
		switch n {
		case 126:
			var b [2]byte
			if _, err := io.ReadFull(br, b[:]); err != nil {
				return nil, err
			}
			n = uint64(binary.BigEndian.Uint16(b[:]))
		case 127:
			var b [8]byte
			if _, err := io.ReadFull(br, b[:]); err != nil {
				return nil, err
			}
			n = binary.BigEndian.Uint64(b[:])
		}
		control := op >= 0x8
		if control && (!fin || n > 125) {
			return nil, wsCloseError{1002, "bad control frame"}
		}
		if !control && uint64(len(msg))+n > uint64(h.maxMsg) {
			return nil, wsCloseError{1009, fmt.Sprintf("message > %d bytes", h.maxMsg)}
		}
		var mask [4]byte
		if _, err := io.ReadFull(br, mask[:]); err != nil {
			return nil, err
		}
		start := len(msg)
		msg = append(msg, make([]byte, n)...)
		payload := msg[start:]
		if _, err := io.ReadFull(br, payload); err != nil {
			return nil, err
		}
		for i := range payload {
			payload[i] ^= mask[i&3]
		}
		if control {
			msg = msg[:start]
			switch op {
			case wsPing:
				h.st.keepalive.Add(1)
				_ = c.enqueueRaw(wsFrame(wsPong, payload))
			case wsPong:
			case wsClose:
				code := uint16(1000)
				if len(payload) >= 2 {
					code = binary.BigEndian.Uint16(payload)
				}
				return nil, wsCloseError{code, "closed by peer"}
			default:
				return nil, wsCloseError{1002, fmt.Sprintf("opcode %#x", op)}
			}
			if !started {
				_ = c.nc.SetReadDeadline(time.Now().Add(h.cfg.IdleTimeout))
			}
			continue
		}
		switch {
		case !started && (op == wsText || op == wsBin), started && op == wsCont:
		default:
			return nil, wsCloseError{1002, fmt.Sprintf("unexpected opcode %#x", op)}
		}
		started = true
		if fin {
			return msg, nil
		}
	}
}

// wsClose sends a close frame and lets the writer close the connection
// once it is written (bounded by WriteTimeout).
func (c *conn) wsClose(code uint16) {
	var p [2]byte
	binary.BigEndian.PutUint16(p[:], code)
	if c.enqueueRaw(wsFrame(wsClose, p[:])) != nil || c.enqueueRaw(nil) != nil {
		return
	}
	t := time.NewTimer(c.t.h.cfg.WriteTimeout)
	defer t.Stop()
	select {
	case <-c.done:
	case <-t.C:
	}
}

// wsOpFor sends valid UTF-8 as a text frame, anything else as binary.
func wsOpFor(b []byte) byte {
	if utf8.Valid(b) {
		return wsText
	}
	return wsBin
}

// wsFrame builds one unmasked final frame (server to client).
func wsFrame(op byte, payload []byte) []byte {
	n := len(payload)
	f := make([]byte, 0, n+10)
	f = append(f, 0x80|op)
	switch {
	case n < 126:
		f = append(f, byte(n))
	case n < 1<<16:
		f = append(f, 126)
		f = binary.BigEndian.AppendUint16(f, uint16(n))
	default:
		f = append(f, 127)
		f = binary.BigEndian.AppendUint64(f, uint64(n))
	}
	return append(f, payload...)
}
