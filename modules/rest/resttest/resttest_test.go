package resttest_test

import (
	"errors"
	"io"
	"net/http"
	"regexp"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/asyncsip/asyncsip/async"
	"github.com/asyncsip/asyncsip/modules/rest"
	"github.com/asyncsip/asyncsip/modules/rest/resttest"
	"github.com/asyncsip/asyncsip/siptest"
	"github.com/asyncsip/asyncsip/tm"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// client returns a client whose requests the fakes answer: nothing is
// listening at its BaseURL.
func client(t *testing.T) *rest.Client {
	t.Helper()
	c, err := rest.NewClient(rest.Config{BaseURL: "http://routing.invalid/v1/"})
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close(t.Context()) })
	return c
}

// textRoute relays to the body of a GET of path: 503 when the request
// fails, is not 200, or takes more than 2 s.
func textRoute(c *rest.Client, path string) func(*tm.Context) {
	return func(ctx *tm.Context) {
		async.Await(ctx, c.Get(path), func(r rest.Result, err error) {
			if err != nil || r.Status != 200 {
				ctx.Set("err", err)
				_ = ctx.Reply(503, "")
				return
			}
			ctx.Set("ctype", r.ContentType)
			_ = ctx.Relay(r.Text())
		}, async.Timeout(2*time.Second))
	}
}

func TestFakeAnswersByMethodAndURL(t *testing.T) {
	t.Parallel()
	c := client(t)
	api := resttest.New()
	route := api.On("GET", "http://routing.invalid/v1/route?to=*").Status(200, "sip:gw@10.0.0.5")
	api.On("GET", "http://routing.invalid/v1/down").Fail(rest.ErrConnRefused)
	api.On("", "http://routing.invalid/v1/slow").After(5*time.Second).Status(200, "sip:slow@10.0.0.5")
	api.OnRegexp("GET", regexp.MustCompile(`/busy$`)).Status(503, "busy")

	for _, tc := range []struct {
		path    string
		advance time.Duration
		want    int
		relay   string
		state   siptest.AwaitState
	}{
		{"route?to=1555", 0, 0, "sip:gw@10.0.0.5", siptest.AwaitCompleted}, // relative to BaseURL
		{"down", 0, 503, "", siptest.AwaitFailed},
		{"slow", 2 * time.Second, 503, "", siptest.AwaitTimedOut},
		{"busy", 0, 503, "", siptest.AwaitCompleted},
		{"other", 2 * time.Second, 503, "", siptest.AwaitTimedOut}, // no rule: held until it times out
	} {
		t.Run(tc.path, func(t *testing.T) {
			h := siptest.NewHarness(t, textRoute(c, tc.path), siptest.WithFakes(api))
			res := h.Send(siptest.NewRequest("INVITE", "sip:1555@example.com"))
			h.Clock.Advance(tc.advance)
			if tc.relay != "" {
				siptest.AssertRelayedTo(t, res, tc.relay)
				ct, _ := tm.Value[string](res.Context(), "ctype")
				assert.Equal(t, "text/plain; charset=utf-8", ct)
			} else {
				siptest.AssertReplied(t, res, tc.want)
			}
			assert.Equal(t, tc.state, res.Await(0).State(), res.String())
			h.Clock.Advance(5 * time.Second)
			assert.Equal(t, tc.state, res.Await(0).State(), "a late answer is dropped")
		})
	}
	assert.Equal(t, 1, route.Hits())
	assert.Equal(t, []string{"GET http://routing.invalid/v1/route?to=1555", "GET http://routing.invalid/v1/down",
		"GET http://routing.invalid/v1/slow", "GET http://routing.invalid/v1/busy"}, api.Seen())
}

// A rest.JSON op gets the decoded body, or the error rest.JSON gives for
// the response: the fake answers as the server would.
func TestFakeAnswersJSON(t *testing.T) {
	t.Parallel()
	type route struct {
		Gateway string `json:"gw"`
	}
	c := client(t)
	api := resttest.New()
	api.On("GET", "http://routing.invalid/v1/json/1555").JSON(200, route{Gateway: "sip:gw@10.0.0.8"})
	api.On("GET", "http://routing.invalid/v1/json/1666").JSON(404, map[string]string{"error": "unknown"})
	api.On("GET", "http://routing.invalid/v1/json/1777").Status(200, "not json")
	h := siptest.NewHarness(t, func(ctx *tm.Context) {
		async.Await(ctx, rest.JSON[route](c.GetJSON("json/"+ctx.Recipient().User)), func(r route, err error) {
			if err != nil {
				ctx.Set("err", err)
				_ = ctx.Reply(503, "")
				return
			}
			_ = ctx.Relay(r.Gateway)
		})
	}, siptest.WithFakes(api))
	res := h.Send(siptest.NewRequest("INVITE", "sip:1555@example.com"))
	siptest.AssertRelayedTo(t, res, "sip:gw@10.0.0.8")
	assert.Contains(t, res.Await(0).String(), `rest: GET http://routing.invalid/v1/json/1555`)
	assert.Contains(t, res.Await(0).String(), `resttest.Fake rule "GET http://routing.invalid/v1/json/1555"`)

	res = h.Send(siptest.NewRequest("INVITE", "sip:1666@example.com"))
	siptest.AssertReplied(t, res, 503)
	err, _ := tm.Value[error](res.Context(), "err")
	var se *rest.StatusError
	require.ErrorAs(t, err, &se)
	assert.Equal(t, 404, se.Status)
	assert.JSONEq(t, `{"error":"unknown"}`, string(se.Body))

	res = h.Send(siptest.NewRequest("INVITE", "sip:1777@example.com"))
	err, _ = tm.Value[error](res.Context(), "err")
	assert.ErrorIs(t, err, rest.ErrDecode)
}

// OnRequest matches on anything the request carries: here the JSON body
// of a POST and the client's default header.
func TestFakeOnRequest(t *testing.T) {
	t.Parallel()
	c, err := rest.NewClient(rest.Config{Header: http.Header{"Authorization": {"Bearer k"}}})
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close(t.Context()) })
	api := resttest.New()
	api.OnRequest("a CDR of 1555", func(r *http.Request) bool {
		b, err := io.ReadAll(r.Body)
		return err == nil && r.Header.Get("Authorization") == "Bearer k" && string(b) == `{"from":"1555"}`
	}).Respond(rest.Result{Status: 201})
	api.On("POST", "http://billing.invalid/cdr").Fail(errors.New("unexpected body"))
	h := siptest.NewHarness(t, func(ctx *tm.Context) {
		body := map[string]string{"from": ctx.Req().From().Address.User}
		async.Await(ctx, c.PostJSON("http://billing.invalid/cdr", body), func(r rest.Result, err error) {
			if err != nil {
				_ = ctx.Reply(500, "")
				return
			}
			_ = ctx.Reply(r.Status-1, "")
		})
	}, siptest.WithFakes(api))
	siptest.AssertReplied(t, h.Send(siptest.NewRequest("MESSAGE", "sip:x@example.com", siptest.WithFrom("sip:1555@example.com"))), 200)
	siptest.AssertReplied(t, h.Send(siptest.NewRequest("MESSAGE", "sip:x@example.com", siptest.WithFrom("sip:1666@example.com"))), 500)
}
