package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/asyncsip/asyncsip/modules/auth"
	"github.com/asyncsip/asyncsip/modules/db"
	_ "github.com/asyncsip/asyncsip/modules/db/postgres"
	_ "github.com/asyncsip/asyncsip/modules/db/sqlite"
)

// Store is the proxy's database: subscribers (credentials as HA1 values),
// location bindings and gateways. One schema serves SQLite and PostgreSQL.
type Store struct {
	h      *db.Handle
	pg     bool
	domain string
}

var schema = []string{
	`CREATE TABLE IF NOT EXISTS subscriber (
		username   TEXT PRIMARY KEY,
		ha1_md5    TEXT NOT NULL,
		ha1_sha256 TEXT NOT NULL)`,
	`CREATE TABLE IF NOT EXISTS location (
		username   TEXT NOT NULL,
		contact    TEXT NOT NULL,
		expires_at BIGINT NOT NULL,
		call_id    TEXT NOT NULL DEFAULT '',
		cseq       BIGINT NOT NULL DEFAULT 0,
		PRIMARY KEY (username, contact))`,
	`CREATE TABLE IF NOT EXISTS gateway (
		id       INTEGER PRIMARY KEY,
		address  TEXT NOT NULL,
		prefix   TEXT NOT NULL DEFAULT '',
		priority INTEGER NOT NULL DEFAULT 0)`,
}

// OpenStore opens (and migrates) the database: a DSN starting with
// postgres:// selects PostgreSQL, anything else is a SQLite file path.
func OpenStore(ctx context.Context, dsn, domain string) (*Store, error) {
	driver := db.DriverSQLite
	pg := strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://")
	if pg {
		driver = db.DriverPostgres
	}
	h, err := db.Open(driver, dsn, db.Timeout(3*time.Second))
	if err != nil {
		return nil, err
	}
	s := &Store{h: h, pg: pg, domain: domain}
	for _, q := range schema {
		if _, err := h.ExecContext(ctx, q); err != nil {
			h.Close()
			return nil, fmt.Errorf("migrate: %w", err)
		}
	}
	return s, nil
}

// Close closes the database.
func (s *Store) Close() error { return s.h.Close() }

// q rewrites ? placeholders as $1, $2 … for PostgreSQL.
func (s *Store) q(query string) string {
	if !s.pg {
		return query
	}
	var b strings.Builder
	n := 0
	for _, r := range query {
		if r == '?' {
			n++
			b.WriteString("$" + strconv.Itoa(n))
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

// AddUser creates or updates a subscriber; the password is stored only as
// its MD5 and SHA-256 HA1 values for the proxy's domain (the realm).
func (s *Store) AddUser(ctx context.Context, user, password string) error {
	if user == "" || strings.ContainsAny(user, "@:; \t\r\n") {
		return fmt.Errorf("bad user name %q", user)
	}
	if password == "" {
		return fmt.Errorf("empty password for %q", user)
	}
	md5, _ := auth.HA1(auth.MD5, user, s.domain, password)
	sha, _ := auth.HA1(auth.SHA256, user, s.domain, password)
	_, err := s.h.ExecContext(ctx, s.q(`INSERT INTO subscriber (username, ha1_md5, ha1_sha256) VALUES (?, ?, ?)
		ON CONFLICT (username) DO UPDATE SET ha1_md5 = excluded.ha1_md5, ha1_sha256 = excluded.ha1_sha256`), user, md5, sha)
	return err
}

// DeleteUser removes a subscriber and its bindings.
func (s *Store) DeleteUser(ctx context.Context, user string) error {
	r, err := s.h.ExecContext(ctx, s.q(`DELETE FROM subscriber WHERE username = ?`), user)
	if err != nil {
		return err
	}
	if r.RowsAffected == 0 {
		return fmt.Errorf("no user %q", user)
	}
	_, err = s.h.ExecContext(ctx, s.q(`DELETE FROM location WHERE username = ?`), user)
	return err
}

// AddGateway creates or replaces gateway id.
func (s *Store) AddGateway(ctx context.Context, id int, address, prefix string, priority int) error {
	if _, err := parseHostPort(address); err != nil {
		return err
	}
	_, err := s.h.ExecContext(ctx, s.q(`INSERT INTO gateway (id, address, prefix, priority) VALUES (?, ?, ?, ?)
		ON CONFLICT (id) DO UPDATE SET address = excluded.address, prefix = excluded.prefix, priority = excluded.priority`),
		id, address, prefix, priority)
	return err
}

// DeleteGateway removes gateway id.
func (s *Store) DeleteGateway(ctx context.Context, id int) error {
	r, err := s.h.ExecContext(ctx, s.q(`DELETE FROM gateway WHERE id = ?`), id)
	if err != nil {
		return err
	}
	if r.RowsAffected == 0 {
		return fmt.Errorf("no gateway %d", id)
	}
	return nil
}

// List returns the rows of one of the tables, for the CLI.
func (s *Store) List(ctx context.Context, table string) (*db.Rows, error) {
	switch table {
	case "subscriber":
		return s.h.QueryContext(ctx, `SELECT username FROM subscriber ORDER BY username`)
	case "location":
		return s.h.QueryContext(ctx, `SELECT username, contact, expires_at FROM location ORDER BY username, contact`)
	case "gateway":
		return s.h.QueryContext(ctx, `SELECT id, address, prefix, priority FROM gateway ORDER BY prefix, priority, id`)
	}
	return nil, fmt.Errorf("unknown table %q", table)
}

// parseHostPort checks a gateway address: "host:port" or "host".
func parseHostPort(a string) (string, error) {
	a = strings.TrimPrefix(a, "sip:")
	if a == "" || strings.ContainsAny(a, " \t\r\n;@") {
		return "", fmt.Errorf("bad gateway address %q: want host:port", a)
	}
	if i := strings.LastIndexByte(a, ':'); i > 0 && !strings.HasSuffix(a, "]") {
		if p, err := strconv.Atoi(a[i+1:]); err != nil || p <= 0 || p > 65535 {
			return "", fmt.Errorf("bad gateway port in %q", a)
		}
	}
	return a, nil
}
