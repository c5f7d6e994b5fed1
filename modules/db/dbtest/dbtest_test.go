package dbtest_test

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/asyncsip/asyncsip/async"
	"github.com/asyncsip/asyncsip/modules/db"
	"github.com/asyncsip/asyncsip/modules/db/dbtest"
	_ "github.com/asyncsip/asyncsip/modules/db/sqlite"
	"github.com/asyncsip/asyncsip/siptest"
	"github.com/asyncsip/asyncsip/tm"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// handle opens a database the fakes stand in front of: no statement of
// these tests reaches it.
func handle(t *testing.T) *db.Handle {
	t.Helper()
	h, err := db.Open(db.DriverSQLite, ":memory:")
	require.NoError(t, err)
	t.Cleanup(func() { _ = h.Close() })
	return h
}

// gwRoute relays to the gateway a QueryRow finds for the called user: 404
// when there is none, 503 when the database fails or is slower than 1 s.
func gwRoute(h *db.Handle) func(*tm.Context) {
	return func(c *tm.Context) {
		async.Await(c, h.QueryRow(`SELECT gw FROM lcr
			WHERE user = ?`, c.Recipient().User), func(row db.Row, err error) {
			switch {
			case errors.Is(err, db.ErrNoRows):
				_ = c.Reply(404, "")
			case err != nil:
				_ = c.Reply(503, "")
			default:
				_ = c.Relay("sip:" + c.Recipient().User + "@" + row.String(0))
			}
		}, async.Timeout(time.Second))
	}
}

// A route written against db's ops is tested with a dbtest.Fake: it
// matches the op's SQL and arguments and answers with real db results.
func TestFakeAnswersRoutes(t *testing.T) {
	t.Parallel()
	h := handle(t)
	fake := dbtest.New()
	bob := fake.On(`SELECT gw FROM lcr WHERE user = ?`).WithArgs("bob").Rows([]string{"gw"}, []any{"10.0.0.1:5060"})
	fake.On(`SELECT gw FROM lcr WHERE user = ?`).WithArgs("carol").Rows([]string{"gw"})
	fake.OnRegexp(regexp.MustCompile(`FROM lcr`)).WithArgs("dave").Fail(db.ErrUnavailable)
	fake.On(`SELECT gw FROM lcr WHERE user = ?`).WithArgs("erin").After(3*time.Second).Rows([]string{"gw"}, []any{"10.0.0.2:5060"})
	fake.On(`SELECT gw FROM lcr WHERE user = ?`).WithArgs("frank").Never()
	fake.On(`SELECT gw FROM lcr WHERE user = ?`).WithArgs("gina").After(500*time.Millisecond).Rows([]string{"gw"}, []any{"10.0.0.3:5060"})

	for _, tc := range []struct {
		user    string
		advance time.Duration
		want    int
		relay   string
		state   siptest.AwaitState
	}{
		{"bob", 0, 0, "sip:bob@10.0.0.1:5060", siptest.AwaitCompleted},
		{"carol", 0, 404, "", siptest.AwaitFailed}, // QueryRow of no row: db.ErrNoRows
		{"dave", 0, 503, "", siptest.AwaitFailed},
		{"erin", 5 * time.Second, 503, "", siptest.AwaitTimedOut}, // the answer comes after the 1 s timeout
		{"frank", time.Second, 503, "", siptest.AwaitTimedOut},
		{"gina", 500 * time.Millisecond, 0, "sip:gina@10.0.0.3:5060", siptest.AwaitCompleted},
		{"hank", time.Second, 503, "", siptest.AwaitTimedOut}, // no rule: held until it times out
	} {
		t.Run(tc.user, func(t *testing.T) {
			hs := siptest.NewHarness(t, gwRoute(h), siptest.WithFakes(fake))
			res := hs.Send(siptest.NewRequest("INVITE", "sip:"+tc.user+"@example.com"))
			hs.Clock.Advance(tc.advance)
			if tc.relay != "" {
				siptest.AssertRelayedTo(t, res, tc.relay)
			} else {
				siptest.AssertReplied(t, res, tc.want)
			}
			assert.Equal(t, tc.state, res.Await(0).State(), res.String())
		})
	}
	assert.Equal(t, 1, bob.Hits())
	assert.Len(t, fake.Seen(), 6, "every statement a rule answered, hank's excepted")
	assert.Equal(t, "SELECT gw FROM lcr\n\t\t\tWHERE user = ?", fake.Seen()[0])
}

