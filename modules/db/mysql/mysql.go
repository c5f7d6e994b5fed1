// Package mysql registers MySQL and MariaDB with modules/db as
// db.DriverMySQL, when imported for its side effect:
//
//	import _ "github.com/asyncsip/asyncsip/modules/db/mysql"
//
//	h, err := db.Open(db.DriverMySQL, "proxy:secret@tcp(127.0.0.1:3306)/routes?timeout=2s")
//
// The driver is github.com/go-sql-driver/mysql. DSN: its own format,
// "user:pass@tcp(host:port)/db?timeout=2s". A cancelled context closes the
// connection; the server may finish the statement on its own.
package mysql

import (
	"database/sql"

	_ "github.com/go-sql-driver/mysql" // registers "mysql" with database/sql

	"github.com/asyncsip/asyncsip/modules/db"
)

func init() {
	db.Register(db.DriverMySQL, db.Driver{Open: func(dsn string, _ *db.Config) (*sql.DB, error) {
		return sql.Open("mysql", dsn)
	}})
}
