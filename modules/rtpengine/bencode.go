package rtpengine

// Bencode, as the ng protocol uses it: byte strings, integers, lists and
// dictionaries. Written here rather than taken from a package because the
// ng protocol needs a small, strict subset with two twists no general
// package handles the way we need: rtpengine sends dictionary keys in
// arrival order (not sorted, as the bencode spec demands), and a decoder
// fed by the network must bound its depth and never allocate more than
// the datagram justifies. Decoded values are string, int64, []any and
// map[string]any.

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
)

// Errors of the bencode decoder.
var (
	// ErrBencode is wrapped by every decoding error.
	ErrBencode = errors.New("rtpengine: malformed bencode")
)

// maxDepth bounds the nesting of lists and dictionaries in a decoded
// message: rtpengine's deepest replies (query) nest five levels.
const maxDepth = 32

// Decode decodes one bencoded value that fills b exactly. Strings become
// string, integers int64, lists []any and dictionaries map[string]any
// (a key given twice keeps its last value). It never panics; every
// failure wraps ErrBencode.
func Decode(b []byte) (any, error) {
	d := decoder{b: b}
	v, err := d.value(0)
	if err != nil {
		return nil, err
	}
	if d.i != len(b) {
		return nil, d.errf("%d trailing bytes", len(b)-d.i)
	}
	return v, nil
}

type decoder struct {
	b []byte
	i int
}

func (d *decoder) errf(format string, args ...any) error {
	return fmt.Errorf("%w at offset %d: %s", ErrBencode, d.i, fmt.Sprintf(format, args...))
}

func (d *decoder) value(depth int) (any, error) {
	if d.i >= len(d.b) {
		return nil, d.errf("unexpected end")
	}
	if depth > maxDepth {
		return nil, d.errf("nested deeper than %d", maxDepth)
	}
	switch c := d.b[d.i]; {
	case c == 'i':
		return d.integer()
	case c == 'l':
		d.i++
		list := []any{}
		for {
			if d.i >= len(d.b) {
				return nil, d.errf("unterminated list")
			}
			if d.b[d.i] == 'e' {
				d.i++
				return list, nil
			}
			v, err := d.value(depth + 1)
			if err != nil {
				return nil, err
			}
			list = append(list, v)
		}
	case c == 'd':
		d.i++
		dict := map[string]any{}
		for {
			if d.i >= len(d.b) {
				return nil, d.errf("unterminated dictionary")
			}
			if d.b[d.i] == 'e' {
				d.i++
				return dict, nil
			}
			k, err := d.str()
			if err != nil {
				return nil, err
			}
			v, err := d.value(depth + 1)
			if err != nil {
				return nil, err
			}
			dict[k] = v
		}
	case c >= '0' && c <= '9':
		return d.str()
	default:
		return nil, d.errf("unexpected byte %q", c)
	}
}

// str decodes <length>:<bytes>.
func (d *decoder) str() (string, error) {
	start := d.i
	n := 0
	for d.i < len(d.b) && d.b[d.i] >= '0' && d.b[d.i] <= '9' {
		if d.i-start >= 9 { // a length of 10 digits exceeds any datagram
			return "", d.errf("string length too long")
		}
		n = n*10 + int(d.b[d.i]-'0')
		d.i++
	}
	if d.i == start {
		return "", d.errf("expected a string")
	}
	if d.i >= len(d.b) || d.b[d.i] != ':' {
		return "", d.errf("expected ':' after a string length")
	}
	d.i++
	if n > len(d.b)-d.i {
		return "", d.errf("string of %d bytes runs past the end", n)
	}
	s := string(d.b[d.i : d.i+n])
	d.i += n
	return s, nil
}

// integer decodes i<digits>e.
func (d *decoder) integer() (int64, error) {
	d.i++ // 'i'
	start := d.i
	for d.i < len(d.b) && d.b[d.i] != 'e' {
		if d.i-start > 20 {
			return 0, d.errf("integer too long")
		}
		d.i++
	}
	if d.i >= len(d.b) {
		return 0, d.errf("unterminated integer")
	}
	digits := d.b[start:d.i]
	d.i++ // 'e'
	if len(digits) == 0 || digits[0] == '+' {
		return 0, d.errf("bad integer %q", digits)
	}
	n, err := strconv.ParseInt(string(digits), 10, 64)
	if err != nil {
		return 0, d.errf("bad integer %q", digits)
	}
	return n, nil
}

// Encode appends the bencoding of v to b. v may be a string, []byte, an
// integer type, bool (as 1 or 0), []string, []any, map[string]any or
// map[string]string, nested freely; dictionary keys are written sorted,
// as the spec asks, so the encoding is deterministic. Any other type is an
// error.
func Encode(b []byte, v any) ([]byte, error) {
	return encode(b, v, 0)
}

func encode(b []byte, v any, depth int) ([]byte, error) {
	if depth > maxDepth {
		return b, fmt.Errorf("rtpengine: bencode: nested deeper than %d", maxDepth)
	}
	switch x := v.(type) {
	case string:
		return appendString(b, x), nil
	case []byte:
		b = strconv.AppendInt(b, int64(len(x)), 10)
		return append(append(b, ':'), x...), nil
	case int:
		return appendInt(b, int64(x)), nil
	case int64:
		return appendInt(b, x), nil
	case int32:
		return appendInt(b, int64(x)), nil
	case uint16:
		return appendInt(b, int64(x)), nil
	case uint32:
		return appendInt(b, int64(x)), nil
	case bool:
		if x {
			return appendInt(b, 1), nil
		}
		return appendInt(b, 0), nil
	case []string:
		b = append(b, 'l')
		for _, s := range x {
			b = appendString(b, s)
		}
		return append(b, 'e'), nil
	case []any:
		b = append(b, 'l')
		for _, e := range x {
			var err error
			if b, err = encode(b, e, depth+1); err != nil {
				return b, err
			}
		}
		return append(b, 'e'), nil
	case map[string]string:
		b = append(b, 'd')
		for _, k := range sortedKeys(x) {
			b = appendString(appendString(b, k), x[k])
		}
		return append(b, 'e'), nil
	case map[string]any:
		b = append(b, 'd')
		for _, k := range sortedKeys(x) {
			var err error
			if b, err = encode(appendString(b, k), x[k], depth+1); err != nil {
				return b, err
			}
		}
		return append(b, 'e'), nil
	}
	return b, fmt.Errorf("rtpengine: bencode: cannot encode %T", v)
}

func appendString(b []byte, s string) []byte {
	b = strconv.AppendInt(b, int64(len(s)), 10)
	return append(append(b, ':'), s...)
}

func appendInt(b []byte, n int64) []byte {
	b = append(b, 'i')
	b = strconv.AppendInt(b, n, 10)
	return append(b, 'e')
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
