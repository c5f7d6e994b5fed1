package tm

import (
	"fmt"
	"testing"

	"github.com/emiago/sipgo/sip"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/asyncsip/asyncsip/async"
)

func TestMaxBreadth(t *testing.T) {
	var err error
	r := newRig(t, Config{MaxBreadth: 2}, Routes{Request: func(c *Context) {
		err = c.Relay("sip:a@127.0.0.1:5062", "sip:b@127.0.0.1:5063", "sip:c@127.0.0.1:5064")
	}})
	r.recv(uacAddr, invite("mb", "z9hG4bK-mb"))
	r.expect("127.0.0.1:5061 440")
	assert.ErrorIs(t, err, ErrMaxBreadth)
}

func TestMaxTransactionsSheds503(t *testing.T) {
	sp := &suspender{}
	r := newRig(t, Config{MaxTransactions: 2}, Routes{Request: sp.route(nil)})
	for i := 0; i < 3; i++ {
		r.recv(uacAddr, request("MESSAGE", "sip:bob@127.0.0.1:5062", fmt.Sprint("mt-", i), fmt.Sprint("z9hG4bK-mt", i), 1, ""))
	}
	out := r.take()
	require.Len(t, out, 1)
	assert.Equal(t, "503", short(out[0].msg))
	assert.NotEmpty(t, out[0].msg.GetHeaders("Retry-After"))
	assert.EqualValues(t, 1, r.s.Stats().Overload)
}

func TestMaxSuspendedFailsFast(t *testing.T) {
	var errs []error
	r := newRig(t, Config{MaxSuspended: 1}, Routes{Request: func(c *Context) {
		_, err := c.Suspend()
		errs = append(errs, err)
		if err != nil {
			_ = c.Reply(503, "")
		}
	}})
	r.recv(uacAddr, request("MESSAGE", "sip:bob@127.0.0.1:5062", "ms-1", "z9hG4bK-ms1", 1, ""))
	r.recv(uacAddr, request("MESSAGE", "sip:bob@127.0.0.1:5062", "ms-2", "z9hG4bK-ms2", 1, ""))
	require.Len(t, errs, 2)
	assert.NoError(t, errs[0])
	assert.ErrorIs(t, errs[1], async.ErrOverloaded)
	r.expect("127.0.0.1:5061 503")
}

func TestHeaderInjectionRefused(t *testing.T) {
	cases := []struct {
		name string
		edit func(c *Context) error
	}{
		{"generic header", func(c *Context) error {
			c.Req().AppendHeader(sip.NewHeader("X-Name", "evil\r\nContact: <sip:attacker@x>"))
			return c.Relay()
		}},
		{"from display name", func(c *Context) error {
			c.Req().From().DisplayName = "a\r\nX: y"
			return c.Relay()
		}},
		{"request-uri user", func(c *Context) error { c.Req().Recipient.User = "bob\r\nX: y"; return c.Relay() }},
		{"reply header", func(c *Context) error {
			return c.Reply(403, "Forbidden", sip.NewHeader("Warning", "399 x \"a\nb\""))
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var err error
			r := newRig(t, Config{}, Routes{Request: func(c *Context) {
				err = tc.edit(c)
				if err != nil && !c.FinalSent() {
					_ = c.Reply(500, "")
				}
			}})
			r.recv(uacAddr, request("MESSAGE", "sip:bob@127.0.0.1:5062", "inj", "z9hG4bK-inj", 1, ""))
			for _, s := range r.take() {
				assert.NotEqual(t, uasAddr, s.to, "nothing forwarded")
				for _, h := range s.msg.GetHeaders("Contact") {
					assert.NotContains(t, h.Value(), "attacker")
				}
			}
			assert.ErrorIs(t, err, ErrInjection)
		})
	}
}

func TestNoAmplificationOn400(t *testing.T) {
	r := newRig(t, Config{}, Routes{Request: relayAll})
	// A tiny malformed request whose 400 would carry a long reason and
	// To tag: the answer must not be larger than what was received.
	raw := "OPTIONS sip:b@c SIP/2.0\r\nVia: SIP/2.0/UDP 1.2.3.4;branch=z9hG4bKa\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:b@c>\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\n\r\n"
	r.recv(uacAddr, raw)
	for _, s := range r.take() {
		assert.LessOrEqual(t, len(s.msg.String()), len(raw))
	}
}
