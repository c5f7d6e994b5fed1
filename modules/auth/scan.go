package auth

import (
	"fmt"
	"strings"
)

// parseDigest reads `Digest k=v, k="v", …` and calls set once per
// parameter with the lower-cased key and the unquoted value. Keys are
// tokens; values are tokens or quoted strings with backslash escapes
// (RFC 3261 §25.1). It refuses control characters, repeated keys, an
// over-long value and anything it cannot read unambiguously.
func parseDigest(value string, set func(key, val string)) error {
	if len(value) > maxHeader {
		return fmt.Errorf("%w: %d bytes", ErrMalformed, len(value))
	}
	s := strings.TrimLeft(value, " \t")
	i := 0
	for i < len(s) && isTokenChar(s[i]) {
		i++
	}
	if !strings.EqualFold(s[:i], "Digest") || (i < len(s) && s[i] != ' ' && s[i] != '\t') {
		return fmt.Errorf("%w: scheme is not Digest", ErrMalformed)
	}
	seen := make(map[string]bool, 10)
	p := scanner{s: s, i: i}
	for {
		p.skipSpace()
		if p.done() {
			return nil
		}
		key, val, err := p.param()
		if err != nil {
			return err
		}
		if seen[key] {
			return fmt.Errorf("%w: %s repeated", ErrMalformed, key)
		}
		seen[key] = true
		set(key, val)
		p.skipSpace()
		if p.done() {
			return nil
		}
		if p.s[p.i] != ',' {
			return fmt.Errorf("%w: expected ',' after %s", ErrMalformed, key)
		}
		p.i++
	}
}

// scanner walks a header value.
type scanner struct {
	s string
	i int
}

func (p *scanner) done() bool { return p.i >= len(p.s) }

func (p *scanner) skipSpace() {
	for p.i < len(p.s) && (p.s[p.i] == ' ' || p.s[p.i] == '\t') {
		p.i++
	}
}

// param reads `key = value`.
func (p *scanner) param() (key, val string, err error) {
	start := p.i
	for p.i < len(p.s) && isTokenChar(p.s[p.i]) {
		p.i++
	}
	key = strings.ToLower(p.s[start:p.i])
	if key == "" {
		return "", "", fmt.Errorf("%w: expected a parameter name at byte %d", ErrMalformed, start)
	}
	p.skipSpace()
	if p.done() || p.s[p.i] != '=' {
		return "", "", fmt.Errorf("%w: parameter %s without value", ErrMalformed, key)
	}
	p.i++
	p.skipSpace()
	if !p.done() && p.s[p.i] == '"' {
		val, err = p.quoted(key)
		return key, val, err
	}
	start = p.i // unquoted: a token, leniently anything up to ',' or space
	for p.i < len(p.s) && isBareChar(p.s[p.i]) {
		p.i++
	}
	if p.i == start {
		return "", "", fmt.Errorf("%w: parameter %s without value", ErrMalformed, key)
	}
	return key, p.s[start:p.i], nil
}

// quoted reads a quoted string starting at p.i (the opening quote).
func (p *scanner) quoted(key string) (string, error) {
	p.i++
	var b strings.Builder
	for p.i < len(p.s) {
		ch := p.s[p.i]
		switch {
		case ch == '"':
			p.i++
			return b.String(), nil
		case ch == '\\' && p.i+1 < len(p.s):
			ch = p.s[p.i+1]
			p.i++
		case ch == '\\':
			return "", fmt.Errorf("%w: unterminated quoted value for %s", ErrMalformed, key)
		}
		if ch < 0x20 && ch != '\t' || ch == 0x7f {
			return "", fmt.Errorf("%w: control character in %s", ErrMalformed, key)
		}
		b.WriteByte(ch)
		p.i++
	}
	return "", fmt.Errorf("%w: unterminated quoted value for %s", ErrMalformed, key)
}

// isTokenChar reports whether ch may appear in an RFC 3261 token.
func isTokenChar(ch byte) bool {
	switch {
	case 'a' <= ch && ch <= 'z', 'A' <= ch && ch <= 'Z', '0' <= ch && ch <= '9':
		return true
	}
	return strings.IndexByte("-.!%*_+`'~", ch) >= 0
}

// isBareChar reports whether ch may appear in an unquoted value: any
// visible character but the separators that would make it ambiguous.
func isBareChar(ch byte) bool {
	return ch > 0x20 && ch < 0x7f && ch != ',' && ch != '"' && ch != '\\'
}

func isToken(s string) bool {
	for i := 0; i < len(s); i++ {
		if !isTokenChar(s[i]) {
			return false
		}
	}
	return s != ""
}
