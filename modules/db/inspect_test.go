package db_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/asyncsip/asyncsip/async"
	"github.com/asyncsip/asyncsip/modules/db"
)

// A handle's ops say what they run — for logs (async.Describer) and fakes
// (Inspect) — and NewRows builds what a Query gives.
func TestDescribeInspectNewRows(t *testing.T) {
	t.Parallel()
	h := open(t, db.DriverSQLite, ":memory:")
	op := h.Query(`SELECT 1 WHERE ? = ?`, 1, "x")
	d, ok := op.(async.Describer)
	require.True(t, ok)
	assert.Equal(t, "db.query: SELECT 1 WHERE ? = ?", d.Describe())
	st, ok := db.Inspect(op)
	require.True(t, ok)
	assert.Equal(t, db.Statement{Op: db.OpQuery, Query: `SELECT 1 WHERE ? = ?`, Args: []any{1, "x"}}, st)
	st, _ = db.Inspect(h.QueryRow(`SELECT 2`))
	assert.Equal(t, db.Statement{Op: db.OpQueryRow, Query: `SELECT 2`}, st)
	st, _ = db.Inspect(h.Exec(`DELETE FROM t`))
	assert.Equal(t, db.OpExec, st.Op)
	_, ok = db.Inspect(async.Done(1, nil))
	assert.False(t, ok, "not a handle's op")

	rows, err := db.NewRows([]string{"gw", "weight"}, []any{"10.0.0.1", int64(3)}, []any{nil, int64(1)})
	require.NoError(t, err)
	assert.Equal(t, 2, rows.Len())
	assert.Equal(t, []string{"gw", "weight"}, rows.Columns())
	assert.Equal(t, "10.0.0.1", rows.Row(0).String(0))
	assert.True(t, rows.Row(1).IsNull(0))
	assert.Equal(t, int64(3), rows.Row(0).Named("weight").Int())
	_, err = db.NewRows([]string{"a", "b"}, []any{"x"})
	assert.ErrorIs(t, err, db.ErrScan)
}
