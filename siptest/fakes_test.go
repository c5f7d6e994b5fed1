package siptest_test

import (
	"errors"
	"net/http"
	"regexp"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/asyncsip/asyncsip/async"
	"github.com/asyncsip/asyncsip/siptest"
	"github.com/asyncsip/asyncsip/tm"
)

// gwRoute looks up the gateway of the called number in a database and
// relays there: 404 when there is none, 503 when the database fails.
func gwRoute(c *tm.Context) {
	async.Await(c, query[[][]any](`SELECT gw FROM lcr
		WHERE prefix = ?`, c.Req.Recipient.User), func(rows [][]any, err error) {
		switch {
		case err != nil:
			_ = c.Reply(503, "")
		case len(rows) == 0:
			_ = c.Reply(404, "")
		default:
			_ = c.Relay(rows[0][0].(string))
		}
	}, async.Timeout(time.Second))
}

func TestFakeDB(t *testing.T) {
	t.Parallel()
	db := siptest.NewFakeDB()
	known := db.On("SELECT gw FROM lcr WHERE prefix = ?").WithArgs("1555").
		ReturnRows([]string{"gw"}, []any{"sip:1555@10.0.0.1"})
	db.On("SELECT gw FROM lcr WHERE prefix = ?").WithArgs("1666").ReturnRows([]string{"gw"})
	db.OnRegexp(regexp.MustCompile(`FROM lcr`)).WithArgs("1777").Fail(errors.New("db: connection refused"))
	db.On("SELECT gw FROM lcr WHERE prefix = ?").WithArgs("1888").After(3*time.Second).ReturnRows([]string{"gw"}, []any{"sip:late@10.0.0.1"})
	db.On("SELECT gw FROM lcr WHERE prefix = ?").WithArgs("1999").Never()

	for _, tc := range []struct {
		user    string
		advance time.Duration
		want    int
		relay   string
		state   siptest.AwaitState
	}{
		{"1555", 0, 0, "sip:1555@10.0.0.1", siptest.AwaitCompleted},
		{"1666", 0, 404, "", siptest.AwaitCompleted},
		{"1777", 0, 503, "", siptest.AwaitFailed},
		{"1888", 5 * time.Second, 503, "", siptest.AwaitTimedOut}, // the answer comes after the 1 s timeout
		{"1999", time.Second, 503, "", siptest.AwaitTimedOut},
		{"2000", time.Second, 503, "", siptest.AwaitTimedOut}, // no rule: held until it times out
	} {
		t.Run(tc.user, func(t *testing.T) {
			h := siptest.NewHarness(t, gwRoute, siptest.WithFakes(db))
			res := h.Send(siptest.NewRequest("INVITE", "sip:"+tc.user+"@example.com"))
			h.Clock.Advance(tc.advance)
			if tc.relay != "" {
				siptest.AssertRelayedTo(t, res, tc.relay)
			} else {
				siptest.AssertReplied(t, res, tc.want)
			}
			assert.Equal(t, tc.state, res.Await(0).State())
		})
	}
	assert.Equal(t, 1, known.Hits())
	assert.Len(t, db.Seen(), 5, "every await a rule answered, 2000 excepted")
	assert.Equal(t, "db.query: SELECT gw FROM lcr\n\t\tWHERE prefix = ?", db.Seen()[0])
}

func TestFakeDBDelayBeatsTimeout(t *testing.T) {
	t.Parallel()
	db := siptest.NewFakeDB()
	db.On("SELECT gw FROM lcr WHERE prefix = ?").After(500*time.Millisecond).ReturnRows([]string{"gw"}, []any{"sip:gw@10.0.0.1"})
	h := siptest.NewHarness(t, gwRoute, siptest.WithFakes(db))
	res := h.Send(siptest.NewRequest("INVITE", "sip:1555@example.com"))
	assert.True(t, res.Suspended())
	h.Clock.Advance(499 * time.Millisecond)
	assert.True(t, res.Suspended())
	h.Clock.Advance(time.Millisecond)
	siptest.AssertRelayedTo(t, res, "sip:gw@10.0.0.1")
	assert.Contains(t, res.Await(0).String(), `FakeDB rule "SELECT gw FROM lcr WHERE prefix = ?"`)
}

