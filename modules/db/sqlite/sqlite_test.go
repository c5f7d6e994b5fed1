package sqlite_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/asyncsip/asyncsip/modules/db"
	_ "github.com/asyncsip/asyncsip/modules/db/sqlite"
)

// This test binary links the SQLite driver only: opening another driver of
// the module fails at once with ErrNoDriver, saying what to import.
func TestOpenWithoutDriverPackage(t *testing.T) {
	for _, tc := range []struct{ name, dsn, want string }{
		{db.DriverPostgres, "postgres://u@127.0.0.1:1/x", "db: no driver for postgres; import github.com/asyncsip/asyncsip/modules/db/postgres"},
		{"pgx", "postgres://u@127.0.0.1:1/x", "db: no driver for pgx; import github.com/asyncsip/asyncsip/modules/db/postgres"},
		{db.DriverMySQL, "u:p@tcp(127.0.0.1:1)/x", "db: no driver for mysql; import github.com/asyncsip/asyncsip/modules/db/mysql"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, err := db.Open(tc.name, tc.dsn)
			require.Nil(t, h)
			require.ErrorIs(t, err, db.ErrNoDriver)
			require.EqualError(t, err, tc.want)
		})
	}
}

// The driver this binary imports opens, and Open's SQLite adjustments hold:
// an in-memory database gets one connection, a file database the busy
// timeout unless the DSN sets one.
func TestOpenSQLite(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	mem, err := db.Open(db.DriverSQLite, ":memory:", db.Workers(4))
	require.NoError(t, err)
	defer mem.Close()
	require.Equal(t, 1, mem.Config().MaxOpenConns, "an in-memory database lives in its only connection")
	_, err = mem.ExecContext(ctx, `CREATE TABLE t (v TEXT); INSERT INTO t VALUES ('x')`)
	require.NoError(t, err)
	row, err := mem.QueryRowContext(ctx, `SELECT v FROM t`)
	require.NoError(t, err)
	require.Equal(t, "x", row.String(0))

	for _, tc := range []struct {
		name, query string
		want        int64
	}{
		{"busy timeout from the handle's Timeout", "", 1500},
		{"busy timeout of the DSN kept", "?_pragma=busy_timeout(250)", 250},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, err := db.Open(db.DriverSQLite, "file:"+filepath.Join(t.TempDir(), "f.db")+tc.query, db.Timeout(1500*time.Millisecond))
			require.NoError(t, err)
			defer h.Close()
			require.Equal(t, db.DefaultWorkers, h.Config().MaxOpenConns, "a file database keeps Workers connections")
			row, err := h.QueryRowContext(ctx, `PRAGMA busy_timeout`)
			require.NoError(t, err)
			require.Equal(t, tc.want, row.Int(0))
		})
	}
}
