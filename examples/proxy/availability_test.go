package main

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/asyncsip/asyncsip/siptest"
)

func TestOfflineSubscriberGets480(t *testing.T) {
	p := newTestProxy(t, Config{Trusted: []string{harnessPeer}})
	require.NoError(t, p.store.AddGateway(context.Background(), 1, "10.1.0.1:5060", "+1", 0))
	h := newHarness(t, p)
	cases := []struct {
		name, ruri string
		code       int
	}{
		{"known subscriber, no binding", "sip:bob@example.com", 480},
		{"unknown user, no gateway", "sip:nobody@example.com", 404},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			res := h.Send(siptest.NewRequest("INVITE", tc.ruri))
			siptest.AssertNotRelayed(t, res)
			siptest.AssertReplied(t, res, tc.code)
		})
	}
	// Once registered, the same subscriber is reached.
	siptest.AssertReplied(t, registerAs(t, h, "bob", "bobpw", "sip:bob@10.0.0.5:5060", 600), 200)
	res := h.Send(siptest.NewRequest("INVITE", "sip:bob@example.com"))
	siptest.AssertRelayedTo(t, res, "sip:bob@10.0.0.5:5060")
}

func TestSilentGatewayFailsOverAfterGWTimeout(t *testing.T) {
	p := newTestProxy(t, Config{GWTimeout: 5 * time.Second, Trusted: []string{harnessPeer}})
	ctx := context.Background()
	require.NoError(t, p.store.AddGateway(ctx, 1, "10.1.0.1:5060", "+1", 1))
	require.NoError(t, p.store.AddGateway(ctx, 2, "10.1.0.2:5060", "+1", 2))
	h := newHarness(t, p)

	res := h.Send(siptest.NewRequest("INVITE", "sip:+15551234@example.com"))
	require.Len(t, res.Relayed(), 1, res.String())
	siptest.AssertRelayedTo(t, res, "sip:+15551234@10.1.0.1:5060")
	h.Clock.Advance(4 * time.Second)
	require.Len(t, res.Relayed(), 1, "gateway 1 still has time: %s", res.String())
	h.Clock.Advance(time.Second)
	require.Len(t, res.Relayed(), 2, "gateway 1 silent for gw_timeout: %s", res.String())
	assert.Equal(t, "sip:+15551234@10.1.0.2:5060", res.Relayed()[1].Target())
	res.Branch(1).Respond(200)
	siptest.AssertReplied(t, res, 200)
}
