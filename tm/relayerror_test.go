package tm

import (
	"testing"

	"github.com/emiago/sipgo/sip"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// SIPp's built-in UAC sends its BYE to the proxy's own URI, without the
// Route of the dialog: refused 481, with a reason that says why (it used to
// be 503 from the loop check).
func TestByeToSelfWithoutRouteIs481(t *testing.T) {
	r := newRig(t, Config{}, Routes{Request: relayAll})
	r.recv(uacAddr, replaceTo(request("BYE", "sip:bob@127.0.0.1:5060", "self-bye", "z9hG4bK-sb", 2, "")))
	out := r.expect("127.0.0.1:5061 481")
	assert.Equal(t, "Call/Transaction Does Not Exist (request addressed to this proxy, no Route)",
		out[0].msg.(*sip.Response).Reason)
	assert.Zero(t, r.s.Stats().Abandoned, "a failed Relay is not an abandoned route")
}

// Relay never answers when it fails: each path of a route that handles the
// error itself, and of one that leaves it to tm.
func TestRelayFailureAnswer(t *testing.T) {
	for _, tc := range []struct {
		name   string
		cfg    Config
		route  func(c *Context) error
		want   []string
		reason string
		err    error
	}{
		{name: "route replies its own code", route: func(c *Context) error {
			err := c.Relay("sip:bob@127.0.0.1:5060")
			require.NoError(t, c.Reply(502, "Bad Gateway"))
			return err
		}, want: []string{"127.0.0.1:5061 502"}, err: ErrLoop},
		{name: "next target after a failed one", route: func(c *Context) error {
			err := c.Relay("sip:bob@127.0.0.1:5060")
			require.NoError(t, c.Relay("sip:bob@127.0.0.1:5062"))
			return err
		}, want: []string{"127.0.0.1:5062 MESSAGE"}, err: ErrLoop},
		{name: "destination is this proxy", route: func(c *Context) error {
			require.NoError(t, c.SetDestination("127.0.0.1:5060"))
			return c.Relay()
		}, want: []string{"127.0.0.1:5061 482"}, reason: "Loop Detected (next hop is this proxy)", err: ErrLoop},
		{name: "bad target", route: func(c *Context) error { return c.Relay("sip:") },
			want: []string{"127.0.0.1:5061 500"}, err: ErrBadTarget},
		{name: "host without resolver", route: func(c *Context) error { return c.Relay("sip:bob@gw.example") },
			want: []string{"127.0.0.1:5061 503"}, reason: "Service Unavailable (no route to the next hop)", err: ErrNoRoute},
		{name: "max breadth", cfg: Config{MaxBreadth: 1}, route: func(c *Context) error {
			return c.Relay("sip:a@127.0.0.1:5062", "sip:b@127.0.0.1:5063")
		}, want: []string{"127.0.0.1:5061 440"}, err: ErrMaxBreadth},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var err error
			r := newRig(t, tc.cfg, Routes{Request: func(c *Context) { err = tc.route(c) }})
			r.recv(uacAddr, request("MESSAGE", "sip:bob@127.0.0.1:5062", "rf-"+tc.name, "z9hG4bK-rf", 1, ""))
			out := r.expect(tc.want...)
			require.ErrorIs(t, err, tc.err)
			if tc.reason != "" {
				assert.Equal(t, tc.reason, out[0].msg.(*sip.Response).Reason)
			}
		})
	}
}

// In the failure route a Relay that fails sends nothing: the best response
// goes upstream.
func TestFailureRouteRelayFailureSendsBest(t *testing.T) {
	var err error
	r := newRig(t, Config{}, Routes{
		Request: relayAll,
		Failure: func(c *Context) { err = c.Relay("sip:bob@127.0.0.1:5060") },
	})
	r.recv(uacAddr, invite("rf-fail", "z9hG4bK-rff"))
	out := r.expect("127.0.0.1:5061 100", "127.0.0.1:5062 INVITE")
	r.recvMsg(uasAddr, respond(out[1].msg, 486, "b1"))
	r.expect("127.0.0.1:5062 ACK", "127.0.0.1:5061 486")
	require.ErrorIs(t, err, ErrLoop)
}
