package sharedtest

import (
	"errors"
	"testing"
	"time"

	"github.com/asyncsip/asyncsip/internal/testenv"
	"github.com/asyncsip/asyncsip/modules/shared"
)

// Rates runs the conformance tests of shared.Rates; mk returns views of one
// store (two calls: two instances).
func Rates(t *testing.T, mk func(t *testing.T) shared.Rates) {
	t.Run("CountedAcrossInstances", func(t *testing.T) {
		l := Loop(t)
		a, b := mk(t), mk(t)
		// A window long enough that the test stays inside one (or, at a
		// boundary, the next: then the sum starts again and the limit is
		// not reached — retried below).
		const window, ban = 10 * time.Second, 2 * time.Second
		testenv.Eventually(t, 3*window, "a source over the limit across instances is banned", func() bool {
			src := "192.0.2." + time.Now().Format("150405.000")
			got := Must(t, l, a.Add(map[string]int64{src: 6, "198.51.100.1": 1}, 10, window, ban))
			if len(got) != 0 {
				t.Fatalf("banned below the limit: %v", got)
			}
			got = Must(t, l, b.Add(map[string]int64{src: 6}, 10, window, ban))
			until, banned := got[src]
			if !banned {
				return false // a window boundary fell between the two Adds
			}
			if d := time.Until(until); d <= 0 || d > ban+time.Second {
				t.Fatalf("ban ends in %v, want about %v", d, ban)
			}
			// The other instance learns of the ban with its next Add.
			got = Must(t, l, a.Add(map[string]int64{src: 1, "198.51.100.1": 1}, 10, window, ban))
			if _, ok := got[src]; !ok {
				t.Fatalf("the other instance does not see the ban: %v", got)
			}
			if _, ok := got["198.51.100.1"]; ok {
				t.Fatalf("an innocent source is banned: %v", got)
			}
			return true
		})
	})
	t.Run("BanEnds", func(t *testing.T) {
		l := Loop(t)
		a := mk(t)
		const ban = 300 * time.Millisecond
		got := Must(t, l, a.Add(map[string]int64{"203.0.113.9": 50}, 10, time.Second, ban))
		if _, ok := got["203.0.113.9"]; !ok {
			t.Fatalf("not banned: %v", got)
		}
		testenv.Eventually(t, 10*time.Second, "the ban ends", func() bool {
			got, err := Run(t, l, a.Add(map[string]int64{"203.0.113.9": 1}, 10, time.Second, ban))
			return err == nil && len(got) == 0
		})
	})
}

// Nonces runs the conformance tests of shared.Nonces; two calls of mk
// return two instances' views of one store.
func Nonces(t *testing.T, mk func(t *testing.T) shared.Nonces) {
	t.Run("ReplayRefusedOnAnotherInstance", func(t *testing.T) {
		l := Loop(t)
		a, b := mk(t), mk(t)
		key := "nonce-" + time.Now().Format("150405.000000")
		if !Must(t, l, a.Use(key, 1, time.Minute)) {
			t.Fatal("first use refused")
		}
		if Must(t, l, b.Use(key, 1, time.Minute)) {
			t.Fatal("replay of nc 1 on the other instance accepted")
		}
		if !Must(t, l, b.Use(key, 2, time.Minute)) {
			t.Fatal("nc 2 refused")
		}
		if Must(t, l, a.Use(key, 2, time.Minute)) || Must(t, l, a.Use(key, 1, time.Minute)) {
			t.Fatal("an old nc accepted")
		}
		if !Must(t, l, a.Use(key, 0xffffffff, time.Minute)) {
			t.Fatal("the highest nc refused")
		}
	})
	t.Run("Forgotten", func(t *testing.T) {
		l := Loop(t)
		a := mk(t)
		key := "short-" + time.Now().Format("150405.000000")
		Must(t, l, a.Use(key, 5, 200*time.Millisecond))
		testenv.Eventually(t, 10*time.Second, "the entry expires", func() bool {
			ok, err := Run(t, l, a.Use(key, 1, 200*time.Millisecond))
			return err == nil && ok
		})
	})
}

// Board runs the conformance tests of shared.Board.
func Board(t *testing.T, mk func(t *testing.T) shared.Board) {
	l := Loop(t)
	a, b := mk(t), mk(t)
	Must(t, l, a.Put("dst/sip:gw1", "down", time.Minute))
	Must(t, l, a.Put("dst/sip:gw2", "up", 200*time.Millisecond))
	got := Must(t, l, b.Get("dst/sip:gw1", "dst/sip:gw2", "dst/none"))
	if got["dst/sip:gw1"] != "down" || got["dst/sip:gw2"] != "up" || len(got) != 2 {
		t.Fatalf("get: %v", got)
	}
	Must(t, l, b.Put("dst/sip:gw1", "up", time.Minute))
	if v := Must(t, l, a.Get("dst/sip:gw1"))["dst/sip:gw1"]; v != "up" {
		t.Fatalf("overwritten value: %q", v)
	}
	testenv.Eventually(t, 10*time.Second, "a value expires", func() bool {
		got, err := Run(t, l, a.Get("dst/sip:gw2"))
		return err == nil && len(got) == 0
	})
}

