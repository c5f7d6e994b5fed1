package rtpengine_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/asyncsip/asyncsip/async"
	"github.com/asyncsip/asyncsip/modules/rtpengine"
	"github.com/asyncsip/asyncsip/modules/rtpengine/rtpenginetest"
)

func BenchmarkEncodeOffer(b *testing.B) {
	d := map[string]any{
		"command": "offer", "call-id": "a84b4c76e66710@pc33.atlanta.example.com", "from-tag": "1928301774",
		"sdp": []byte(offerSDP), "replace": []string{"origin", "session-connection"}, "ICE": "remove",
	}
	b.ReportAllocs()
	var buf []byte
	for b.Loop() {
		var err error
		if buf, err = rtpengine.Encode(buf[:0], d); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeReply(b *testing.B) {
	reply, err := rtpengine.Encode(nil, map[string]any{"result": "ok", "sdp": offerSDP + "a=rtcp:30001\r\n"})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := rtpengine.Decode(reply); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkOfferRoundTrip: one offer at a time from a loop to the fake
// server over loopback and back: the client's whole path (encode, send,
// watcher, match, decode, typed response) plus the fake's.
func BenchmarkOfferRoundTrip(b *testing.B) {
	s := rtpenginetest.NewServer(b)
	g := newGroup(b, 1)
	c := newClient(b, fast(s.Addr))
	l := g.Loop(0)
	sdp := []byte(offerSDP)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		done := make(chan error, 1)
		op := c.Offer(rtpengine.Call{CallID: fmt.Sprint("bench-", i), FromTag: "f"}, sdp, nil)
		_ = l.Post(func() {
			async.Launch(l, op, func(_ *rtpengine.Response, err error) { done <- err }, async.Timeout(5*time.Second))
		})
		if err := <-done; err != nil {
			b.Fatal(err)
		}
	}
}
