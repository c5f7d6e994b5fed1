package tm

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"strings"
	"testing"

	"github.com/emiago/sipgo/sip"
)

// refViaHop and refMAC are the identifier formats written out plainly: the
// allocation-free builders in ids.go and recordroute.go must produce the
// same bytes (a persistent RouteKey keeps dialogs across a restart only if
// the signature does not change).
func refViaHop(v *sip.ViaHeader) string {
	br, _ := v.Params.Get("branch")
	host := v.Host
	if r, ok := v.Params.Get("received"); ok && r != "" {
		host = r
	}
	port := strconv.Itoa(v.Port)
	if rp, ok := v.Params.Get("rport"); ok && rp != "" {
		port = rp
	}
	return br + "|" + strings.ToUpper(v.Transport) + "|" + stripBrackets(host) + "|" + port
}

// refMAC is the hex of the first 8 bytes of the HMAC of parts joined by
// zero bytes (and ended by one when trailing0: the Record-Route MAC).
func refMAC(key []byte, trailing0 bool, parts ...string) string {
	m := hmac.New(sha256.New, key)
	for i, p := range parts {
		m.Write([]byte(p))
		if i < len(parts)-1 || trailing0 {
			m.Write([]byte{0})
		}
	}
	return hex.EncodeToString(m.Sum(nil)[:8])
}

func TestIdentifierFormats(t *testing.T) {
	key := []byte("0123456789abcdef0123456789abcdef")
	s := NewServer(nil, Config{Security: Security{RouteKey: key}}, Routes{})
	ls := &loopState{ids: newIDSource(key)}
	vias := []*sip.ViaHeader{
		{Transport: "udp", Host: "192.0.2.1", Port: 5060, Params: sip.HeaderParams{{K: "branch", V: "z9hG4bK1"}}},
		{Transport: "TCP", Host: "[2001:db8::1]", Port: 5070,
			Params: sip.HeaderParams{{K: "branch", V: "z9hG4bKx"}, {K: "received", V: "[2001:db8::2]"}, {K: "rport", V: "6000"}}},
		{Transport: "wſs", Host: "h", Params: sip.HeaderParams{{K: "rport", V: ""}}}, // non-ASCII: ToUpper's result
	}
	for _, v := range vias {
		if got, want := string(appendViaHop(nil, v)), refViaHop(v); got != want {
			t.Errorf("hop %q, want %q", got, want)
		}
		br := s.newBranch(ls, v)
		prefix := "z9hG4bK" + s.tag + "."
		if !s.ours(br) || !strings.HasPrefix(br, prefix) || s.branchKind(br) != 'b' {
			t.Fatalf("branch %q has not our shape", br)
		}
		kid := br[len(prefix) : len(br)-macHex]
		if mac := br[len(br)-macHex:]; mac != refMAC(key, false, kid, refViaHop(v)) {
			t.Errorf("branch %q: MAC, want %s", br, refMAC(key, false, kid, refViaHop(v)))
		}
		if !s.verifyBranch(ls, br, v) || s.verifyBranch(ls, br, vias[(indexOf(vias, v)+1)%len(vias)]) {
			t.Errorf("branch %q: verifies against the wrong Vias", br)
		}
		sb := s.statelessBranch(ls, v, "sip:bob@example.com")
		inBr, _ := v.Params.Get("branch")
		id := refMAC(key, false, "s-id", inBr+"|sip:bob@example.com")
		if want := prefix + "s" + id + refMAC(key, false, "s"+id, refViaHop(v)); sb != want {
			t.Errorf("stateless branch %q, want %q", sb, want)
		}
		if !s.verifyBranch(ls, sb, v) {
			t.Errorf("stateless branch %q does not verify", sb)
		}
	}
	if a, b := s.toTag(ls), s.toTag(ls); a == b || len(a) != len(s.tag)+idHex || !strings.HasPrefix(a, s.tag) {
		t.Errorf("to tags %q, %q", a, b)
	}
	rrKey, _ := deriveKeys(key)
	for _, p := range [][3]string{{"call-1", "tagA", ""}, {"c@h", "", "ft-x"}, {strings.Repeat("x", 5000), "t", "u"}} {
		want := refMAC(rrKey, true, p[0], p[1], p[2])
		for i := 0; i < 3; i++ { // pooled state reused
			if got := s.routeMAC(p[0], p[1], p[2]); got != want {
				t.Errorf("routeMAC(%q…) %q, want %q", p[0][:min(len(p[0]), 10)], got, want)
			}
		}
	}
}

func indexOf(vs []*sip.ViaHeader, v *sip.ViaHeader) int {
	for i := range vs {
		if vs[i] == v {
			return i
		}
	}
	return -1
}
