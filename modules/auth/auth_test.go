package auth

import (
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Test vectors from RFC 7616 §3.9.1 (HTTP digest; the SIP computation is the
// same with the SIP method and Request-URI).
func TestResponseRFC7616Vectors(t *testing.T) {
	cases := []struct {
		alg   Algorithm
		nonce string
		want  string
	}{
		{MD5, "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", "8ca523f5e9506fed4657c9700eebdbec"},
		{SHA256, "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"},
	}
	for _, tc := range cases {
		t.Run(string(tc.alg), func(t *testing.T) {
			ha1, err := HA1(tc.alg, "Mufasa", "http-auth@example.org", "Circle of Life")
			require.NoError(t, err)
			got, err := Response(Credentials{Algorithm: tc.alg, Nonce: tc.nonce, URI: "/dir/index.html",
				QOP: "auth", NC: "00000001", CNonce: "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ"}, "GET", ha1)
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
		})
	}
}

func TestChallengeVerifyRoundTrip(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	ch := NewChallenger("example.com", []byte("secret"))
	ch.Now = func() time.Time { return now }
	hdrs := ch.Challenge(false, false)
	require.Len(t, hdrs, 2)
	assert.Equal(t, "WWW-Authenticate", hdrs[0].Name())
	assert.Contains(t, hdrs[0].Value(), "algorithm=SHA-256")
	assert.Contains(t, hdrs[1].Value(), "algorithm=MD5")

	nonce := ch.Nonce()
	for _, alg := range []Algorithm{MD5, SHA256} {
		ha1, _ := HA1(alg, "alice", "example.com", "pw")
		cred := Credentials{Username: "alice", Realm: "example.com", Nonce: nonce, URI: "sip:example.com",
			Algorithm: alg, QOP: "auth", NC: "00000001", CNonce: "abc"}
		cred.Response, _ = Response(cred, "REGISTER", ha1)
		require.NoError(t, ch.Verify(cred, "REGISTER", ha1), alg)

		bad := cred
		wrong, _ := HA1(alg, "alice", "example.com", "nope")
		assert.ErrorIs(t, ch.Verify(bad, "REGISTER", wrong), ErrBadResponse)

		forged := cred
		forged.Nonce = NewChallenger("example.com", []byte("other")).Nonce()
		assert.ErrorIs(t, ch.Verify(forged, "REGISTER", ha1), ErrBadNonce)

		realm := cred
		realm.Realm = "evil.com"
		assert.ErrorIs(t, ch.Verify(realm, "REGISTER", ha1), ErrRealm)
	}

	// The nonce goes stale after NonceTTL.
	ha1, _ := HA1(MD5, "alice", "example.com", "pw")
	cred := Credentials{Username: "alice", Realm: "example.com", Nonce: nonce, URI: "sip:example.com", Algorithm: MD5}
	cred.Response, _ = Response(cred, "REGISTER", ha1)
	now = now.Add(6 * time.Minute)
	assert.ErrorIs(t, ch.Verify(cred, "REGISTER", ha1), ErrStale)
}

func TestParse(t *testing.T) {
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
		{"default md5", `Digest username="a", realm="r", nonce="n", uri="u", response="x"`, nil,
			func(t *testing.T, c Credentials) { assert.Equal(t, MD5, c.Algorithm) }},
		{"basic scheme", `Basic YWxhZGRpbjpvcGVuc2VzYW1l`, ErrMalformed, nil},
		{"missing response", `Digest username="a", realm="r", nonce="n", uri="u"`, ErrMalformed, nil},
		{"unterminated", `Digest username="a`, ErrMalformed, nil},
		{"qop without nc", `Digest username="a", realm="r", nonce="n", uri="u", response="x", qop=auth, cnonce="c"`, ErrMalformed, nil},
		{"unknown algorithm", `Digest username="a", realm="r", nonce="n", uri="u", response="x", algorithm=SHA-512-256-sess`, ErrAlgorithm, nil},
		{"no value", `Digest username`, ErrMalformed, nil},
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

func TestFromRequest(t *testing.T) {
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
}

func FuzzParse(f *testing.F) {
	f.Add(`Digest username="alice", realm="example.com", nonce="n1", uri="sip:example.com", response="abc"`)
	f.Add(`Digest a=b,c="d`)
	f.Fuzz(func(t *testing.T, s string) {
		c, err := Parse(s)
		if err == nil && (c.Username == "" || c.Response == "") {
			t.Fatalf("accepted credentials without username/response: %q", s)
		}
	})
}
