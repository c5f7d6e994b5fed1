package main

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/asyncsip/asyncsip/siptest"
)

func TestBalancesByCallID(t *testing.T) {
	backends := []string{"10.0.0.1:5060", "10.0.0.2:5060"}
	h := siptest.NewHarness(t, Routes(backends))
	seen := map[string]int{}
	for i := 0; i < 20; i++ {
		callID := fmt.Sprintf("call-%d", i)
		res := h.Send(siptest.NewRequest("INVITE", "sip:bob@example.com", siptest.WithCallID(callID)))
		require.Len(t, res.Forwarded(), 1, res.String())
		fwd := res.Forwarded()[0]
		seen[fwd.Addr.String()]++
		// Every request of the call goes to the same backend.
		again := h.Send(siptest.NewRequest("MESSAGE", "sip:bob@example.com", siptest.WithCallID(callID)))
		require.Len(t, again.Forwarded(), 1)
		assert.Equal(t, fwd.Addr, again.Forwarded()[0].Addr)
	}
	assert.Len(t, seen, 2, "both backends used: %v", seen)
}

func TestResponsesFlowBackStatelessly(t *testing.T) {
	h := siptest.NewHarness(t, Routes([]string{"10.0.0.1:5060"}))
	res := h.Send(siptest.NewRequest("OPTIONS", "sip:bob@example.com"))
	require.Len(t, res.Forwarded(), 1)
	res.Forwarded()[0].Respond(200)
	siptest.AssertReplied(t, res, 200)
}
