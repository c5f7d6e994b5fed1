package main

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/asyncsip/asyncsip/modules/rest"
	"github.com/asyncsip/asyncsip/modules/rest/resttest"
	"github.com/asyncsip/asyncsip/siptest"
)

func TestRoutes(t *testing.T) {
	client, err := rest.NewClient(rest.Config{})
	require.NoError(t, err)
	t.Cleanup(func() { client.Close(t.Context()) })
	cases := []struct {
		name   string
		answer func(r *resttest.Rule)
		want   int
		target string
	}{
		{"route", func(r *resttest.Rule) { r.JSON(200, Answer{Target: "sip:+1555@10.0.0.7:5060"}) }, 0, "sip:+1555@10.0.0.7:5060"},
		{"reject", func(r *resttest.Rule) { r.JSON(200, Answer{Reject: 603}) }, 603, ""},
		{"no target", func(r *resttest.Rule) { r.JSON(200, Answer{}) }, 404, ""},
		{"API error status", func(r *resttest.Rule) { r.Status(500, "internal error") }, 503, ""},
		{"API answers no JSON", func(r *resttest.Rule) { r.Status(200, "<html>") }, 503, ""},
		{"API down", func(r *resttest.Rule) { r.Fail(rest.ErrConnRefused) }, 503, ""},
		{"API too slow", func(r *resttest.Rule) { r.Never() }, 503, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			api := resttest.New()
			tc.answer(api.On("GET", "http://api.invalid/route?from=alice&to=%2B1555"))
			h := siptest.NewHarness(t, Routes(client, "http://api.invalid/route", time.Second), siptest.WithFakes(api))
			res := h.Send(siptest.NewRequest("INVITE", "sip:+1555@example.com"))
			require.Equal(t, []string{"GET http://api.invalid/route?from=alice&to=%2B1555"}, api.Seen(), "the API is asked about the caller and the callee")
			h.Clock.Advance(2 * time.Second)
			if tc.target != "" {
				siptest.AssertRelayedTo(t, res, tc.target)
				return
			}
			siptest.AssertNotRelayed(t, res)
			siptest.AssertReplied(t, res, tc.want)
		})
	}
}

func TestInDialogFollowsRoute(t *testing.T) {
	client, err := rest.NewClient(rest.Config{})
	require.NoError(t, err)
	t.Cleanup(func() { client.Close(t.Context()) })
	h := siptest.NewHarness(t, Routes(client, "http://api.invalid/route", time.Second))
	// The BYE comes along the proxy's signed Record-Route, as after a call
	// through it: relayed to its Request-URI, without a REST lookup.
	res := h.Send(h.InDialog(siptest.NewBye("sip:bob@10.0.0.9:5060", siptest.WithToTag("b1"))))
	siptest.AssertRelayedTo(t, res, "sip:bob@10.0.0.9:5060")
	require.Empty(t, res.Awaits(), "no lookup for an in-dialog request")

	// Without that Route tm refuses it before the route runs.
	forged := h.Send(siptest.NewBye("sip:bob@10.0.0.9:5060", siptest.WithToTag("b1")))
	siptest.AssertNotRelayed(t, forged)
	siptest.AssertReplied(t, forged, 403)
}
