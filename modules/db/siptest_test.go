package db_test

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/asyncsip/asyncsip/async"
	"github.com/asyncsip/asyncsip/modules/db"
	"github.com/asyncsip/asyncsip/siptest"
	"github.com/asyncsip/asyncsip/tm"
)

// A route written against db's ops is tested with siptest.FakeDB: the
// fake matches the op's SQL and arguments and builds real db results.
func TestFakeDBAnswersRoutes(t *testing.T) {
	h, err := db.Open(db.DriverSQLite, ":memory:")
	require.NoError(t, err)
	defer h.Close()
	route := func(c *tm.Context) {
		async.Await(c, h.QueryRow(`SELECT gw FROM lcr WHERE user = ?`, c.Req.Recipient.User), func(row db.Row, err error) {
			switch {
			case errors.Is(err, db.ErrNoRows):
				_ = c.Reply(404, "")
			case err != nil:
				_ = c.Reply(503, "")
			default:
				_ = c.Relay("sip:" + c.Req.Recipient.User + "@" + row.String(0))
			}
		})
	}
	fake := siptest.NewFakeDB()
	fake.On(`SELECT gw FROM lcr WHERE user = ?`).WithArgs("bob").ReturnRows([]string{"gw"}, []any{"10.0.0.1:5060"})
	fake.On(`SELECT gw FROM lcr WHERE user = ?`).WithArgs("carol").ReturnRows([]string{"gw"})
	fake.On(`SELECT gw FROM lcr WHERE user = ?`).WithArgs("dave").Fail(db.ErrUnavailable)
	hs := siptest.NewHarness(t, route, siptest.WithFakes(fake))

	siptest.AssertRelayedTo(t, hs.Send(siptest.NewRequest("INVITE", "sip:bob@example.com")), "sip:bob@10.0.0.1:5060")
	siptest.AssertReplied(t, hs.Send(siptest.NewRequest("INVITE", "sip:carol@example.com")), 404)
	siptest.AssertReplied(t, hs.Send(siptest.NewRequest("INVITE", "sip:dave@example.com")), 503)
}

func TestDescribeAndArgs(t *testing.T) {
	h, err := db.Open(db.DriverSQLite, ":memory:")
	require.NoError(t, err)
	defer h.Close()
	op := h.Query(`SELECT 1 WHERE ? = ?`, 1, "x")
	d, ok := op.(async.Describer)
	require.True(t, ok)
	assert.Equal(t, "db.query: SELECT 1 WHERE ? = ?", d.Describe())
	assert.Equal(t, []any{1, "x"}, op.(interface{ Args() []any }).Args())
	_, err = h.Exec(`DELETE FROM t`).(siptest.RowsConverter).FromRows([]string{"a"}, nil)
	assert.Error(t, err, "Exec has no rows")
}
