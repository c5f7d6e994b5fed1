package rtpengine_test

import (
	"errors"
	"testing"

	"github.com/asyncsip/asyncsip/internal/sipp"
	"github.com/asyncsip/asyncsip/internal/testenv"
	"github.com/asyncsip/asyncsip/modules/rtpengine"
)

// TestReadmeRTPEngineCommand runs the README's rtpengine line (its ng port
// mapped to a free one) and sends it an offer, an answer and a delete.
func TestReadmeRTPEngineCommand(t *testing.T) {
	if testenv.RTPEngineBinary() == "" {
		testenv.Need(t, "rtpengine", "install rtpengine-daemon or run `make test`")
	}
	lines := sipp.ReadmeLines(t, "README.md", "rtpengine")
	if len(lines) != 1 {
		t.Fatalf("README has %d rtpengine lines", len(lines))
	}
	cmd := lines[0].MapPorts(map[int]int{2223: testenv.FreeUDPPort(t)})
	p := testenv.StartRTPEngineArgs(t, cmd.Args)
	g := newGroup(t, 1)
	c := newClient(t, rtpengine.Config{Instances: []rtpengine.Instance{{Addr: p.Addr}}})
	call := rtpengine.Call{CallID: "readme@test", FromTag: "a"}
	if _, err := run(t, g.Loop(0), c.Offer(call, readSDP(t, "audio.sdp"), &rtpengine.Flags{ReplaceOrigin: true})); err != nil {
		t.Fatalf("%s: offer: %v", cmd, err)
	}
	call.ToTag = "b"
	if _, err := run(t, g.Loop(0), c.Answer(call, readSDP(t, "answer.sdp"), nil)); err != nil {
		t.Fatal(err)
	}
	if _, err := run(t, g.Loop(0), c.Delete(rtpengine.Call{CallID: call.CallID}, nil)); err != nil {
		t.Fatal(err)
	}
	if _, err := run(t, g.Loop(0), c.Query(rtpengine.Call{CallID: call.CallID})); !errors.Is(err, rtpengine.ErrUnknownCall) {
		t.Fatalf("query after delete (--delete-delay=0): %v, want unknown call", err)
	}
}
