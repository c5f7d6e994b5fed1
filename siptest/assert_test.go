package siptest_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/asyncsip/asyncsip/async"
	"github.com/asyncsip/asyncsip/siptest"
	"github.com/asyncsip/asyncsip/tm"
)

// errorsT is a siptest.TB that keeps the failure messages.
type errorsT struct{ msgs []string }

func (e *errorsT) Helper() {}

func (e *errorsT) Errorf(format string, args ...any) {
	e.msgs = append(e.msgs, fmt.Sprintf(format, args...))
}

func (e *errorsT) last() string {
	if len(e.msgs) == 0 {
		return ""
	}
	return e.msgs[len(e.msgs)-1]
}

func TestAssertions(t *testing.T) {
	t.Parallel()
	h := siptest.NewHarness(t, func(c *tm.Context) {
		switch c.Recipient().User {
		case "relay":
			_ = c.Relay("sip:bob@10.0.0.2")
		case "forward":
			_ = c.Forward()
		case "drop":
			c.Drop()
		case "wait":
			async.Await(c, query[string]("SELECT 1"), nil)
		default:
			_ = c.Reply(404, "", sip.NewHeader("X-Why", "unknown"))
		}
	})
	send := func(user string) *siptest.Result {
		return h.Send(siptest.NewRequest("INVITE", "sip:"+user+"@10.0.0.9"))
	}
	reply, relay, fwd, drop, wait := send("nobody"), send("relay"), send("forward"), send("drop"), send("wait")

	for _, tc := range []struct {
		name   string
		check  func(t *errorsT) bool
		ok     bool
		expect []string // in the failure message
	}{
		{"replied", func(e *errorsT) bool { return siptest.AssertReplied(e, reply, 404) }, true, nil},
		{"replied other", func(e *errorsT) bool { return siptest.AssertReplied(e, reply, 200, "user %s", "nobody") }, false,
			[]string{"expected the proxy to reply 200, it replied [404 Not Found]", "user nobody",
				"INVITE sip:nobody@10.0.0.9 SIP/2.0", "SIP/2.0 404 Not Found", "X-Why: unknown"}},
		{"replied provisional only", func(e *errorsT) bool { return siptest.AssertReplied(e, relay, 100) }, true, nil},
		{"replied nothing", func(e *errorsT) bool { return siptest.AssertReplied(e, drop, 200) }, false, []string{"it replied nothing"}},
		{"replies", func(e *errorsT) bool { return siptest.AssertReplies(e, reply, []int{404}) }, true, nil},
		{"replies differ", func(e *errorsT) bool { return siptest.AssertReplies(e, reply, []int{100, 404}) }, false,
			[]string{"expected the replies [100 404], got [404 Not Found]"}},
		{"replies on the wire", func(e *errorsT) bool { return siptest.AssertRepliesOnWire(e, reply, []int{404}) }, true, nil},
		{"replies on the wire differ", func(e *errorsT) bool { return siptest.AssertRepliesOnWire(e, relay, []int{100, 100}) }, false,
			[]string{"expected the replies on the wire [100 100], got [100 Trying]"}},
		{"relayed", func(e *errorsT) bool { return siptest.AssertRelayedTo(e, relay, "sip:bob@10.0.0.2") }, true, nil},
		{"relayed by address", func(e *errorsT) bool { return siptest.AssertRelayedTo(e, relay, "10.0.0.2:5060") }, true, nil},
		{"relayed elsewhere", func(e *errorsT) bool { return siptest.AssertRelayedTo(e, relay, "sip:carol@10.0.0.3") }, false,
			[]string{"expected the request relayed to sip:carol@10.0.0.3, it was relayed to [INVITE sip:bob@10.0.0.2 (next hop 10.0.0.2:5060)]",
				"proxy -> 10.0.0.2:5060", "Record-Route: <sip:127.0.0.1:5060;lr;sig="}},
		{"relayed nowhere", func(e *errorsT) bool { return siptest.AssertRelayedTo(e, reply, "sip:bob@10.0.0.2") }, false,
			[]string{"it was relayed to nowhere"}},
		{"relayed bad target", func(e *errorsT) bool { return siptest.AssertRelayedTo(e, relay, "::") }, false, nil},
		{"forwarded", func(e *errorsT) bool { return siptest.AssertForwardedTo(e, fwd, "10.0.0.9:5060") }, true, nil},
		{"forwarded is not relayed", func(e *errorsT) bool { return siptest.AssertRelayedTo(e, fwd, "10.0.0.9:5060") }, false, nil},
		{"not relayed", func(e *errorsT) bool { return siptest.AssertNotRelayed(e, reply) }, true, nil},
		{"not relayed fails", func(e *errorsT) bool { return siptest.AssertNotRelayed(e, fwd) }, false,
			[]string{"expected nothing sent downstream, got [INVITE sip:forward@10.0.0.9 (next hop 10.0.0.9:5060)]"}},
		{"dropped", func(e *errorsT) bool { return siptest.AssertDropped(e, drop) }, true, nil},
		{"dropped fails", func(e *errorsT) bool { return siptest.AssertDropped(e, wait) }, false, []string{"suspended true"}},
		{"awaiting", func(e *errorsT) bool { return siptest.AssertAwaiting(e, wait, "db.query") }, true, nil},
		{"awaiting other", func(e *errorsT) bool { return siptest.AssertAwaiting(e, wait, "rest") }, false,
			[]string{`expected a pending await of "rest"`, `"db.query: SELECT 1"`}},
		{"header", func(e *errorsT) bool { return siptest.AssertHeader(e, reply.LastReply(), "X-Why", "unknown") }, true, nil},
		{"header differs", func(e *errorsT) bool { return siptest.AssertHeader(e, reply.LastReply(), "X-Why", "known") }, false,
			[]string{`expected X-Why: "known", got "unknown" in`, "SIP/2.0 404 Not Found"}},
		{"header missing", func(e *errorsT) bool { return siptest.AssertHeader(e, relay.Branch(0), "X-Why", "x") }, false,
			[]string{"got no such header", "INVITE sip:bob@10.0.0.2 SIP/2.0"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := &errorsT{}
			require.Equal(t, tc.ok, tc.check(e))
			if tc.ok {
				require.Empty(t, e.msgs)
				return
			}
			require.Len(t, e.msgs, 1)
			for _, want := range tc.expect {
				assert.Contains(t, e.last(), want)
			}
			assert.True(t, strings.Contains(e.last(), "siptest: ") || strings.Contains(e.last(), "expected"))
		})
	}
}

