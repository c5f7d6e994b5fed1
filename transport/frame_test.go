package transport

import (
	"bufio"
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestContentLength(t *testing.T) {
	cases := map[string]struct {
		head    string
		want    int
		framing bool // a framing error is expected
	}{
		"none":                {"OPTIONS sip:a SIP/2.0\r\nCall-ID: x\r\n\r\n", 0, false},
		"plain":               {"MESSAGE sip:a SIP/2.0\r\nContent-Length: 12\r\n\r\n", 12, false},
		"compact, spaces":     {"MESSAGE sip:a SIP/2.0\r\nl :  7 \r\n\r\n", 7, false},
		"case":                {"MESSAGE sip:a SIP/2.0\r\ncontent-length: 3\r\n\r\n", 3, false},
		"same value twice":    {"MESSAGE sip:a SIP/2.0\r\nContent-Length: 3\r\nl: 3\r\n\r\n", 3, false},
		"two values":          {"MESSAGE sip:a SIP/2.0\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n", 0, true},
		"negative":            {"MESSAGE sip:a SIP/2.0\r\nContent-Length: -1\r\n\r\n", 0, true},
		"empty":               {"MESSAGE sip:a SIP/2.0\r\nContent-Length:\r\n\r\n", 0, true},
		"ten digits":          {"MESSAGE sip:a SIP/2.0\r\nContent-Length: 1000000000\r\n\r\n", 0, true},
		"not a number":        {"MESSAGE sip:a SIP/2.0\r\nContent-Length: 1e3\r\n\r\n", 0, true},
		"other header with l": {"MESSAGE sip:a SIP/2.0\r\nlx: 5\r\n\r\n", 0, false},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			n, err := contentLength([]byte(tc.head))
			if tc.framing {
				require.ErrorIs(t, err, errFraming)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, n)
		})
	}
}

func TestReadHead(t *testing.T) {
	cases := map[string]struct {
		in      string
		max     int
		want    string
		framing bool
	}{
		"one message":      {"A\r\nB: c\r\n\r\nbody", 100, "A\r\nB: c\r\n\r\n", false},
		"bare LF":          {"A\nB: c\n\nbody", 100, "A\nB: c\n\n", false},
		"over the bound":   {"A\r\nB: " + strings.Repeat("c", 200) + "\r\n\r\n", 64, "", true},
		"longer than read": {"A\r\nB: " + strings.Repeat("c", 5000) + "\r\n\r\n", 8000, "A\r\nB: " + strings.Repeat("c", 5000) + "\r\n\r\n", false},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			head, err := readHead(bufio.NewReaderSize(strings.NewReader(tc.in), 16), tc.max)
			if tc.framing {
				require.ErrorIs(t, err, errFraming)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, string(head))
		})
	}
}

// Framing never panics and never returns a header section larger than its
// bound or a negative length, whatever the peer sends.
func FuzzFraming(f *testing.F) {
	f.Add([]byte("INVITE sip:b SIP/2.0\r\nContent-Length: 4\r\n\r\nbody"), 64)
	f.Add([]byte("\r\n\r\nl: 99999\r\n\n"), 16)
	f.Add([]byte("A\r\nContent-Length: 1\r\nl: 2\r\n\r\n"), 1024)
	f.Fuzz(func(t *testing.T, in []byte, max int) {
		if max <= 0 || max > 1<<16 {
			return
		}
		head, err := readHead(bufio.NewReaderSize(strings.NewReader(string(in)), 16), max)
		if err != nil {
			return
		}
		if len(head) > max {
			t.Fatalf("header section of %d bytes > bound %d", len(head), max)
		}
		n, err := contentLength(head)
		if err != nil && !errors.Is(err, errFraming) {
			t.Fatalf("contentLength: %v is not a framing error", err)
		}
		if n < 0 {
			t.Fatalf("negative length %d", n)
		}
	})
}

// The inbox keeps a connection's messages in order across growth and
// wrap-around, and dropLast removes only the message just pushed.
func TestInboxOrder(t *testing.T) {
	var q inbox
	next, want := 0, 0
	push := func() { q.push([]byte{byte(next)}); next++ }
	pop := func() {
		got := q.pop()
		require.Equal(t, []byte{byte(want)}, got)
		want++
	}
	for range 3 {
		push()
	}
	pop()
	for range 10 { // grows from 4 while the head is not at 0
		push()
	}
	pop()
	pop()
	push()
	q.dropLast() // its task could not be posted
	next--
	for q.n > 0 {
		pop()
	}
	require.Equal(t, next, want, "every message popped once, in order")
	for range 40 { // wraps around without growing past what is queued
		push()
		pop()
	}
	require.LessOrEqual(t, len(q.buf), inflight)
}
