package siptest_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/asyncsip/asyncsip/async"
	"github.com/asyncsip/asyncsip/siptest"
	"github.com/asyncsip/asyncsip/tm"
)

// The routing logic under test: a least-cost-routing proxy.
//
//   - In-dialog requests follow their route set.
//   - REGISTER is refused: this proxy routes calls only.
//   - A new call is looked up by the called number (lookupGateway stands
//     for a database query; with modules/db the op would be
//     handle.QueryRow(...) and the test would use modules/db/dbtest) and
//     relayed to the gateway found: 404 when there is none, 503 when the
//     lookup fails or takes more than 2 s.
//   - When the gateway is busy or failing, the failure route tries the
//     backup gateway, once.
var lcr = tm.Routes{Request: routeCall, Failure: failover}

const backupGateway = "sip:backup@10.0.0.9"

// lookupGateway is the blocking lookup (a database in production).
var lookupGateway = func(ctx context.Context, number string) (string, error) {
	return "", errors.New("no database in this example")
}

func routeCall(c *tm.Context) {
	if c.InDialog() {
		_ = c.Relay()
		return
	}
	if c.Method() == sip.REGISTER {
		_ = c.Reply(403, "Registrations not accepted here")
		return
	}
	number := c.Recipient().User
	async.Await(c, async.Blocking(func(ctx context.Context) (string, error) {
		return lookupGateway(ctx, number)
	}, async.Name("lcr")), func(gw string, err error) {
		switch {
		case err != nil:
			_ = c.Reply(503, "Routing unavailable")
		case gw == "":
			_ = c.Reply(404, "No route")
		default:
			_ = c.Relay(gw)
		}
	}, async.Timeout(2*time.Second))
}

func failover(c *tm.Context) {
	code := c.Resp.StatusCode
	if (code == 486 || code >= 500) && len(c.Branches()) == 1 {
		_ = c.Relay(backupGateway)
	}
}

// TestLCRRoutes is a table-driven test of the routes above: each case
// sends a request, scripts the lookup and the gateways' answers, and checks
// what the proxy sent upstream and downstream.
func TestLCRRoutes(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		req      *sip.Request
		inDialog bool            // sent along the proxy's signed Record-Route (Harness.InDialog)
		lookup   *siptest.Answer // how the lookup answers (nil: no lookup expected)
		advance  time.Duration   // clock movement after the request
		answers  []int           // responses of the latest branch, in order
		relays   []string        // where the call went, in order
		replies  []int           // what the caller got
	}{
		{
			name:    "routed call",
			req:     siptest.NewRequest("INVITE", "sip:+15551234@example.com"),
			lookup:  &siptest.Answer{Value: "sip:+15551234@10.0.0.2"},
			answers: []int{180, 200},
			relays:  []string{"sip:+15551234@10.0.0.2"},
			replies: []int{100, 180, 200},
		},
		{
			name:    "no route",
			req:     siptest.NewRequest("INVITE", "sip:+999@example.com"),
			lookup:  &siptest.Answer{Value: ""},
			replies: []int{100, 404},
		},
		{
			name:    "lookup fails",
			req:     siptest.NewRequest("INVITE", "sip:+15551234@example.com"),
			lookup:  &siptest.Answer{Err: errors.New("connection refused")},
			replies: []int{100, 503},
		},
		{
			name:    "lookup too slow",
			req:     siptest.NewRequest("INVITE", "sip:+15551234@example.com"),
			lookup:  &siptest.Answer{Value: "sip:late@10.0.0.2", Delay: 3 * time.Second},
			advance: 2 * time.Second,
			replies: []int{100, 503},
		},
		{
			name:    "busy gateway fails over",
			req:     siptest.NewRequest("INVITE", "sip:+15551234@example.com"),
			lookup:  &siptest.Answer{Value: "sip:+15551234@10.0.0.2"},
			answers: []int{486, 180, 200},
			relays:  []string{"sip:+15551234@10.0.0.2", backupGateway},
			replies: []int{100, 180, 200},
		},
		{
			name:    "backup busy too",
			req:     siptest.NewRequest("INVITE", "sip:+15551234@example.com"),
			lookup:  &siptest.Answer{Value: "sip:+15551234@10.0.0.2"},
			answers: []int{503, 486},
			relays:  []string{"sip:+15551234@10.0.0.2", backupGateway},
			replies: []int{100, 486},
		},
		{
			name:    "register refused",
			req:     siptest.NewRegister("sip:alice@example.com", "sip:alice@192.0.2.7", 3600),
			replies: []int{403},
		},
		{
			name:     "in-dialog BYE follows its route",
			req:      siptest.NewBye("sip:+15551234@10.0.0.2:5060"),
			inDialog: true,
			answers:  []int{200},
			relays:   []string{"sip:+15551234@10.0.0.2:5060"},
			replies:  []int{200},
		},
		{
			name:    "loop protection",
			req:     siptest.NewRequest("INVITE", "sip:+15551234@example.com", siptest.WithMaxForwards(0)),
			replies: []int{483},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			fakes := siptest.Answers{}
			if tc.lookup != nil {
				fakes["lcr"] = *tc.lookup
			}
			h := siptest.NewHarness(t, lcr, siptest.WithFakes(fakes))
			if tc.inDialog {
				h.InDialog(tc.req)
			}

			res := h.Send(tc.req)
			h.Clock.Advance(tc.advance)
			for _, code := range tc.answers {
				branches := res.Relayed()
				if len(branches) == 0 {
					t.Fatalf("no branch to answer %d\n%s", code, res)
				}
				branches[len(branches)-1].Respond(code)
			}

			var relays []string
			for _, b := range res.Relayed() {
				relays = append(relays, b.Target())
			}
			if fmt.Sprint(relays) != fmt.Sprint(tc.relays) {
				t.Errorf("relayed to %v, want %v\n%s", relays, tc.relays, res)
			}
			siptest.AssertReplies(t, res, tc.replies)
		})
	}
}

// NewRequest fills every mandatory header; options change them.
func ExampleNewRequest() {
	req := siptest.NewRequest("INVITE", "sip:+15551234@example.com",
		siptest.WithBranch("z9hG4bK-1"), siptest.WithFromTag("a1"), siptest.WithCallID("call-1"),
		siptest.WithHeader("X-Account", "42"))
	fmt.Print(strings.ReplaceAll(req.String(), "\r\n", "\n"))
	// Output:
	// INVITE sip:+15551234@example.com SIP/2.0
	// Via: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-1;rport
	// Max-Forwards: 70
	// From: <sip:alice@example.com>;tag=a1
	// To: <sip:+15551234@example.com>
	// Call-ID: call-1
	// CSeq: 1 INVITE
	// Contact: <sip:alice@127.0.0.1:5061>
	// X-Account: 42
	// Content-Length: 0
}

// NewRegister builds a REGISTER of a contact for an address-of-record.
func ExampleNewRegister() {
	req := siptest.NewRegister("sip:alice@example.com", "sip:alice@192.0.2.7:5060", 600,
		siptest.WithBranch("z9hG4bK-2"), siptest.WithFromTag("r1"), siptest.WithCallID("reg-1"))
	fmt.Print(strings.ReplaceAll(req.String(), "\r\n", "\n"))
	// Output:
	// REGISTER sip:example.com SIP/2.0
	// Via: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-2;rport
	// Max-Forwards: 70
	// From: <sip:alice@example.com>;tag=r1
	// To: <sip:alice@example.com>
	// Call-ID: reg-1
	// CSeq: 1 REGISTER
	// Contact: <sip:alice@192.0.2.7:5060>
	// Expires: 600
	// Content-Length: 0
}
