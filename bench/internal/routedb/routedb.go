// Package routedb creates and queries the routing table used by the db
// benchmark scenario: one row per SIP user with the next hop its calls go to.
// The asyncsip benchmark proxy reads it through database/sql, Kamailio through
// sqlops + db_sqlite, so both look up the same rows in the same file.
package routedb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	_ "github.com/jackc/pgx/v5/stdlib" // "pgx" driver for postgres DSNs
	_ "modernc.org/sqlite"             // "sqlite" driver
)

// ErrBadDSN is returned for a DSN that names no supported database.
var ErrBadDSN = errors.New("routedb: want sqlite:PATH or postgres://...")

// Query selects the next hop of a user; its one parameter is the user.
// Placeholders differ per driver, see Open.
const Query = `SELECT target FROM routes WHERE username = ?`

// Source translates dsn, "sqlite:PATH" (SQLite file) or a "postgres://" /
// "postgresql://" URL, into a database/sql driver name and data source, and
// returns the lookup query with that driver's placeholder.
func Source(dsn string) (driver, src, query string, err error) {
	switch {
	case strings.HasPrefix(dsn, "sqlite:"):
		path := strings.TrimPrefix(dsn, "sqlite:")
		if path == "" {
			return "", "", "", fmt.Errorf("%w: empty sqlite path", ErrBadDSN)
		}
		// busy_timeout: readers never see SQLITE_BUSY during the short setup writes.
		return "sqlite", "file:" + path + "?_pragma=busy_timeout(2000)&_pragma=journal_mode(WAL)", Query, nil
	case strings.HasPrefix(dsn, "postgres://"), strings.HasPrefix(dsn, "postgresql://"):
		return "pgx", dsn, strings.Replace(Query, "?", "$1", 1), nil
	}
	return "", "", "", fmt.Errorf("%w: %q", ErrBadDSN, dsn)
}

// Open opens the database named by dsn (see Source) and returns the *sql.DB
// and the lookup query.
func Open(dsn string) (*sql.DB, string, error) {
	driver, src, q, err := Source(dsn)
	if err != nil {
		return nil, "", err
	}
	db, err := sql.Open(driver, src)
	if err != nil {
		return nil, "", fmt.Errorf("routedb: open: %w", err)
	}
	return db, q, nil
}

// Fill creates the routes table when missing and makes every user in users
// route to target; filler extra rows (user0..userN-1) give the index some
// size, as a real routing table would have.
func Fill(ctx context.Context, db *sql.DB, target string, users []string, filler int) error {
	if _, err := db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS routes (username TEXT PRIMARY KEY, target TEXT NOT NULL)`); err != nil {
		return fmt.Errorf("routedb: create table: %w", err)
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("routedb: begin: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // after Commit it is a no-op
	if _, err := tx.ExecContext(ctx, `DELETE FROM routes`); err != nil {
		return fmt.Errorf("routedb: clear: %w", err)
	}
	// Plain string building is safe here: the values are ours (users are
	// validated below), and it keeps one code path for both placeholder styles.
	ins := func(user, tgt string) error {
		if strings.ContainsAny(user+tgt, "'\\") {
			return fmt.Errorf("routedb: bad character in %q -> %q", user, tgt)
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO routes (username, target) VALUES ('`+user+`', '`+tgt+`')`)
		return err
	}
	for i := 0; i < filler; i++ {
		if err := ins(fmt.Sprintf("user%d", i), fmt.Sprintf("127.0.0.1:%d", 20000+i%10000)); err != nil {
			return fmt.Errorf("routedb: insert: %w", err)
		}
	}
	for _, u := range users {
		if err := ins(u, target); err != nil {
			return fmt.Errorf("routedb: insert: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("routedb: commit: %w", err)
	}
	return nil
}
