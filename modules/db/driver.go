package db

import (
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"syscall"
)

// The drivers of this module, each in a package of its own that registers
// it when imported for its side effect, as database/sql drivers are:
//
//	import _ "github.com/asyncsip/asyncsip/modules/db/sqlite"
//
// so that a binary links only the drivers it imports (pgx and the MySQL
// driver weigh several MB that a SQLite-only proxy does not need).
//
//   - DriverSQLite, package modules/db/sqlite: modernc.org/sqlite, pure Go,
//     embedded.
//   - DriverPostgres, package modules/db/postgres: github.com/jackc/pgx/v5;
//     also registered as "pgx".
//   - DriverMySQL, package modules/db/mysql: github.com/go-sql-driver/mysql,
//     MySQL and MariaDB.
//
// Open with one of these names and its package not imported fails with
// ErrNoDriver, naming the import. Any other name is a database/sql driver
// the program registered itself, opened with sql.Open as it is.
const (
	DriverSQLite   = "sqlite"
	DriverPostgres = "postgres"
	DriverMySQL    = "mysql"
)

// ErrNoDriver is the error of Open for a driver of this module whose
// package the program does not import; the message names the import.
var ErrNoDriver = errors.New("db: no driver")

// Driver is how a driver package opens its databases. It registers one with
// Register from its init function.
type Driver struct {
	// Open returns the database of dsn. cfg has its defaults filled in;
	// Open may adjust its connection limits (an in-memory SQLite database
	// needs exactly one connection) before the handle applies them.
	Open func(dsn string, cfg *Config) (*sql.DB, error)
	// Unavailable, if set, reports the driver's own errors that say the
	// database could not be reached, beyond the network errors and SQLSTATE
	// class 08 that are recognized for every driver (see ErrUnavailable).
	Unavailable func(err error) bool
}

// driverImports names the package of each driver of this module.
var driverImports = map[string]string{
	DriverSQLite:   "github.com/asyncsip/asyncsip/modules/db/sqlite",
	DriverPostgres: "github.com/asyncsip/asyncsip/modules/db/postgres",
	"pgx":          "github.com/asyncsip/asyncsip/modules/db/postgres",
	DriverMySQL:    "github.com/asyncsip/asyncsip/modules/db/mysql",
}

var (
	driversMu sync.RWMutex
	drivers   = map[string]Driver{}
)

// Register makes d available to Open under name. It is called by the
// driver packages' init functions; it panics when name is registered twice
// or d has no Open, as sql.Register does.
func Register(name string, d Driver) {
	if d.Open == nil {
		panic("db: Register " + name + " without Open")
	}
	driversMu.Lock()
	defer driversMu.Unlock()
	if _, dup := drivers[name]; dup {
		panic("db: Register called twice for driver " + name)
	}
	drivers[name] = d
}

// lookup returns the driver registered under name; for a name that is not
// one of this module's drivers, the database/sql driver of that name.
func lookup(name string) (Driver, error) {
	driversMu.RLock()
	d, ok := drivers[name]
	driversMu.RUnlock()
	if ok {
		return d, nil
	}
	if pkg, ours := driverImports[name]; ours {
		return Driver{}, fmt.Errorf("%w for %s; import %s", ErrNoDriver, name, pkg)
	}
	return Driver{Open: func(dsn string, _ *Config) (*sql.DB, error) { return sql.Open(name, dsn) }}, nil
}

// unavailable reports whether err says the database could not be reached or
// the connection broke, as opposed to an error in the statement.
func (h *Handle) unavailable(err error) bool {
	if errors.Is(err, driver.ErrBadConn) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) {
		return true
	}
	var ne net.Error
	if errors.As(err, &ne) {
		return true
	}
	if h.drv.Unavailable != nil && h.drv.Unavailable(err) {
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
