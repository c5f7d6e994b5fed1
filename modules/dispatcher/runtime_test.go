package dispatcher_test

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/asyncsip/asyncsip/modules/dispatcher"
	"github.com/asyncsip/asyncsip/siptest"
)

// Targets are added, updated, removed and whole sets replaced while four
// loops (one harness each, on its own goroutine) route calls through the
// same Dispatcher. A target whose removal returned before a call was sent
// never gets that call, and every call gets a target that was in the set.
func TestRuntimeChangesUnderConcurrentSelection(t *testing.T) {
	for _, alg := range []dispatcher.Algorithm{dispatcher.RoundRobin, dispatcher.Weighted, dispatcher.HashCallID, dispatcher.Priority} {
		t.Run(alg.String(), func(t *testing.T) {
			// 10.0.0.1 stays; 10.0.0.2…9 come and go; 10.0.0.99 is removed
			// once and for all.
			base := []dispatcher.Target{{URI: "sip:10.0.0.1:5060", Weight: 5, Priority: 9}, {URI: "sip:10.0.0.99:5060", Weight: 5}}
			d := newDispatcher(t, dispatcher.SetConfig{ID: "gw", Algorithm: alg, Targets: base})
			const loops, calls = 4, 150
			var removed atomic.Bool
			var wg sync.WaitGroup
			errs := make(chan error, loops*calls)
			for g := 0; g < loops; g++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					h := siptest.NewHarness(t, relayRoutes(d))
					for i := 0; i < calls; i++ {
						gone := removed.Load()
						res := h.Send(siptest.NewRequest("MESSAGE", "sip:svc@example.com", siptest.WithCallID(fmt.Sprintf("c%d-%d", g, i))))
						rel := res.Relayed()
						if len(rel) != 1 {
							errs <- fmt.Errorf("call %d-%d: %d branches: %s", g, i, len(rel), res)
							continue
						}
						to := rel[0].Addr.String()
						if gone && to == "10.0.0.99:5060" {
							errs <- fmt.Errorf("call %d-%d went to a removed target", g, i)
						}
						rel[0].Respond(200)
					}
				}()
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < 60; i++ {
					uri := fmt.Sprintf("sip:10.0.0.%d:5060", 2+i%8)
					switch i % 4 {
					case 0:
						_ = d.AddTarget("gw", dispatcher.Target{URI: uri, Weight: 1 + i%3, Priority: i % 3})
					case 1:
						_ = d.UpdateTarget("gw", dispatcher.Target{URI: uri, Weight: 2, Attrs: map[string]string{"i": fmt.Sprint(i)}})
					case 2:
						_ = d.RemoveTarget("gw", uri)
					case 3:
						_ = d.MarkDown(uri)
					}
					if i == 20 {
						assert.NoError(t, d.RemoveTarget("gw", "sip:10.0.0.99:5060"))
						removed.Store(true)
					}
					if i == 40 {
						assert.NoError(t, d.Replace(dispatcher.SetConfig{ID: "gw", Algorithm: alg, Targets: base[:1]}))
					}
					_ = d.Targets()
					_ = d.Stats()
				}
			}()
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
			st := d.Stats()
			assert.Equal(t, uint64(loops*calls), st.Selected+st.NoTarget)
			assert.Zero(t, st.NoTarget, "10.0.0.1 is always there")
		})
	}
}
