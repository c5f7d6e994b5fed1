// Package postgres registers PostgreSQL with modules/db as
// db.DriverPostgres (and "pgx"), when imported for its side effect:
//
//	import _ "github.com/asyncsip/asyncsip/modules/db/postgres"
//
//	h, err := db.Open(db.DriverPostgres, "postgres://proxy@127.0.0.1:5432/routes?sslmode=disable")
//
// The driver is github.com/jackc/pgx/v5 (through its database/sql adapter).
// DSN: a URL "postgres://user@host:port/db?sslmode=disable" or key=value
// pairs; placeholders are $1, $2, … What Open adjusts:
//
//   - connect_timeout is the handle's Timeout when the DSN sets none.
//   - A cancelled context sends a PostgreSQL cancel request (the server
//     stops the query, the connection is kept) instead of only dropping the
//     socket; the connection is dropped if the server does not acknowledge
//     it within a second.
//   - A failed connect reads as db.ErrUnavailable.
package postgres

import (
	"database/sql"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgconn/ctxwatch"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/asyncsip/asyncsip/modules/db"
)

// cancelDeadline bounds how long a cancelled query waits for the server to
// acknowledge the cancel request before the connection is dropped.
const cancelDeadline = time.Second

func init() {
	d := db.Driver{Open: open, Unavailable: unavailable}
	db.Register(db.DriverPostgres, d)
	db.Register("pgx", d)
}

func open(dsn string, cfg *db.Config) (*sql.DB, error) {
	pc, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, err
	}
	if pc.ConnectTimeout <= 0 {
		pc.ConnectTimeout = cfg.Timeout
	}
	pc.BuildContextWatcherHandler = func(c *pgconn.PgConn) ctxwatch.Handler {
		return &pgconn.CancelRequestContextWatcherHandler{Conn: c, DeadlineDelay: cancelDeadline}
	}
	return stdlib.OpenDB(*pc), nil
}

func unavailable(err error) bool {
	var ce *pgconn.ConnectError
	return errors.As(err, &ce)
}
