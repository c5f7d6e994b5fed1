package tm

import (
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/asyncsip/asyncsip/reactor"
)

// FuzzRouteSignature: parsing a Route value and checking its signature
// never panics; a value we signed verifies for its dialog from either
// side, and no edit of the Call-ID, the tags or the value's user part
// keeps it valid.
func FuzzRouteSignature(f *testing.F) {
	f.Add("<sip:127.0.0.1:5060;lr;sig=0123456789abcdef>", "call-1", "a1", "b1")
	f.Add("<sip:ft-7f0000019c40-00@127.0.0.1:5070;transport=tcp;lr;sig=>", "c", "", "x")
	f.Add("sip:[::1]:5060;lr;sig=zzzzzzzzzzzzzzzz;sig=1", "\x00", "a", "a")
	g := reactor.NewManualGroup(1, reactor.NewFakeClock(time.Unix(1_700_000_000, 0)))
	s := NewServer(g.Loops(), Config{Security: Security{RouteKey: []byte("fuzz key of sixteen+")}}, Routes{})
	f.Fuzz(func(t *testing.T, value, callID, fromTag, toTag string) {
		var u sip.Uri
		if err := sip.ParseUri(strings.Trim(value, "<>"), &u); err == nil {
			_ = s.routeSigned(&u, callID, fromTag, toTag)
		}
		if callID == "" || fromTag == "" {
			return
		}
		rr := &sip.RecordRouteHeader{Address: sip.Uri{Scheme: "sip", Host: "127.0.0.1", Port: 5060, User: toTag,
			UriParams: sip.HeaderParams{{K: "lr", V: ""}}}}
		rr.Address.UriParams.Add(sigParam, s.routeMAC(callID, fromTag, rr.Address.User))
		if !s.routeSigned(&rr.Address, callID, fromTag, "other") || !s.routeSigned(&rr.Address, callID, "other", fromTag) {
			t.Fatalf("our own signature does not verify for %q/%q", callID, fromTag)
		}
		if s.routeSigned(&rr.Address, callID+"x", fromTag, toTag+"y") && toTag+"y" != fromTag {
			t.Fatalf("a signature verified for another Call-ID")
		}
		u2 := *rr.Address.Clone()
		u2.User += "z"
		if s.routeSigned(&u2, callID, fromTag, fromTag) {
			t.Fatalf("a signature verified for another user part")
		}
	})
}
