// Package sqlite registers SQLite with modules/db as db.DriverSQLite, when
// imported for its side effect:
//
//	import _ "github.com/asyncsip/asyncsip/modules/db/sqlite"
//
//	h, err := db.Open(db.DriverSQLite, "file:/var/lib/proxy/routes.db")
//
// The driver is modernc.org/sqlite: pure Go, no server, no cgo. DSN: a file
// path or "file:path?…", or ":memory:". What Open adjusts:
//
//   - When the DSN sets no busy timeout, Open adds _busy_timeout = the
//     handle's Timeout, so that concurrent writers wait for the lock instead
//     of failing with SQLITE_BUSY.
//   - An in-memory database lives in its only connection, so the handle gets
//     exactly one connection that never expires.
//
// A cancelled context interrupts the running statement (sqlite3_interrupt).
package sqlite

import (
	"database/sql"
	"strconv"
	"strings"

	_ "modernc.org/sqlite" // registers "sqlite" with database/sql

	"github.com/asyncsip/asyncsip/modules/db"
)

func init() {
	db.Register(db.DriverSQLite, db.Driver{Open: open})
}

func open(dsn string, cfg *db.Config) (*sql.DB, error) {
	return sql.Open("sqlite", withBusyTimeout(dsn, cfg))
}

// withBusyTimeout adds the busy timeout and pins an in-memory database to a
// single connection (see the package comment).
func withBusyTimeout(dsn string, cfg *db.Config) string {
	if isMemory(dsn) {
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

func isMemory(dsn string) bool {
	path, query, _ := strings.Cut(dsn, "?")
	path = strings.TrimPrefix(path, "file:")
	return path == "" || path == ":memory:" || strings.Contains(query, "mode=memory")
}
