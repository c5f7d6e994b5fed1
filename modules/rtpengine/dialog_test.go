package rtpengine_test

import (
	"testing"
	"time"

	"github.com/asyncsip/asyncsip/internal/testenv"
	"github.com/asyncsip/asyncsip/modules/dialog"
	"github.com/asyncsip/asyncsip/modules/rtpengine"
	"github.com/asyncsip/asyncsip/modules/rtpengine/rtpenginetest"
)

// TestDeleteOnEnd: a dialog's end deletes its call on rtpengine, from a
// loop of the group; every event reaches the next observer.
func TestDeleteOnEnd(t *testing.T) {
	t.Parallel()
	s := rtpenginetest.NewServer(t)
	g := newGroup(t, 2)
	c := newClient(t, fast(s.Addr))
	if _, err := run(t, g.Loop(0), c.Offer(rtpengine.Call{CallID: "d1", FromTag: "f"}, []byte(offerSDP), nil)); err != nil {
		t.Fatal(err)
	}
	var seen []dialog.EventKind
	reported := make(chan error, 1)
	obs := c.DeleteOnEnd(g, dialog.ObserverFunc(func(e dialog.Event) { seen = append(seen, e.Kind) }), func(id string, err error) {
		if id == "d1" {
			reported <- err
		}
	})
	rec := dialog.Record{ID: dialog.ID{CallID: "d1", CallerTag: "f"}}
	obs.DialogEvent(dialog.Event{Kind: dialog.ConfirmedEvent, Record: rec})
	if !s.Has("d1") {
		t.Fatal("a confirmed event deleted the call")
	}
	obs.DialogEvent(dialog.Event{Kind: dialog.TerminatedEvent, Record: rec, Reason: dialog.ByeCaller})
	if err := testenv.Wait(t, 10*time.Second, reported, "delete report"); err != nil {
		t.Fatal(err)
	}
	if s.Has("d1") || len(seen) != 2 {
		t.Fatalf("call live %v, events passed on %v", s.Has("d1"), seen)
	}
}
