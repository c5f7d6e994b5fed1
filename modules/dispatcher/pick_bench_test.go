package dispatcher

import (
	"fmt"
	"testing"
)

// BenchmarkPick is the cost of choosing a target of a set of 8, all up,
// per algorithm (Select adds the Context bookkeeping and SetDestination).
func BenchmarkPick(b *testing.B) {
	for _, alg := range []Algorithm{RoundRobin, Weighted, HashCallID, Priority} {
		ts := make([]Target, 8)
		for i := range ts {
			ts[i] = Target{URI: fmt.Sprintf("sip:10.0.0.%d", i+1), Weight: 1 + i%3, Priority: i % 2}
		}
		d, err := New(Config{Sets: []SetConfig{{ID: "gw", Algorithm: alg, Targets: ts}}})
		if err != nil {
			b.Fatal(err)
		}
		s := d.snap.Load().sets["gw"]
		ok := func(e *entry) bool { return e.h.up.Load() }
		b.Run(alg.String(), func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if s.pick(s.n.Add(1), hashString("call-id"), ok) < 0 {
						b.Fatal("no target")
					}
				}
			})
		})
	}
}
