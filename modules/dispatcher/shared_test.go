package dispatcher_test

import (
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/asyncsip/asyncsip/async"
	"github.com/asyncsip/asyncsip/modules/dispatcher"
	"github.com/asyncsip/asyncsip/modules/shared"
	"github.com/asyncsip/asyncsip/siptest"
)

// instance is one proxy instance probing set "gw" (two targets) and
// sharing states on board.
func instance(t *testing.T, name string, board shared.Board) (*dispatcher.Dispatcher, *siptest.Harness, *observer) {
	t.Helper()
	obs := &observer{}
	d, err := dispatcher.New(dispatcher.Config{
		Sets:  []dispatcher.SetConfig{{ID: "gw", Targets: targets(0, 0)}},
		Probe: dispatcher.ProbeConfig{Interval: interval, Timeout: 2 * time.Second, Slices: 1, FailAfter: 1},
		Board: board, Instance: name, Observer: obs,
	})
	require.NoError(t, err)
	h := siptest.NewHarness(t, relayRoutes(d))
	p, err := d.Start(h.Server, h.Group())
	require.NoError(t, err)
	t.Cleanup(p.Stop)
	return d, h, obs
}

// A target one instance finds dead is down at the other within an
// interval, and comes back at both when one sees it recover.
func TestBoardSharesProbeResults(t *testing.T) {
	board := shared.NewMemoryBoard()
	a, ha, _ := instance(t, "a", board)
	b, hb, obsB := instance(t, "b", board)

	p := tick(t, ha, interval)
	p["10.0.0.1"].Respond(200) // 10.0.0.2 is silent at a
	ha.Clock.Advance(3 * time.Second)
	require.False(t, a.Up("10.0.0.2:5060"))

	p = tick(t, hb, interval) // b reads the board before its probes
	assert.False(t, b.Up("10.0.0.2:5060"), "b took a's result")
	assert.Equal(t, uint64(1), b.Stats().BoardApplied)
	require.Len(t, obsB.Changes(), 1)
	assert.Equal(t, "shared by a", obsB.Changes()[0].Reason)
	assert.Equal(t, map[string]int{"10.0.0.1:5060": 4}, route(t, hb, 4, 0), "b avoids the target")
	p["10.0.0.1"].Respond(200)
	p["10.0.0.2"].Respond(200) // b's own probes: one success, not enough to recover
	p = tick(t, hb, interval)
	p["10.0.0.1"].Respond(200)
	p["10.0.0.2"].Respond(200) // the second: up at b, published
	require.True(t, b.Up("10.0.0.2:5060"))

	tick(t, ha, interval-3*time.Second)
	assert.True(t, a.Up("10.0.0.2:5060"), "a took b's newer result")
	assert.Equal(t, uint64(1), a.Stats().BoardApplied)
}

type failingBoard struct{}

func (failingBoard) Put(string, string, time.Duration) async.Op[struct{}] {
	return async.Done(struct{}{}, errors.New("redis down"))
}
func (failingBoard) Get(...string) async.Op[map[string]string] {
	return async.Done[map[string]string](nil, errors.New("redis down"))
}

// Without the board each instance goes on with its own probes.
func TestBoardDownKeepsLocalProbing(t *testing.T) {
	a, ha, _ := instance(t, "a", failingBoard{})
	p := tick(t, ha, interval)
	p["10.0.0.1"].Respond(200)
	ha.Clock.Advance(3 * time.Second)
	assert.False(t, a.Up("10.0.0.2:5060"))
	assert.True(t, a.Up("10.0.0.1:5060"))
	assert.Equal(t, uint64(2), a.Stats().BoardFailed, "one fetch and one publish failed")
}
