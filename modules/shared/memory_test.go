package shared_test

import (
	"testing"
	"time"

	"github.com/asyncsip/asyncsip/modules/shared"
	"github.com/asyncsip/asyncsip/modules/shared/sharedtest"
)

func TestMemoryCounter(t *testing.T) {
	sharedtest.Counter(t, func(t *testing.T, instance string, ttl time.Duration) shared.Counter {
		return counterFor(t).For(instance, ttl)
	})
}

// counterFor returns the one MemoryCounter of test t (its instances share it).
func counterFor(t *testing.T) *shared.MemoryCounter {
	counters.mu.Lock()
	defer counters.mu.Unlock()
	c := counters.m[t]
	if c == nil {
		c = shared.NewMemoryCounter()
		counters.m[t] = c
		t.Cleanup(func() {
			counters.mu.Lock()
			delete(counters.m, t)
			counters.mu.Unlock()
		})
	}
	return c
}

func TestMemoryRates(t *testing.T) {
	perTest := map[*testing.T]*shared.MemoryRates{}
	sharedtest.Rates(t, func(t *testing.T) shared.Rates {
		if perTest[t] == nil {
			perTest[t] = shared.NewMemoryRates()
		}
		return perTest[t]
	})
}

func TestMemoryNonces(t *testing.T) {
	perTest := map[*testing.T]*shared.MemoryNonces{}
	sharedtest.Nonces(t, func(t *testing.T) shared.Nonces {
		if perTest[t] == nil {
			perTest[t] = shared.NewMemoryNonces(0)
		}
		return perTest[t]
	})
}

func TestMemoryNoncesFullRefusesNew(t *testing.T) {
	l := sharedtest.Loop(t)
	n := shared.NewMemoryNonces(2)
	for _, k := range []string{"a", "b"} {
		if !sharedtest.Must(t, l, n.Use(k, 1, time.Minute)) {
			t.Fatalf("use of %s refused", k)
		}
	}
	if sharedtest.Must(t, l, n.Use("c", 1, time.Minute)) {
		t.Fatal("a new nonce accepted in a full cache")
	}
	if sharedtest.Must(t, l, n.Use("a", 1, time.Minute)) || !sharedtest.Must(t, l, n.Use("a", 2, time.Minute)) {
		t.Fatal("known nonces not checked as before")
	}
	if n.Len() != 2 {
		t.Fatalf("len %d", n.Len())
	}
}

func TestMemoryBoard(t *testing.T) {
	b := shared.NewMemoryBoard()
	sharedtest.Board(t, func(*testing.T) shared.Board { return b })
}

func TestMemoryLocation(t *testing.T) {
	perTest := map[*testing.T]*shared.MemoryLocation{}
	sharedtest.Location(t, func(t *testing.T) shared.Location {
		if perTest[t] == nil {
			perTest[t] = shared.NewMemoryLocation()
		}
		return perTest[t]
	})
}

func TestMemoryLocationSweep(t *testing.T) {
	l := sharedtest.Loop(t)
	s := shared.NewMemoryLocation()
	now := time.Unix(1_800_000_000, 0)
	sharedtest.Must(t, l, s.Save("a", []shared.Binding{{Contact: "sip:1", Expires: now.Add(time.Minute)},
		{Contact: "sip:2", Expires: now.Add(time.Hour)}}, false, 0, now))
	if n := s.Sweep(now.Add(2 * time.Minute)); n != 1 {
		t.Fatalf("swept %d", n)
	}
	if got := sharedtest.Must(t, l, s.Lookup("a", 0, now)); len(got) != 1 || got[0].Contact != "sip:2" {
		t.Fatalf("after sweep: %+v", got)
	}
}
