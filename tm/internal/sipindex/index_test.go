package sipindex

import (
	"errors"
	"strings"
	"testing"
)

const invite = "INVITE sip:bob@biloxi.example.com SIP/2.0\r\n" +
	"Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds;rport\r\n" +
	"Via: SIP/2.0/TCP [2001:db8::1]:5061;branch=z9hG4bKold, SIP/2.0/UDP 192.0.2.4;branch=z9hG4bK2\r\n" +
	"Max-Forwards: 70\r\n" +
	"To: Bob <sip:bob@biloxi.example.com>\r\n" +
	"From: \"Alice; <the first>\" <sip:alice@atlanta.example.com>;tag=1928301774\r\n" +
	"Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n" +
	"CSeq: 314159 INVITE\r\n" +
	"Route: <sip:p1.example.com;lr>\r\n" +
	"Record-Route: <sip:p2.example.com;lr>\r\n" +
	"Contact: <sip:alice@pc33.atlanta.example.com>\r\n" +
	"Content-Type: application/sdp\r\n" +
	"Content-Length: 4\r\n" +
	"\r\n" +
	"v=0\n"

func TestIndexReadsTheTransactionHeaders(t *testing.T) {
	var ix Index
	if err := ix.Parse([]byte(invite), Limits{}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ what, want, got string }{
		{"method", "INVITE", ix.String(ix.Method)},
		{"Request-URI", "sip:bob@biloxi.example.com", ix.String(ix.RequestURI)},
		{"Call-ID", "a84b4c76e66710@pc33.atlanta.example.com", ix.String(ix.CallID)},
		{"CSeq method", "INVITE", ix.String(ix.CSeqMethod)},
		{"From tag", "1928301774", ix.String(ix.FromTag)},
		{"To tag", "", ix.String(ix.ToTag)},
		{"top Via", "SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds;rport", ix.String(ix.TopVia)},
		{"branch", "z9hG4bK776asdhds", ix.String(ix.Branch)},
		{"body", "v=0\n", ix.String(ix.Body)},
	} {
		if c.want != c.got {
			t.Errorf("%s: want %q, got %q", c.what, c.want, c.got)
		}
	}
	if !ix.Request || ix.CSeq != 314159 || ix.MaxForwards != 70 || ix.ContentLength != 4 {
		t.Errorf("request %v CSeq %d Max-Forwards %d Content-Length %d", ix.Request, ix.CSeq, ix.MaxForwards, ix.ContentLength)
	}
	if ix.Vias != 3 || ix.Routes != 1 || ix.RecordRoutes != 1 || len(ix.Fields) != 12 {
		t.Errorf("Vias %d Routes %d Record-Routes %d fields %d", ix.Vias, ix.Routes, ix.RecordRoutes, len(ix.Fields))
	}
	if f, ok := ix.Find(KindContact); !ok || ix.String(f.Value) != "<sip:alice@pc33.atlanta.example.com>" {
		t.Errorf("Contact: %v %q", ok, ix.String(f.Value))
	}
}

func TestIndexResponseCompactFormsAndFolding(t *testing.T) {
	msg := "SIP/2.0 180 Ringing\r\n" +
		"v: SIP/2.0/UDP 10.0.0.1:5060 ;\r\n  BRANCH = z9hG4bKx\r\n" +
		"f: <sip:a@b>;tag=1\r\n" +
		"t: <sip:b@c>;TAG=2\r\n" +
		"i: abc\r\n" +
		"CSeq: 7\r\n\tINVITE\r\n" +
		"l: 0\r\n\r\n"
	var ix Index
	if err := ix.Parse([]byte(msg), Limits{}); err != nil {
		t.Fatal(err)
	}
	if ix.Request || ix.Status != 180 || ix.String(ix.Reason) != "Ringing" {
		t.Errorf("status %d reason %q", ix.Status, ix.String(ix.Reason))
	}
	if ix.String(ix.Branch) != "z9hG4bKx" || ix.String(ix.ToTag) != "2" || ix.String(ix.CallID) != "abc" || ix.CSeq != 7 || ix.String(ix.CSeqMethod) != "INVITE" {
		t.Errorf("branch %q To tag %q Call-ID %q CSeq %d %q", ix.String(ix.Branch), ix.String(ix.ToTag), ix.String(ix.CallID), ix.CSeq, ix.String(ix.CSeqMethod))
	}
	f, _ := ix.Find(KindCSeq)
	if !f.Folded || string(ix.Value(f)) != "7 INVITE" {
		t.Errorf("folded CSeq: %v %q", f.Folded, ix.Value(f))
	}
}

