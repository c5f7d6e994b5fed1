package tm

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Regression tests for the parser-seam repairs and stateless rejections
// that the RFC 4475 / RFC 5118 torture messages called for (torture_test.go
// runs the messages themselves).

func TestCompactSWS(t *testing.T) {
	cases := []struct{ in, want string }{
		{"sip:a@b ;   tag    = 1918181833n", "sip:a@b;tag=1918181833n"},
		{`"J Rosenberg \\\""       <sip:j@example.com>  ;  tag = 98`, `"J Rosenberg \\\"" <sip:j@example.com>;tag=98`},
		{`"a ; b = c" <sip:x> ; q = 0.5`, `"a ; b = c" <sip:x>;q=0.5`},
		{"SIP  /   2.0  /UDP    192.0.2.2;branch=390skdjuw", "SIP/2.0/UDP 192.0.2.2;branch=390skdjuw"},
		{"SIP/2.0/TCP a;branch=x  ,  SIP/2.0/UDP b", "SIP/2.0/TCP a;branch=x,SIP/2.0/UDP b"},
		{"SIP/2.0/UDP\t1.2.3.4", "SIP/2.0/UDP 1.2.3.4"},
	}
	for _, c := range cases {
		assert.Equal(t, c.want, compactSWS(c.in), c.in)
		assert.True(t, hasLooseSWS([]byte(c.in)), c.in)
	}
	for _, v := range []string{"SIP/2.0/UDP 1.2.3.4:5060;branch=z9hG4bK1", `"Alice Smith" <sip:a@b>;tag=1`, "<sip:p1;lr>"} {
		assert.Equal(t, v, compactSWS(v))
		assert.False(t, hasLooseSWS([]byte(v)), v)
	}
}

func TestRepairSWSCostsNothingOnCleanMessages(t *testing.T) {
	raw := []byte(invite("sws", "z9hG4bK-sws"))
	allocs := testing.AllocsPerRun(100, func() {
		if got := repairSWS(raw); &got[0] != &raw[0] {
			t.Fatal("a clean message was copied")
		}
	})
	assert.Zero(t, allocs)
}

// Methods are case-sensitive: "invite" is an extension method, not INVITE,
// and it is forwarded as written (sipgo upper-cases it).
func TestLowercaseMethodKept(t *testing.T) {
	r := newTortureRig(t)
	raw := strings.Replace(strings.Replace(invite("lc", "z9hG4bK-lc"), "INVITE sip:", "invite sip:", 1), "CSeq: 1 INVITE", "CSeq: 1 invite", 1)
	r.s.Receive(r.l, []byte(raw), uacAddr, r.v4)
	r.l.RunPending()
	out := r.take()
	require.Len(t, out, 1, "no 100 Trying, not an INVITE: %s", describe(out))
	assert.Equal(t, "invite sip:bob@127.0.0.1:5062 SIP/2.0", firstLine(out[0].b))
	assert.Contains(t, string(out[0].b), "CSeq: 1 invite\r\n")
	r.drained(t)
}

// No next hop is a broadcast, multicast or unspecified address.
func TestNoBroadcastNextHop(t *testing.T) {
	for _, target := range []string{"sip:x@255.255.255.255", "sip:x@224.0.0.1", "sip:x@0.0.0.0"} {
		var err error
		r := newRig(t, Config{}, Routes{Request: func(c *Context) { err = c.Relay(target) }})
		r.recv(uacAddr, request("MESSAGE", "sip:bob@127.0.0.1:5062", "bc-"+target, "z9hG4bK-bc", 1, ""))
		r.expect("127.0.0.1:5061 503")
		assert.ErrorIs(t, err, ErrNoRoute, target)
	}
}

func TestRawRejection(t *testing.T) {
	base := "BADVIA sip:b@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5061;;,;,,\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:b@c>\r\n" +
		"Call-ID: raw-1\r\nCSeq: 1 BADVIA\r\nX-Pad: " + strings.Repeat("p", 80) + "\r\nContent-Length: 0\r\n\r\n"
	cases := []struct {
		name, raw string
		want      []string
	}{
		{"unparsable Via: 400 from the raw lines", base, []string{"127.0.0.1:5061 400"}},
		{"other version: 505", strings.Replace(base, " SIP/2.0\r\n", " SIP/3.0\r\n", 1), []string{"127.0.0.1:5061 505"}},
		{"bare LF in a copied value: no answer", strings.Replace(base, "Call-ID: raw-1", "Call-ID: raw\n-1", 1), nil},
		{"no Call-ID: no answer", strings.Replace(base, "Call-ID: raw-1\r\n", "", 1), nil},
		{"ACK: never answered", strings.Replace(base, "BADVIA sip:", "ACK sip:", 1), nil},
		{"larger than the request: no answer", "X sip:b@c SIP/2.0\r\nv: SIP/2.0/UDP 127.0.0.1:5061;;,;,,\r\nf: <sip:a@b>;tag=1\r\nt: <sip:b@c>\r\ni: raw-1\r\nCSeq: 1 X\r\n\r\n", nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := newTortureRig(t)
			r.s.Receive(r.l, []byte(tc.raw), uacAddr, r.v4)
			r.l.RunPending()
			out := r.take()
			var got []string
			for _, s := range out {
				got = append(got, s.to.String()+" "+firstLine(s.b)[8:11])
				assert.LessOrEqual(t, len(s.b), len(tc.raw))
				assert.Contains(t, string(s.b), "i: raw-1\r\n")
				assert.Contains(t, string(s.b), "t: <sip:b@c>;tag=")
			}
			assert.Equal(t, tc.want, got)
			r.drained(t)
		})
	}
}

// hasLooseSWS's fast path (no quoted string) agrees with the full scan.
func TestHasLooseSWSFastPath(t *testing.T) {
	for _, v := range []string{
		"", " ", "a", "a b", "a ;b", "a; b", "a;b", "SIP/2.0/UDP h:1;branch=x", "SIP/2.0 /UDP h",
		"<sip:a@b>;tag=1", "<sip:a@b> ;tag=1", "a  b", "a\tb", "a b ", "x= y", "x =y", "a,b", "a , b",
	} {
		// A quoted string at the end takes the full scan over the same
		// prefix: the verdicts must match.
		want := hasLooseSWS([]byte(v + `"q"`))
		if got := hasLooseSWS([]byte(v)); got != want && !strings.HasSuffix(v, " ") {
			t.Errorf("%q: fast path %v, full scan %v", v, got, want)
		}
	}
}
