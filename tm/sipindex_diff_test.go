package tm

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/emiago/sipgo/sip"

	"github.com/asyncsip/asyncsip/tm/internal/sipindex"
)

// The indexer (tm/internal/sipindex) against the parser seam of today
// (sipgo's parser, tm's repairs and Validate): same verdict, same values of
// the headers the transaction layer reads.

// indexVerdictDiffers lists the messages on which the two disagree, each
// with the reason the indexer's verdict is the right one. Every entry must
// still disagree (a stale entry fails the test).
var indexVerdictDiffers = map[string]string{
	// From: <sip:alice 000000000>: sipgo takes "alice 000000000" as the
	// host; RFC 3261 §25.1 allows no whitespace in a host.
	"c353f5ae482c16f2": "whitespace inside a From URI's host",
}

// diffCorpus returns every message of the RFC 4475 and RFC 5118 tables and
// of the fuzz seed corpus, by name.
func diffCorpus(t testing.TB) map[string][]byte {
	out := map[string][]byte{}
	for _, pat := range []string{
		filepath.Join("testdata", "rfc4475", "valid", "*.dat"),
		filepath.Join("testdata", "rfc4475", "invalid", "*.dat"),
		filepath.Join("testdata", "rfc5118", "*.dat"),
		filepath.Join("testdata", "fuzz", "seed", "*.sip"),
	} {
		files, err := filepath.Glob(pat)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range files {
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			out[p] = b
		}
	}
	files, _ := filepath.Glob(filepath.Join("testdata", "fuzz", "FuzzRequestPath", "*"))
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if data, ok := fuzzFileBytes(b); ok {
			out[p] = data
		}
	}
	if len(out) < 60 {
		t.Fatalf("corpus has %d messages; the testdata folders moved?", len(out))
	}
	return out
}

// fuzzFileBytes reads the one []byte argument of a "go test fuzz v1" file.
func fuzzFileBytes(b []byte) ([]byte, bool) {
	lines := strings.SplitN(string(b), "\n", 3)
	if len(lines) < 2 || lines[0] != "go test fuzz v1" {
		return nil, false
	}
	arg := strings.TrimSpace(lines[1])
	if !strings.HasPrefix(arg, "[]byte(") || !strings.HasSuffix(arg, ")") {
		return nil, false
	}
	s, err := strconv.Unquote(arg[len("[]byte(") : len(arg)-1])
	if err != nil {
		return nil, false
	}
	return []byte(s), true
}

// seamVerdict runs today's seam on data.
func seamVerdict(data []byte) (sip.Message, error) {
	msg, err := parse(newParser(Limits{}), data, Limits{})
	if err != nil {
		return nil, err
	}
	if err := validate(msg, Limits{}); err != nil {
		return nil, err
	}
	return msg, nil
}

func TestIndexMatchesParserOnCorpora(t *testing.T) {
	var ix sipindex.Index
	seen := map[string]bool{}
	agreeOK, agreeBad := 0, 0
	for name, data := range diffCorpus(t) {
		base := filepath.Base(name)
		msg, perr := seamVerdict(data)
		ierr := ix.Parse(data, sipindex.Limits{})
		if (perr == nil) != (ierr == nil) {
			if why, ok := indexVerdictDiffers[base]; ok {
				seen[base] = true
				t.Logf("%s: known difference (%s): seam %v, index %v", base, why, perr, ierr)
				continue
			}
			t.Errorf("%s: seam says %v, index says %v", name, perr, ierr)
			continue
		}
		if perr != nil {
			agreeBad++
			continue
		}
		agreeOK++
		compareIndex(t, name, msg, &ix)
	}
	for base := range indexVerdictDiffers {
		if !seen[base] {
			t.Errorf("%s is listed in indexVerdictDiffers but the verdicts agree now: remove it", base)
		}
	}
	t.Logf("%d accepted and %d refused by both", agreeOK, agreeBad)
	if agreeOK == 0 || agreeBad == 0 {
		t.Fatalf("the corpus must have messages of both verdicts (%d ok, %d bad)", agreeOK, agreeBad)
	}
}