// Query gets every row as *db.Rows, Exec its db.Result; the exchange names
// the rule that answered.
func TestFakeQueryAndExec(t *testing.T) {
	t.Parallel()
	h := handle(t)
	fake := dbtest.New()
	fake.On(`SELECT gw, weight FROM gateways`).Rows([]string{"gw", "weight"},
		[]any{"10.0.0.1:5060", int64(10)}, []any{"10.0.0.2:5060", int64(5)})
	fake.On(`UPDATE gateways SET calls = calls + 1 WHERE gw = ?`).WithArgs("10.0.0.1:5060").Result(db.Result{RowsAffected: 1})
	var got []string
	hs := siptest.NewHarness(t, func(c *tm.Context) {
		async.Await(c, h.Query(`SELECT gw, weight FROM gateways`), func(rows *db.Rows, err error) {
			require.NoError(t, err)
			for _, row := range rows.All() {
				got = append(got, fmt.Sprintf("%s/%d", row.String(0), row.Int(1)))
			}
			async.Await(c, h.Exec(`UPDATE gateways SET calls = calls + 1 WHERE gw = ?`, rows.Row(0).String(0)), func(r db.Result, err error) {
				require.NoError(t, err)
				_ = c.Reply(200+int(r.RowsAffected), "")
			})
		})
	}, siptest.WithFakes(fake))
	res := hs.Send(siptest.NewRequest("OPTIONS", "sip:x@example.com"))
	siptest.AssertReplied(t, res, 201)
	assert.Equal(t, []string{"10.0.0.1:5060/10", "10.0.0.2:5060/5"}, got)
	assert.Contains(t, res.Await(0).String(), `dbtest.Fake rule "SELECT gw, weight FROM gateways"`)
}

// Ops that are not a db.Handle's are left to other fakes; a rule whose
// answer does not suit the op fails the test with what went wrong.
func TestFakeLeavesOtherOpsAndReportsBadAnswers(t *testing.T) {
	t.Parallel()
	h := handle(t)
	fake := dbtest.New()
	fake.OnRegexp(regexp.MustCompile(`.`)).Rows([]string{"a"}, []any{"x"})
	other := siptest.Answers{"lookup": {Value: "sip:gw@10.0.0.5"}}
	hs := siptest.NewHarness(t, func(c *tm.Context) {
		async.Await(c, async.OpFunc[string](nil), func(gw string, err error) { _ = c.Relay(gw) }, async.Name("lookup"))
	}, siptest.WithFakes(fake, other))
	siptest.AssertRelayedTo(t, hs.Send(siptest.NewRequest("INVITE", "sip:x@example.com")), "sip:gw@10.0.0.5")

	rt := &recordingT{TB: t}
	bad := siptest.NewHarness(rt, func(c *tm.Context) {
		async.Await(c, h.Exec(`DELETE FROM lcr`), func(_ db.Result, err error) { _ = c.Reply(500, "") })
	}, siptest.WithFakes(fake))
	res := bad.Send(siptest.NewRequest("OPTIONS", "sip:x@example.com"))
	siptest.AssertReplied(t, res, 500)
	assert.ErrorIs(t, res.Await(0).Err(), async.ErrResultType)
	assert.Contains(t, rt.failures(), `dbtest.Fake rule "." answered "db.exec: DELETE FROM lcr"`)

	rows := dbtest.New()
	rows.On(`SELECT a, b FROM t`).Rows([]string{"a", "b"}, []any{"only a"})
	rt = &recordingT{TB: t}
	bad = siptest.NewHarness(rt, func(c *tm.Context) {
		async.Await(c, h.Query(`SELECT a, b FROM t`), func(_ *db.Rows, err error) { c.Set("err", err); _ = c.Reply(500, "") })
	}, siptest.WithFakes(rows))
	res = bad.Send(siptest.NewRequest("OPTIONS", "sip:x@example.com"))
	err, _ := tm.Value[error](res.Context(), "err")
	assert.ErrorIs(t, err, db.ErrScan, "a row without a value per column: the rule's mistake reaches the resume")
	assert.Contains(t, err.Error(), "row 0 has 1 values for 2 columns")
}

// recordingT records the failures siptest reports instead of failing.
type recordingT struct {
	testing.TB
	mu     sync.Mutex
	errors []string
}

func (r *recordingT) Helper() {}

func (r *recordingT) Errorf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errors = append(r.errors, fmt.Sprintf(format, args...))
}

func (r *recordingT) failures() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return strings.Join(r.errors, "\n")
}