// Location runs the conformance tests of shared.Location; two calls of mk
// return two instances' views of one store.
func Location(t *testing.T, mk func(t *testing.T) shared.Location) {
	now := time.Unix(time.Now().Unix(), 0)
	at := func(s int) time.Time { return now.Add(time.Duration(s) * time.Second) }
	bind := func(ct string, s int) shared.Binding {
		return shared.Binding{Contact: ct, Expires: at(s), CallID: "c1", CSeq: 1}
	}
	contacts := func(bs []shared.Binding) []string {
		out := make([]string, 0, len(bs))
		for _, b := range bs {
			out = append(out, b.Contact)
		}
		return out
	}
	eq := func(t *testing.T, what string, got []shared.Binding, want ...string) {
		t.Helper()
		g := contacts(got)
		if len(g) != len(want) {
			t.Fatalf("%s: %v, want %v", what, g, want)
		}
		for i := range g {
			if g[i] != want[i] {
				t.Fatalf("%s: %v, want %v", what, g, want)
			}
		}
	}
	t.Run("SaveLookupAcrossInstances", func(t *testing.T) {
		l := Loop(t)
		a, b := mk(t), mk(t)
		aor := "alice-" + now.Format("150405") + "-1"
		s := Must(t, l, a.Save(aor, []shared.Binding{bind("sip:a@192.0.2.1:5060", 600), bind("sip:a@192.0.2.2:5060", 3600)}, false, 3, now))
		eq(t, "before", s.Before)
		eq(t, "after", s.After, "sip:a@192.0.2.1:5060", "sip:a@192.0.2.2:5060")
		got := Must(t, l, b.Lookup(aor, 0, now))
		eq(t, "lookup on b", got, "sip:a@192.0.2.2:5060", "sip:a@192.0.2.1:5060") // latest expiry first
		if !got[0].Expires.Equal(at(3600)) || got[0].CallID != "c1" || got[0].CSeq != 1 {
			t.Fatalf("binding read back: %+v", got[0])
		}
		eq(t, "lookup limit 1", Must(t, l, b.Lookup(aor, 1, now)), "sip:a@192.0.2.2:5060")
		eq(t, "lookup after expiry", Must(t, l, b.Lookup(aor, 0, at(601))), "sip:a@192.0.2.2:5060")
		eq(t, "unknown aor", Must(t, l, b.Lookup("nobody-"+aor, 0, now)))
	})
	t.Run("RefreshRemoveCap", func(t *testing.T) {
		l := Loop(t)
		a, b := mk(t), mk(t)
		aor := "bob-" + now.Format("150405") + "-2"
		Must(t, l, a.Save(aor, []shared.Binding{bind("sip:1", 600), bind("sip:2", 600)}, false, 2, now))
		_, err := Run(t, l, b.Save(aor, []shared.Binding{bind("sip:3", 600)}, false, 2, now))
		var tooMany *shared.TooManyError
		if !errors.As(err, &tooMany) || tooMany.Live != 3 {
			t.Fatalf("third binding with a cap of 2: %v", err)
		}
		eq(t, "unchanged by the refused save", Must(t, l, a.Lookup(aor, 0, now)), "sip:1", "sip:2")
		// Remove one and add another in one save: within the cap.
		s := Must(t, l, b.Save(aor, []shared.Binding{{Contact: "sip:1"}, bind("sip:3", 900)}, false, 2, now))
		eq(t, "before", s.Before, "sip:1", "sip:2")
		eq(t, "after", s.After, "sip:2", "sip:3")
		// An expired binding does not count against the cap.
		s = Must(t, l, a.Save(aor, []shared.Binding{bind("sip:4", 900)}, false, 2, at(601)))
		eq(t, "after expiry", s.After, "sip:3", "sip:4")
		if !Must(t, l, a.Remove(aor, "sip:3")) || Must(t, l, a.Remove(aor, "sip:3")) {
			t.Fatal("remove reported wrong")
		}
		s = Must(t, l, b.Save(aor, nil, true, 2, at(601)))
		eq(t, "wildcard: before", s.Before, "sip:4")
		eq(t, "wildcard: after", s.After)
		Must(t, l, b.Save(aor, []shared.Binding{bind("sip:5", 900)}, false, 2, now))
		if n := Must(t, l, a.RemoveAll(aor)); n != 1 {
			t.Fatalf("remove all: %d", n)
		}
		eq(t, "after remove all", Must(t, l, b.Lookup(aor, 0, now)))
	})
}
