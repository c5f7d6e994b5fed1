package db

import (
	"database/sql"
	"database/sql/driver"
	"errors"
	"io"
	"net"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgconn/ctxwatch"
	"github.com/jackc/pgx/v5/stdlib" // registers "pgx"

	_ "github.com/go-sql-driver/mysql" // registers "mysql"
	_ "modernc.org/sqlite"             // registers "sqlite"
)

// The drivers this package wires in (their blank imports above register
// them with database/sql), and what Open adjusts for each:
//
//   - "sqlite", modernc.org/sqlite: pure Go, no server, the embedded
//     default. DSN: a file path or "file:path?…", ":memory:". When the DSN
//     sets no busy timeout, Open adds _busy_timeout = the handle's Timeout,
//     so concurrent writers wait for the lock instead of failing with
//     SQLITE_BUSY. An in-memory database lives in its only connection, so
//     Open gives it exactly one connection that never expires. A cancelled
//     context interrupts the running statement (sqlite3_interrupt).
//   - "pgx", github.com/jackc/pgx/v5/stdlib: PostgreSQL. DSN: a URL
//     "postgres://user@host:port/db?sslmode=disable" or key=value pairs.
//     Open sets connect_timeout to the handle's Timeout when the DSN sets
//     none, and makes a cancelled context send a PostgreSQL cancel request
//     (the server stops the query) instead of only dropping the socket.
//   - "mysql", github.com/go-sql-driver/mysql: MySQL and MariaDB. DSN:
//     "user:pass@tcp(127.0.0.1:3306)/db?timeout=2s". A cancelled context
//     closes the connection; the server may finish the statement on its own.
//
// Any other driver registered with database/sql is opened with sql.Open as
// it is.
const (
	DriverSQLite   = "sqlite"
	DriverPostgres = "pgx"
	DriverMySQL    = "mysql"
)

// pgCancelDeadline bounds how long a cancelled PostgreSQL query waits for the
// server to acknowledge the cancel request before the connection is dropped.
const pgCancelDeadline = time.Second

func openDriver(name, dsn string, cfg *Config) (*sql.DB, error) {
	switch name {
	case DriverSQLite:
		dsn = sqliteDSN(dsn, cfg)
	case DriverPostgres:
		return openPgx(dsn, cfg)
	}
	sdb, err := sql.Open(name, dsn)
	if err != nil {
		return nil, err
	}
	return sdb, nil
}

// sqliteDSN adds the busy timeout and pins an in-memory database to a single
// connection (see the driver notes above).
func sqliteDSN(dsn string, cfg *Config) string {
	if isSQLiteMemory(dsn) {
		cfg.MaxOpenConns, cfg.MaxIdleConns, cfg.ConnMaxLifetime = 1, 1, 0
	}
	_, query, _ := strings.Cut(dsn, "?")
	if strings.Contains(query, "_busy_timeout=") || strings.Contains(query, "_timeout=") ||
		strings.Contains(strings.ToLower(query), "busy_timeout") {
		return dsn
	}
	sep := "?"
	if strings.Contains(dsn, "?") {
		sep = "&"
	}
	return dsn + sep + "_busy_timeout=" + strconv.FormatInt(cfg.Timeout.Milliseconds(), 10)
}

func isSQLiteMemory(dsn string) bool {
	path, query, _ := strings.Cut(dsn, "?")
	path = strings.TrimPrefix(path, "file:")
	return path == "" || path == ":memory:" || strings.Contains(query, "mode=memory")
}

func openPgx(dsn string, cfg *Config) (*sql.DB, error) {
	pc, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, err
	}
	if pc.ConnectTimeout <= 0 {
		pc.ConnectTimeout = cfg.Timeout
	}
	pc.BuildContextWatcherHandler = func(c *pgconn.PgConn) ctxwatch.Handler {
		return &pgconn.CancelRequestContextWatcherHandler{Conn: c, DeadlineDelay: pgCancelDeadline}
	}
	return stdlib.OpenDB(*pc), nil
}

// unavailable reports whether err says the database could not be reached or
// the connection broke, as opposed to an error in the statement.
func unavailable(err error) bool {
	if errors.Is(err, driver.ErrBadConn) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) {
		return true
	}
	var ne net.Error
	if errors.As(err, &ne) {
		return true
	}
	var ce *pgconn.ConnectError
	if errors.As(err, &ce) {
		return true
	}
	// SQLSTATE class 08 (connection exception) and 57P01-57P03 (the server
	// is shutting down or starting): PostgreSQL, and MySQL errors that carry
	// a SQLSTATE.
	var st interface{ SQLState() string }
	if errors.As(err, &st) {
		s := st.SQLState()
		return strings.HasPrefix(s, "08") || s == "57P01" || s == "57P02" || s == "57P03"
	}
	return false
}