func TestFakeDBConversions(t *testing.T) {
	t.Parallel()
	type table struct {
		Columns []string
		Rows    [][]any
	}
	rows := siptest.Rows{Columns: []string{"gw", "weight"}, Values: [][]any{{"sip:a@10.0.0.1", int64(10)}, {"sip:b@10.0.0.2", int64(5)}}}
	db := siptest.NewFakeDB()
	db.On("SELECT struct").Return(rows)
	db.On("SELECT ptr").Return(rows)
	db.On("SELECT one").Return(rows)
	db.On("SELECT text").Return(rows)
	db.On("SELECT opaque").Return(rows)
	db.On("SELECT none").ReturnRows([]string{"gw"})
	db.On("SELECT plain").Return(int64(7))

	var got []any
	var errs []error
	keep := func(v any, err error) { got, errs = append(got, v), append(errs, err) }
	h := siptest.NewHarness(t, func(c *tm.Context) {
		switch c.Req.Recipient.User {
		case "struct":
			async.Await(c, query[table]("SELECT struct"), func(v table, err error) { keep(v, err) })
		case "ptr":
			async.Await(c, query[*table]("SELECT ptr"), func(v *table, err error) { keep(v, err) })
		case "one":
			async.Await(c, query[[]any]("SELECT one"), func(v []any, err error) { keep(v, err) })
		case "text":
			async.Await(c, query[string]("SELECT text"), func(v string, err error) { keep(v, err) })
		case "opaque":
			async.Await(c, &opaqueOp{dbOp[*opaqueRows]{verb: "queryrow", sql: "SELECT opaque"}}, func(v *opaqueRows, err error) {
				keep(v.first(), err)
			})
		case "none":
			async.Await(c, &opaqueOp{dbOp[*opaqueRows]{verb: "queryrow", sql: "SELECT none"}}, func(v *opaqueRows, err error) { keep(v, err) })
		case "plain":
			async.Await(c, query[int64]("SELECT plain"), func(v int64, err error) { keep(v, err) })
		}
		_ = c.Reply(200, "")
	}, siptest.WithFakes(db))
	for _, u := range []string{"struct", "ptr", "one", "text", "opaque", "none", "plain"} {
		h.Send(siptest.NewRequest("OPTIONS", "sip:"+u+"@example.com"))
	}
	require.Len(t, got, 7)
	assert.Equal(t, table{Columns: rows.Columns, Rows: rows.Values}, got[0])
	assert.Equal(t, &table{Columns: rows.Columns, Rows: rows.Values}, got[1])
	assert.Equal(t, []any{"sip:a@10.0.0.1", int64(10)}, got[2])
	assert.Equal(t, "sip:a@10.0.0.1", got[3])
	assert.Equal(t, "sip:a@10.0.0.1", got[4], "the op built its own type (RowsConverter)")
	assert.ErrorIs(t, errs[5], errOpaqueNoRows, "the op's conversion error is the await's error")
	assert.Equal(t, int64(7), got[6])
	for i, err := range errs {
		if i != 5 {
			assert.NoError(t, err, "await %d", i)
		}
	}
}

func TestFakeAnswerOfTheWrongTypeFailsTheTest(t *testing.T) {
	t.Parallel()
	rt := &recordingT{TB: t}
	db := siptest.NewFakeDB()
	db.On("SELECT gw FROM lcr WHERE prefix = ?").Return("sip:gw@10.0.0.1") // the route takes [][]any
	h := siptest.NewHarness(rt, gwRoute, siptest.WithFakes(db))
	res := h.Send(siptest.NewRequest("INVITE", "sip:1555@example.com"))
	siptest.AssertReplied(t, res, 503, "the resume got an error, not a panic")
	assert.ErrorIs(t, res.Await(0).Err(), async.ErrResultType)
	assert.Contains(t, rt.failures(), `FakeDB rule "SELECT gw FROM lcr WHERE prefix = ?" answered "db.query: SELECT gw FROM lcr`)
	assert.Contains(t, rt.failures(), "got string, the resume takes [][]interface {}")

	rt2 := &recordingT{TB: t}
	opaque := siptest.NewFakeDB()
	opaque.On("SELECT x").ReturnRows([]string{"x"}, []any{1})
	h2 := siptest.NewHarness(rt2, func(c *tm.Context) {
		async.Await(c, &dbOp[*opaqueRows]{verb: "query", sql: "SELECT x"}, func(*opaqueRows, error) { _ = c.Reply(500, "") })
	}, siptest.WithFakes(opaque))
	h2.Send(siptest.NewRequest("OPTIONS", "sip:x@example.com"))
	assert.Contains(t, rt2.failures(), "cannot turn a siptest.Rows into *siptest_test.opaqueRows")
	assert.Contains(t, rt2.failures(), "siptest.RowsConverter", "the failure says what to do")
}

func TestFakeExec(t *testing.T) {
	t.Parallel()
	ex := siptest.NewFakeExec()
	ex.On("/usr/local/bin/lcr").Output("sip:gw@10.0.0.4\n", 0)
	ex.OnRegexp(regexp.MustCompile(`^/usr/bin/blocklist \+1900`)).Output("", 1)
	ex.On("/usr/bin/blocklist").Output("", 0)
	route := func(c *tm.Context) {
		async.Await(c, &execOp{argv: []string{"/usr/bin/blocklist", c.Req.Recipient.User}}, func(r execResult, err error) {
			if err != nil || r.ExitCode != 0 {
				_ = c.Reply(403, "")
				return
			}
			async.Await(c, &execOp{argv: []string{"/usr/local/bin/lcr", "--number", c.Req.Recipient.User}}, func(r execResult, err error) {
				if err != nil {
					_ = c.Reply(503, "")
					return
				}
				_ = c.Relay(string(r.Stdout[:len(r.Stdout)-1]))
			})
		})
	}
	h := siptest.NewHarness(t, route, siptest.WithFakes(ex))
	siptest.AssertReplied(t, h.Send(siptest.NewRequest("INVITE", "sip:+19005550000@example.com")), 403)
	res := h.Send(siptest.NewRequest("INVITE", "sip:+15551234@example.com"))
	siptest.AssertRelayedTo(t, res, "sip:gw@10.0.0.4")
	assert.Equal(t, "exec: /usr/local/bin/lcr --number +15551234", res.Await(1).Desc)
	assert.Len(t, ex.Seen(), 3)
}

