package rtpengine_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/asyncsip/asyncsip/internal/testenv"
	"github.com/asyncsip/asyncsip/modules/rtpengine"
)

// TestRealFailover runs calls over two real rtpengines, kills one mid-run
// and checks that: calls keep their instance while it lives (verified on
// each daemon directly); once it is dead new calls go to the survivor; a
// re-offer moves a dead instance's call to the survivor, where its
// answer, query and delete then go.
func TestRealFailover(t *testing.T) {
	pa, pb := testenv.StartRTPEngine(t), testenv.StartRTPEngine(t)
	g := newGroup(t, 2)
	cfg := rtpengine.Config{
		Instances: []rtpengine.Instance{{Addr: pa.Addr}, {Addr: pb.Addr}},
		Timeout:   4 * time.Second, TryTimeout: time.Second, Retransmit: 100 * time.Millisecond, DisableFor: time.Minute,
	}
	c := newClient(t, cfg)
	only := map[string]*rtpengine.Client{ // clients that see one daemon each
		"127.0.0.1" + pa.NG[len("127.0.0.1"):]: newClient(t, rtpengine.Config{Instances: []rtpengine.Instance{{Addr: pa.Addr}}}),
		"127.0.0.1" + pb.NG[len("127.0.0.1"):]: newClient(t, rtpengine.Config{Instances: []rtpengine.Instance{{Addr: pb.Addr}}}),
	}
	offer, answer := readSDP(t, "audio.sdp"), readSDP(t, "answer.sdp")
	where := map[string]string{}
	for i := range 20 {
		id := fmt.Sprintf("fail-%d@test", i)
		r, err := run(t, g.Loop(i%2), c.Offer(rtpengine.Call{CallID: id, FromTag: "a"}, offer, nil))
		if err != nil {
			t.Fatal(err)
		}
		a, err := run(t, g.Loop((i+1)%2), c.Answer(rtpengine.Call{CallID: id, FromTag: "a", ToTag: "b"}, answer, nil))
		if err != nil || a.Instance != r.Instance {
			t.Fatalf("answer went to %v (%v), offer to %s", a, err, r.Instance)
		}
		where[id] = r.Instance
		// The call exists on its daemon and on no other.
		for inst, oc := range only {
			_, err := run(t, g.Loop(0), oc.Query(rtpengine.Call{CallID: id}))
			if (inst == r.Instance) != (err == nil) {
				t.Fatalf("call %s bound to %s; query on %s: %v", id, r.Instance, inst, err)
			}
		}
	}
	var onA []string
	for id, inst := range where {
		if inst == pa.NG {
			onA = append(onA, id)
		}
	}
	if len(onA) == 0 || len(onA) == len(where) {
		t.Fatalf("20 calls split %d/%d between the instances", len(onA), len(where)-len(onA))
	}
	pa.Kill()
	// The first command for a call of A finds it dead: an answer is not
	// moved (B does not know the call), it times out.
	_, err := run(t, g.Loop(0), c.Answer(rtpengine.Call{CallID: onA[0], FromTag: "a", ToTag: "b"}, answer, nil))
	if !errors.Is(err, rtpengine.ErrTimeout) {
		t.Fatalf("answer on the dead instance: %v", err)
	}
	// A re-offer moves the call to B, and the call stays there.
	for i, id := range onA {
		r, err := run(t, g.Loop(i%2), c.Offer(rtpengine.Call{CallID: id, FromTag: "a"}, offer, nil))
		if err != nil || r.Instance != pb.NG {
			t.Fatalf("re-offer of %s after A died: %v, %v", id, r, err)
		}
		if inst, _ := c.InstanceOf(id); inst != pb.NG {
			t.Fatalf("%s bound to %s after failover", id, inst)
		}
		if _, err := run(t, g.Loop((i+1)%2), c.Answer(rtpengine.Call{CallID: id, FromTag: "a", ToTag: "b"}, answer, nil)); err != nil {
			t.Fatalf("answer after failover: %v", err)
		}
	}
	// New calls go to B at once.
	for i := range 5 {
		r, err := run(t, g.Loop(i%2), c.Offer(rtpengine.Call{CallID: fmt.Sprintf("after-%d@test", i), FromTag: "a"}, offer, nil))
		if err != nil || r.Instance != pb.NG {
			t.Fatalf("new call after A died: %v, %v", r, err)
		}
		where[fmt.Sprintf("after-%d@test", i)] = pb.NG
	}
	// Every call is on B now: queried and deleted there.
	for id := range where {
		q, err := run(t, g.Loop(1), c.Query(rtpengine.Call{CallID: id}))
		if err != nil || q.Response.Instance != pb.NG {
			t.Fatalf("query %s: %v", id, err)
		}
		if _, err := run(t, g.Loop(0), c.Delete(rtpengine.Call{CallID: id}, nil)); err != nil {
			t.Fatalf("delete %s: %v", id, err)
		}
	}
	st := c.Stats()
	t.Logf("stats: %+v", st.Instances)
	if st.Instances[0].Up || st.Instances[0].Failovers == 0 || st.Calls != 0 {
		t.Fatalf("stats after failover: %+v, calls %d", st.Instances, st.Calls)
	}
}
