package rtpengine_test

import (
	"os"
	"strings"
	"testing"

	"github.com/asyncsip/asyncsip/internal/testenv"
	"github.com/asyncsip/asyncsip/modules/rtpengine"
)

func readSDP(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestRealOfferAnswerDelete(t *testing.T) {
	p := testenv.StartRTPEngine(t)
	g := newGroup(t, 1)
	c := newClient(t, rtpengine.Config{Instances: []rtpengine.Instance{{Addr: p.Addr}}})
	l := g.Loop(0)
	call := rtpengine.Call{CallID: "real-1@test", FromTag: "ftag1"}
	r, err := run(t, l, c.Offer(call, readSDP(t, "audio.sdp"), &rtpengine.Flags{ReplaceOrigin: true, ReplaceSessionConnection: true, ICE: rtpengine.ICERemove}))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("offer SDP:\n%s", r.SDP)
	if strings.Contains(string(r.SDP), "192.0.2.10") {
		t.Fatalf("offer SDP still names the caller's address:\n%s", r.SDP)
	}
	call.ToTag = "ttag1"
	a, err := run(t, l, c.Answer(call, readSDP(t, "answer.sdp"), nil))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("answer SDP:\n%s", a.SDP)
	q, err := run(t, l, c.Query(rtpengine.Call{CallID: call.CallID}))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("query: %+v dict %v", q, q.Response.Dict)
	if _, err := run(t, l, c.Delete(rtpengine.Call{CallID: call.CallID}, nil)); err != nil {
		t.Fatal(err)
	}
	_, err = run(t, l, c.Query(rtpengine.Call{CallID: call.CallID}))
	t.Logf("query after delete: %v", err)
}