func TestIndexRefusesWithAClearError(t *testing.T) {
	base := strings.Split(invite, "\r\n")
	with := func(i int, line string) string {
		l := append([]string(nil), base...)
		l[i] = line
		return strings.Join(l, "\r\n")
	}
	without := func(i int) string {
		l := append(append([]string(nil), base[:i]...), base[i+1:]...)
		return strings.Join(l, "\r\n")
	}
	for _, c := range []struct {
		name, msg string
		err       error
		text      string
	}{
		{"short", "INVITE", ErrMalformed, "6 bytes"},
		{"version", with(0, "INVITE sip:bob@biloxi.example.com SIP/7.0"), ErrVersion, "SIP/7.0"},
		{"scheme", with(0, "INVITE nope:bob SIP/2.0"), ErrUnsupportedScheme, "nope"},
		{"uri headers", with(0, "INVITE sip:bob@b?Subject=x SIP/2.0"), ErrMalformed, "headers"},
		{"no Via", without(1), nil, ""}, // two Vias remain
		{"no Call-ID", without(6), ErrMissingHeader, "Call-ID"},
		{"no CSeq", without(7), ErrMissingHeader, "CSeq"},
		{"two CSeq", with(8, "CSeq: 1 INVITE"), ErrMalformed, "repeated"},
		{"CSeq method", with(7, "CSeq: 1 BYE"), ErrMalformed, "differs"},
		{"Max-Forwards", with(3, "Max-Forwards: 700"), ErrMalformed, "Max-Forwards"},
		{"Content-Length", with(12, "Content-Length: 99"), ErrBadCLength, "99"},
		{"bare LF", with(6, "Call-ID: a\nVia: SIP/2.0/UDP evil"), ErrMalformed, "bare LF"},
		{"bad Via", with(1, "Via: SIP/2.0/UDP ;branch=z9hG4bKx"), ErrMalformed, "sent-by"},
		{"tag garbage", with(5, "From: <sip:a@b>tag=1"), ErrMalformed, "after the address"},
		{"quote", with(5, "From: <sip:a@b>;tag=\"1"), ErrMalformed, "unterminated"},
		{"no colon", with(9, "Route"), ErrMalformed, "without a colon"},
		{"bad name", with(9, "Route <sip:p1>"), ErrMalformed, "in header name"},
		{"no end", strings.TrimSuffix(invite, "\r\nv=0\n"), ErrMalformed, "empty line"},
	} {
		var ix Index
		err := ix.Parse([]byte(c.msg), Limits{})
		if c.err == nil {
			if err != nil {
				t.Errorf("%s: %v", c.name, err)
			}
			continue
		}
		if !errors.Is(err, c.err) || !strings.Contains(err.Error(), c.text) {
			t.Errorf("%s: want %v naming %q, got %v", c.name, c.err, c.text, err)
		}
	}
}

func TestIndexLimits(t *testing.T) {
	var ix Index
	if err := ix.Parse([]byte(invite), Limits{MaxMessage: 100}); !errors.Is(err, ErrTooLarge) {
		t.Errorf("size: %v", err)
	}
	if err := ix.Parse([]byte(invite), Limits{MaxHeaders: 5}); !errors.Is(err, ErrTooManyHdrs) {
		t.Errorf("headers: %v", err)
	}
	if err := ix.Parse([]byte(invite), Limits{MaxVias: 2}); !errors.Is(err, ErrTooManyVias) {
		t.Errorf("vias: %v", err)
	}
}

// TestIndexAllocatesNothing: a reused Index indexes a message with no
// allocation (the point of the indexer).
func TestIndexAllocatesNothing(t *testing.T) {
	var ix Index
	data := []byte(invite)
	if err := ix.Parse(data, Limits{}); err != nil {
		t.Fatal(err)
	}
	if n := testing.AllocsPerRun(100, func() { _ = ix.Parse(data, Limits{}) }); n != 0 {
		t.Errorf("%v allocations per Parse", n)
	}
}

func BenchmarkIndexInvite(b *testing.B) {
	var ix Index
	data := []byte(invite)
	b.ReportAllocs()
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if err := ix.Parse(data, Limits{}); err != nil {
			b.Fatal(err)
		}
	}
}
