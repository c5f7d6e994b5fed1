package auth

import (
	"testing"

	"github.com/emiago/sipgo/sip"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParse(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		in      string
		wantErr error
		check   func(t *testing.T, c Credentials)
	}{
		{"full", `Digest username="alice", realm="example.com", nonce="n1", uri="sip:example.com", response="abc", algorithm=SHA-256, cnonce="c", nc=00000001, qop=auth, opaque="o"`, nil,
			func(t *testing.T, c Credentials) {
				assert.Equal(t, "alice", c.Username)
				assert.Equal(t, SHA256, c.Algorithm)
				assert.Equal(t, "00000001", c.NC)
				assert.Equal(t, "auth", c.QOP)
				assert.Equal(t, "o", c.Opaque)
			}},
		{"comma in quoted uri", `Digest username="a", realm="r", nonce="n", uri="sip:a,b@example.com", response="x"`, nil,
			func(t *testing.T, c Credentials) { assert.Equal(t, "sip:a,b@example.com", c.URI) }},
		{"escaped quote", `Digest username="a\"b\\c", realm="r", nonce="n", uri="u", response="x"`, nil,
			func(t *testing.T, c Credentials) { assert.Equal(t, `a"b\c`, c.Username) }},
		{"tab and spaces", "digest\tusername = \"a\" ,realm=\"r\",nonce=\"n\", uri=\"u\",response=\"x\"", nil,
			func(t *testing.T, c Credentials) { assert.Equal(t, "a", c.Username) }},
		{"unquoted uri", `Digest username="a", realm="r", nonce="n", uri=sip:a@b, response="x"`, nil,
			func(t *testing.T, c Credentials) { assert.Equal(t, "sip:a@b", c.URI) }},
		{"default md5", `Digest username="a", realm="r", nonce="n", uri="u", response="x"`, nil,
			func(t *testing.T, c Credentials) { assert.Equal(t, MD5, c.Algorithm) }},
		{"basic scheme", `Basic YWxhZGRpbjpvcGVuc2VzYW1l`, ErrMalformed, nil},
		{"scheme glued", `Digestusername="a"`, ErrMalformed, nil},
		{"missing response", `Digest username="a", realm="r", nonce="n", uri="u"`, ErrMalformed, nil},
		{"unterminated", `Digest username="a`, ErrMalformed, nil},
		{"trailing backslash", `Digest username="a\`, ErrMalformed, nil},
		{"repeated nonce", `Digest username="a", realm="r", nonce="n", nonce="m", uri="u", response="x"`, ErrMalformed, nil},
		{"CRLF in value", "Digest username=\"a\r\nVia: x\", realm=\"r\", nonce=\"n\", uri=\"u\", response=\"x\"", ErrMalformed, nil},
		{"no comma", `Digest username="a" realm="r", nonce="n", uri="u", response="x"`, ErrMalformed, nil},
		{"qop without nc", `Digest username="a", realm="r", nonce="n", uri="u", response="x", qop=auth, cnonce="c"`, ErrMalformed, nil},
		{"unknown algorithm", `Digest username="a", realm="r", nonce="n", uri="u", response="x", algorithm=SHA-512-256-sess`, ErrAlgorithm, nil},
		{"no value", `Digest username`, ErrMalformed, nil},
		{"empty value", `Digest username=, realm="r"`, ErrMalformed, nil},
		{"too long", "Digest username=\"" + string(make([]byte, maxHeader)) + "\"", ErrMalformed, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse(tc.in)
			if tc.wantErr != nil {
				assert.ErrorIs(t, err, tc.wantErr)
				return
			}
			require.NoError(t, err)
			tc.check(t, c)
		})
	}
}

func TestCredentialsStringRoundTrip(t *testing.T) {
	t.Parallel()
	c := Credentials{Username: `we"ird\name`, Realm: "r", Nonce: "n", URI: "sip:a,b@example.com", Response: "abc",
		Algorithm: SHA256, CNonce: "c n", NC: "00000001", QOP: "auth", Opaque: "o"}
	got, err := Parse(c.String())
	require.NoError(t, err)
	assert.Equal(t, c, got)
}

func TestParseChallenge(t *testing.T) {
	t.Parallel()
	o, err := ParseChallenge(`Digest realm="example.com", nonce="abc", algorithm=SHA-256, qop="auth,auth-int", stale=TRUE, opaque="x"`)
	require.NoError(t, err)
	assert.Equal(t, Offer{Realm: "example.com", Nonce: "abc", Opaque: "x", Algorithm: SHA256,
		QOP: []string{"auth", "auth-int"}, Stale: true}, o)
	_, err = ParseChallenge(`Digest realm="example.com"`)
	assert.ErrorIs(t, err, ErrMalformed)
	_, err = ParseChallenge(`Digest realm="r", nonce="n", algorithm=MD5-sess`)
	assert.ErrorIs(t, err, ErrAlgorithm)
}

func TestFromRequest(t *testing.T) {
	t.Parallel()
	req := sip.NewRequest(sip.REGISTER, sip.Uri{Scheme: "sip", Host: "example.com"})
	_, ok, err := FromRequest(req, false)
	assert.False(t, ok)
	assert.NoError(t, err)
	req.AppendHeader(sip.NewHeader("Authorization", `Digest username="a", realm="other", nonce="n", uri="u", response="x"`))
	req.AppendHeader(sip.NewHeader("Authorization", `Digest username="a", realm="example.com", nonce="n", uri="u", response="x"`))
	c, ok, err := FromRequest(req, false, "example.com")
	require.NoError(t, err)
	assert.True(t, ok)
	assert.Equal(t, "example.com", c.Realm)
	_, ok, _ = FromRequest(req, true)
	assert.False(t, ok, "no Proxy-Authorization")

	a, ok, err := NewAttempt(req, alice, false, "example.com")
	require.NoError(t, err)
	assert.True(t, ok)
	assert.Equal(t, "REGISTER", a.Method)
	assert.Equal(t, "sip:example.com", a.RequestURI)
	assert.Equal(t, alice, a.Source)
}

// FuzzParse: no input crashes Parse, and what it accepts it formats back
// to an equal value with no control characters (no header injection).
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		`Digest username="alice", realm="example.com", nonce="n1", uri="sip:example.com", response="abc"`,
		`Digest username="a\"b", realm="r", nonce="n", uri="sip:a,b@x", response="x", algorithm=SHA-256, qop=auth, nc=00000001, cnonce="c", opaque="o"`,
		"digest\tusername=a, realm=r, nonce=n, uri=sip:x, response=x",
		`Digest a=b,c="d`,
		`Digest username="a\`,
		`Digest ,,, username="a"`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := Parse(s)
		if err != nil {
			return
		}
		if c.Username == "" || c.Response == "" || c.Nonce == "" || c.URI == "" {
			t.Fatalf("accepted credentials without a required field: %q", s)
		}
		out := c.String()
		for i := 0; i < len(out); i++ {
			if out[i] < 0x20 && out[i] != '\t' || out[i] == 0x7f {
				t.Fatalf("control character in %q", out)
			}
		}
		back, err := Parse(out)
		if err != nil {
			t.Fatalf("Parse(%q) accepted, its String %q refused: %v", s, out, err)
		}
		if back != c {
			t.Fatalf("round trip changed %+v into %+v", c, back)
		}
	})
}

// FuzzParseChallenge: no input crashes ParseChallenge, and an accepted
// challenge has a realm, a nonce and a usable algorithm.
func FuzzParseChallenge(f *testing.F) {
	for _, s := range []string{
		`Digest realm="example.com", nonce="abc", algorithm=SHA-256, qop="auth"`,
		`Digest realm="r", nonce="n", qop="auth,auth-int", stale=true, opaque="o"`,
		`Digest realm="r", nonce="n", algorithm=MD5-sess`,
		`Digest realm="r`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		o, err := ParseChallenge(s)
		if err != nil {
			return
		}
		if o.Realm == "" || o.Nonce == "" {
			t.Fatalf("accepted a challenge without realm or nonce: %q", s)
		}
		if _, err := o.Answer("u", "p", "REGISTER", "sip:x", 1, "c"); err != nil {
			t.Fatalf("accepted a challenge that cannot be answered: %q: %v", s, err)
		}
	})
}