// Retransmissions of a final response fired by Clock.Advance (Timer G) are
// on the wire but not among the distinct replies AssertReplies checks.
func TestAssertRepliesIgnoresRetransmissions(t *testing.T) {
	t.Parallel()
	h := siptest.NewHarness(t, func(c *tm.Context) {
		async.Await(c, query[string]("SELECT gw"), func(gw string, err error) {
			_ = c.Reply(504, "Lookup Timeout")
		}, async.Timeout(2*time.Second))
	})
	res := h.Send(siptest.NewRequest("INVITE", "sip:bob@example.com"))
	h.Clock.Advance(2 * time.Second) // the await times out: 504
	h.Clock.Advance(2 * time.Second) // Timer G: the 504 again at +0.5 s and +1.5 s
	assert.True(t, siptest.AssertReplies(t, res, []int{100, 504}))
	assert.True(t, siptest.AssertRepliesOnWire(t, res, []int{100, 504, 504, 504}))
	assert.Len(t, res.Replies(), 2)
	assert.Equal(t, 504, res.LastReply().StatusCode)

	e := &errorsT{}
	assert.False(t, siptest.AssertReplies(e, res, []int{100, 504, 504}))
	assert.Contains(t, e.last(), "expected the replies [100 504 504], got [100 Trying, 504 Lookup Timeout]")
	assert.Contains(t, e.last(), "(retransmission)", "the exchange marks them")
	assert.False(t, siptest.AssertRepliesOnWire(e, res, []int{100, 504}))
	assert.Contains(t, e.last(), "got [100 Trying, 504 Lookup Timeout, 504 Lookup Timeout (retransmission), 504 Lookup Timeout (retransmission)]")
}