func TestFakeREST(t *testing.T) {
	t.Parallel()
	api := siptest.NewFakeREST()
	api.On("GET", "http://routing/v1/route?to=*").Return(siptest.HTTPResponse{
		Status: 200, Header: http.Header{"Content-Type": {"text/plain"}}, Body: "sip:gw@10.0.0.5"})
	api.OnRegexp("POST", regexp.MustCompile(`/cdr$`)).Status(201, "")
	api.On("", "http://slow/route").After(5*time.Second).Status(200, "sip:slow@10.0.0.5")

	route := func(url string) func(c *tm.Context) {
		return func(c *tm.Context) {
			async.Await(c, &restOp{method: "GET", url: url}, func(r restResult, err error) {
				if err != nil || r.Status != 200 {
					_ = c.Reply(503, "")
					return
				}
				c.Set("ctype", r.ContentType)
				_ = c.Relay(string(r.Body))
			}, async.Timeout(2*time.Second))
		}
	}
	h := siptest.NewHarness(t, route("http://routing/v1/route?to=1555"), siptest.WithFakes(api))
	res := h.Send(siptest.NewRequest("INVITE", "sip:1555@example.com"))
	siptest.AssertRelayedTo(t, res, "sip:gw@10.0.0.5")
	ct, _ := tm.Value[string](res.Context(), "ctype")
	assert.Equal(t, "text/plain", ct, "filled from the header")

	slow := siptest.NewHarness(t, route("http://slow/route"), siptest.WithFakes(api))
	res = slow.Send(siptest.NewRequest("INVITE", "sip:1555@example.com"))
	slow.Clock.Advance(2 * time.Second)
	siptest.AssertReplied(t, res, 503, "REST timeout: 503")
	assert.Equal(t, siptest.AwaitTimedOut, res.Await(0).State())
	slow.Clock.Advance(5 * time.Second)
	siptest.AssertNotRelayed(t, res, "the late answer is dropped")
	assert.Equal(t, siptest.AwaitTimedOut, res.Await(0).State())

	post := siptest.NewHarness(t, func(c *tm.Context) {
		async.Await(c, &restOp{method: "POST", url: "http://billing/v1/cdr"}, func(r restResult, err error) {
			_ = c.Reply(r.Status, "")
		})
	}, siptest.WithFakes(api))
	siptest.AssertReplied(t, post.Send(siptest.NewRequest("MESSAGE", "sip:1555@example.com")), 201)
}

func TestFakeRESTJSON(t *testing.T) {
	t.Parallel()
	type route struct {
		Gateway string `json:"gw"`
	}
	api := siptest.NewFakeREST()
	api.On("GET", "http://routing/json/1555").Status(200, `{"gw":"sip:gw@10.0.0.8"}`)
	api.On("GET", "http://routing/json/1666").Status(404, `{}`)
	h := siptest.NewHarness(t, func(c *tm.Context) {
		op := &jsonOp[route]{restOp{method: "GET", url: "http://routing/json/" + c.Req.Recipient.User}}
		async.Await(c, op, func(r route, err error) {
			if err != nil {
				c.Set("err", err)
				_ = c.Reply(503, "")
				return
			}
			_ = c.Relay(r.Gateway)
		})
	}, siptest.WithFakes(api))
	siptest.AssertRelayedTo(t, h.Send(siptest.NewRequest("INVITE", "sip:1555@example.com")), "sip:gw@10.0.0.8",
		"the op decoded the body itself (HTTPConverter)")
	res := h.Send(siptest.NewRequest("INVITE", "sip:1666@example.com"))
	siptest.AssertReplied(t, res, 503)
	err, _ := tm.Value[error](res.Context(), "err")
	assert.ErrorIs(t, err, errStatus, "the op's conversion error reaches the resume")
}

func TestFakeOpsAndFakeOrder(t *testing.T) {
	t.Parallel()
	ops := siptest.NewFakeOps()
	ops.On("lcr").Return("sip:gw@10.0.0.6")
	second := siptest.NewFakeOps()
	never := second.On("lcr").Return("sip:other@10.0.0.7")
	h := siptest.NewHarness(t, lcrRoute(neverCalled(t)), siptest.WithFakes(siptest.NewFakeDB(), ops, second))
	res := h.Send(siptest.NewRequest("INVITE", "sip:1555@example.com"))
	siptest.AssertRelayedTo(t, res, "sip:gw@10.0.0.6", "the first fake that knows the op answers")
	assert.Zero(t, never.Hits())
	assert.Contains(t, res.Await(0).String(), `FakeOps rule "lcr"`)
}
