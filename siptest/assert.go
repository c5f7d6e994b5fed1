package siptest

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/emiago/sipgo/sip"
)

// TB is what the assertions need of a test: *testing.T, *testing.B and
// *testing.F satisfy it, and so does any other recorder of failures.
type TB interface {
	Helper()
	Errorf(format string, args ...any)
}

// Assertions in the style of testify's assert package: each reports
// whether it held, and on failure calls t.Errorf with what was expected,
// what happened, and the whole exchange (every SIP message in and out).
// msgAndArgs, if given, is a message (a format and its arguments) printed
// first. Wrap them in require-style checks with `if !siptest.AssertX(...)
// { t.FailNow() }`.

// AssertReplied asserts that the response the proxy sent upstream is code:
// the final response, or the last provisional one when there is no final.
func AssertReplied(t TB, res *Result, code int, msgAndArgs ...any) bool {
	t.Helper()
	got := res.Final()
	if got == nil {
		got = res.LastReply()
	}
	if got != nil && got.StatusCode == code {
		return true
	}
	return fail(t, res, fmt.Sprintf("expected the proxy to reply %d, it replied %s", code, codes(res)), msgAndArgs)
}

// AssertReplies asserts that the proxy sent exactly these distinct
// responses upstream, in order (100 Trying included): retransmissions of a
// response — fired by Clock.Advance (Timer G) or by a retransmitted
// request — are not counted. AssertRepliesOnWire counts them.
func AssertReplies(t TB, res *Result, want []int, msgAndArgs ...any) bool {
	t.Helper()
	if slices.Equal(res.codes(), want) {
		return true
	}
	return fail(t, res, fmt.Sprintf("expected the replies %v, got %s", want, codes(res)), msgAndArgs)
}

// AssertRepliesOnWire asserts that the proxy sent exactly these responses
// upstream, in order, every copy as it went on the wire: retransmissions
// included.
func AssertRepliesOnWire(t TB, res *Result, want []int, msgAndArgs ...any) bool {
	t.Helper()
	if slices.Equal(statusCodes(res.replies), want) {
		return true
	}
	return fail(t, res, fmt.Sprintf("expected the replies on the wire %v, got %s", want, wireCodes(res)), msgAndArgs)
}

// AssertRelayedTo asserts that a stateful branch was relayed to target: a
// Request-URI ("sip:bob@10.0.0.2") or a next-hop address ("10.0.0.2:5060").
func AssertRelayedTo(t TB, res *Result, target string, msgAndArgs ...any) bool {
	t.Helper()
	return assertSent(t, res, res.Relayed(), "relayed", target, msgAndArgs)
}

// AssertForwardedTo asserts that the request was forwarded statelessly to
// target (a Request-URI or a next-hop address).
func AssertForwardedTo(t TB, res *Result, target string, msgAndArgs ...any) bool {
	t.Helper()
	return assertSent(t, res, res.Forwarded(), "forwarded", target, msgAndArgs)
}

// AssertNotRelayed asserts that nothing was sent downstream.
func AssertNotRelayed(t TB, res *Result, msgAndArgs ...any) bool {
	t.Helper()
	if len(res.relayed) == 0 {
		return true
	}
	return fail(t, res, "expected nothing sent downstream, got "+targets(res.relayed), msgAndArgs)
}

// AssertDropped asserts that the request got no answer: no final response,
// nothing sent downstream, nothing awaited.
func AssertDropped(t TB, res *Result, msgAndArgs ...any) bool {
	t.Helper()
	if res.dropped() {
		return true
	}
	return fail(t, res, fmt.Sprintf("expected the request to be dropped; replies %s, downstream %s, suspended %v",
		codes(res), targets(res.relayed), res.Suspended()), msgAndArgs)
}

// AssertAwaiting asserts that a route of the transaction waits on the op
// that op names, as WithPassThrough matches them ("db.query", "lcr").
func AssertAwaiting(t TB, res *Result, op string, msgAndArgs ...any) bool {
	t.Helper()
	var seen []string
	for _, w := range res.awaits {
		if (w.state == AwaitPending || w.state == AwaitRunning) && matchOp(w, op) {
			return true
		}
		seen = append(seen, w.String())
	}
	return fail(t, res, fmt.Sprintf("expected a pending await of %q; awaits: %v", op, seen), msgAndArgs)
}

// AssertHeader asserts that msg (a Reply, a Relayed, any sip.Message) has a
// header name whose first value is want.
func AssertHeader(t TB, msg interface {
	GetHeader(name string) sip.Header
	String() string
}, name, want string, msgAndArgs ...any) bool {
	t.Helper()
	h := msg.GetHeader(name)
	if h != nil && h.Value() == want {
		return true
	}
	got := "no such header"
	if h != nil {
		got = fmt.Sprintf("%q", h.Value())
	}
	return failf(t, fmt.Sprintf("siptest: expected %s: %q, got %s in\n%s", name, want, got, indent(msg.String())), msgAndArgs)
}

func assertSent(t TB, res *Result, sent []*Relayed, verb, target string, msgAndArgs []any) bool {
	for _, x := range sent {
		if matchTarget(x, target) {
			return true
		}
	}
	return fail(t, res, fmt.Sprintf("expected the request %s to %s, it was %s to %s", verb, target, verb, targets(sent)), msgAndArgs)
}

// matchTarget compares target with x's next hop ("ip:port") or
// Request-URI (both parsed, so that equivalent spellings match).
func matchTarget(x *Relayed, target string) bool {
	if ap, err := netip.ParseAddrPort(target); err == nil {
		return x.Addr == ap
	}
	var u sip.Uri
	if err := sip.ParseUri(target, &u); err != nil {
		return false
	}
	return u.String() == x.Recipient.String()
}

func targets(sent []*Relayed) string {
	if len(sent) == 0 {
		return "nowhere"
	}
	var s []string
	for _, x := range sent {
		s = append(s, fmt.Sprintf("%s %s (next hop %s)", x.Method, x.Target(), x.Addr))
	}
	return "[" + strings.Join(s, ", ") + "]"
}

// codes lists the distinct replies of res (see Result.Replies).
func codes(res *Result) string { return replyList(res.Replies()) }

// wireCodes lists every reply of res, retransmissions marked.
func wireCodes(res *Result) string { return replyList(res.replies) }

func replyList(replies []*Reply) string {
	if len(replies) == 0 {
		return "nothing"
	}
	var s []string
	for _, r := range replies {
		note := ""
		if r.retransmission {
			note = " (retransmission)"
		}
		s = append(s, fmt.Sprintf("%d %s%s", r.StatusCode, r.Reason, note))
	}
	return "[" + strings.Join(s, ", ") + "]"
}

func fail(t TB, res *Result, msg string, msgAndArgs []any) bool {
	t.Helper()
	return failf(t, "siptest: "+msg+"\n"+res.String(), msgAndArgs)
}

// failf reports msg, after the caller's message if there is one.
func failf(t TB, msg string, msgAndArgs []any) bool {
	t.Helper()
	if m := userMessage(msgAndArgs); m != "" {
		msg = m + "\n" + msg
	}
	t.Errorf("%s", msg)
	return false
}

// userMessage formats msgAndArgs: a format string and its arguments, or any
// single value.
func userMessage(msgAndArgs []any) string {
	if len(msgAndArgs) == 0 {
		return ""
	}
	if f, ok := msgAndArgs[0].(string); ok {
		return fmt.Sprintf(f, msgAndArgs[1:]...)
	}
	return fmt.Sprint(msgAndArgs...)
}