// compareIndex checks that the index read the same values as sipgo did.
func compareIndex(t testing.TB, name string, msg sip.Message, ix *sipindex.Index) {
	t.Helper()
	eq := func(what, want, got string) {
		t.Helper()
		if want != got {
			t.Errorf("%s: %s: parser %q, index %q", name, what, want, got)
		}
	}
	eq("Call-ID", msg.CallID().Value(), unfoldStr(ix.Value(mustField(ix, sipindex.KindCallID))))
	cs := msg.CSeq()
	eq("CSeq number", strconv.FormatUint(uint64(cs.SeqNo), 10), strconv.FormatUint(uint64(ix.CSeq), 10))
	eq("CSeq method", string(cs.MethodName), ix.String(ix.CSeqMethod))
	eq("From tag", paramFold(msg.From().Params, "tag"), ix.String(ix.FromTag))
	eq("To tag", paramFold(msg.To().Params, "tag"), ix.String(ix.ToTag))
	eq("branch", paramFold(msg.Via().Params, "branch"), ix.String(ix.Branch))
	if n := len(msg.GetHeaders("Via")); n != ix.Vias {
		t.Errorf("%s: Via values: parser %d, index %d", name, n, ix.Vias)
	}
	if mf := msg.GetHeaders("Max-Forwards"); len(mf) > 0 {
		eq("Max-Forwards", strings.TrimSpace(mf[0].Value()), strconv.Itoa(ix.MaxForwards))
	} else if ix.MaxForwards != -1 {
		t.Errorf("%s: Max-Forwards absent for the parser, %d for the index", name, ix.MaxForwards)
	}
	if !bytes.Equal(msg.Body(), ix.Bytes(ix.Body)) {
		t.Errorf("%s: body: parser %d bytes, index %d bytes", name, len(msg.Body()), ix.Body.Len())
	}
	if req, ok := msg.(*sip.Request); ok {
		if !ix.Request {
			t.Fatalf("%s: the index read a response", name)
		}
		eq("method", string(req.Method), ix.String(ix.Method))
		eq("Route count", strconv.Itoa(len(req.GetHeaders("Route"))), strconv.Itoa(ix.Routes))
		eq("Record-Route count", strconv.Itoa(len(req.GetHeaders("Record-Route"))), strconv.Itoa(ix.RecordRoutes))
	} else {
		res := msg.(*sip.Response)
		if ix.Request {
			t.Fatalf("%s: the index read a request", name)
		}
		eq("status", strconv.Itoa(res.StatusCode), strconv.Itoa(ix.Status))
	}
}

// paramFold is the first parameter named name in any case (RFC 3261
// §7.3.1: parameter names are case-insensitive; sipgo's Get is not).
func paramFold(p sip.HeaderParams, name string) string {
	for _, kv := range p {
		if strings.EqualFold(kv.K, name) {
			return kv.V
		}
	}
	return ""
}

func mustField(ix *sipindex.Index, k sipindex.Kind) sipindex.Field {
	f, _ := ix.Find(k)
	return f
}

func unfoldStr(b []byte) string { return string(b) }

// FuzzIndexDifferential runs the indexer and today's seam on the same bytes:
// the indexer never panics, and where both accept, they read the same
// values. (Verdicts may differ on inputs outside the corpora — the seam is
// sipgo's lenient parser — and are reported by TestIndexMatchesParserOnCorpora
// for the corpora.)
func FuzzIndexDifferential(f *testing.F) {
	seedCorpus(f)
	var ix sipindex.Index
	f.Fuzz(func(t *testing.T, data []byte) {
		ierr := ix.Parse(data, sipindex.Limits{})
		msg, perr := seamVerdict(data)
		if ierr != nil || perr != nil {
			return
		}
		compareIndex(t, "fuzz input", msg, &ix)
	})
}

// The indexer and today's seam on the same INVITE, side by side:
// go test -run '^$' -bench 'BenchmarkSeam' -benchmem ./tm
func BenchmarkSeamIndex(b *testing.B) {
	data := []byte(invite("bench", "z9hG4bK-bench"))
	var ix sipindex.Index
	b.ReportAllocs()
	for b.Loop() {
		if err := ix.Parse(data, sipindex.Limits{}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSeamParseValidate(b *testing.B) {
	data := []byte(invite("bench", "z9hG4bK-bench"))
	p := newParser(Limits{})
	b.ReportAllocs()
	for b.Loop() {
		msg, err := parse(p, data, Limits{})
		if err != nil {
			b.Fatal(err)
		}
		if err := validate(msg, Limits{}); err != nil {
			b.Fatal(err)
		}
	}
}
