// Package db runs SQL queries as async ops, so that a route can query a
// database without blocking its worker loop (the OpenSIPS avp_db_query /
// sql_query counterpart).
//
//	import _ "github.com/asyncsip/asyncsip/modules/db/sqlite" // the driver
//
//	h, err := db.Open(db.DriverSQLite, "file:routes.db")
//	...
//	srv.Request(func(c *tm.Context) {
//		if c.InDialog() { // ACK, BYE: along the call's Route, no lookup
//			c.Relay()
//			return
//		}
//		async.Await(c, h.QueryRow(`SELECT target FROM routes WHERE user = ?`, c.Recipient().User),
//			func(row db.Row, err error) {
//				switch {
//				case errors.Is(err, db.ErrNoRows):
//					c.Reply(404, "Not Found")
//				case err != nil:
//					c.Reply(503, "Routing unavailable")
//				default:
//					c.Relay(row.String(0))
//				}
//			})
//	})
//
// A Handle wraps a database/sql DB and an async.Pool of its own: each op runs
// on that pool (bounded: a full pool fails the op at once with
// async.ErrOverloaded), with a context that is cancelled when the await times
// out or its transaction ends, and that is bounded by the handle's Timeout.
// Results are read whole, within MaxRows and MaxBytes, so a resume never
// touches the database. See README.md for the drivers, options and errors.
package db

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/asyncsip/asyncsip/async"
	"github.com/asyncsip/asyncsip/reactor"
)

// Defaults of the Config fields left zero.
const (
	DefaultWorkers   = 16
	DefaultQueue     = 256
	DefaultTimeout   = 5 * time.Second
	DefaultMaxRows   = 10_000
	DefaultMaxBytes  = 16 << 20
	DefaultStmtCache = 128
)

// Errors of this package. Driver errors are wrapped, so errors.Is and
// errors.As reach them too.
var (
	// ErrNoRows is what QueryRow gives when the query returned no row: an
	// empty result, not a failure (OpenSIPS's "no result" return code).
	ErrNoRows = errors.New("db: no rows in result")
	// ErrTooLarge is the error of a query whose result has more rows than
	// MaxRows or more bytes than MaxBytes; the rows read so far are dropped.
	ErrTooLarge = errors.New("db: result exceeds limit")
	// ErrUnavailable wraps errors that say the database could not be
	// reached or dropped the connection (refused, reset, shutting down):
	// a route typically answers 503. The handle reconnects on later ops.
	ErrUnavailable = errors.New("db: database unavailable")
	// ErrClosed is the error of an op or call on a closed Handle.
	ErrClosed = errors.New("db: handle closed")
	// ErrScan is wrapped by Scan errors: a NULL into a non-nullable
	// destination, a value that does not convert, a wrong count.
	ErrScan = errors.New("db: cannot scan")
)

// Config configures a Handle. The zero value gives the defaults; options
// passed to Open set its fields.
type Config struct {
	// Workers bounds the ops running at once on the handle's pool
	// (default DefaultWorkers).
	Workers int
	// Queue bounds the ops waiting for a worker: 0 means DefaultQueue, < 0
	// no queue. Beyond it an op fails at once with async.ErrOverloaded.
	Queue int
	// MaxOpenConns bounds the open connections: 0 means Workers, < 0 no
	// limit. An in-memory SQLite database always gets exactly one.
	MaxOpenConns int
	// MaxIdleConns bounds the idle connections kept: 0 means MaxOpenConns,
	// < 0 none.
	MaxIdleConns int
	// ConnMaxLifetime closes connections older than this; 0 means no limit.
	ConnMaxLifetime time.Duration
	// MaxRows bounds the rows of one Query result (default DefaultMaxRows).
	MaxRows int
	// MaxBytes bounds the bytes of one result: text and blob lengths, and 8
	// per other non-NULL value (default DefaultMaxBytes).
	MaxBytes int64
	// Timeout bounds every op and its connect, whatever the await's own
	// timeout (default DefaultTimeout). The sync helpers use their ctx only.
	Timeout time.Duration
	// StmtCache is the number of prepared statements kept per handle:
	// 0 means DefaultStmtCache, < 0 no caching (nothing is prepared).
	StmtCache int
	// Observer receives metrics events; nil means none.
	Observer Observer
}

// Option sets a field of the Config of a Handle.
type Option func(*Config)

// Workers sets Config.Workers.
func Workers(n int) Option { return func(c *Config) { c.Workers = n } }

// Queue sets Config.Queue.
func Queue(n int) Option { return func(c *Config) { c.Queue = n } }

// MaxOpenConns sets Config.MaxOpenConns.
func MaxOpenConns(n int) Option { return func(c *Config) { c.MaxOpenConns = n } }

// MaxIdleConns sets Config.MaxIdleConns.
func MaxIdleConns(n int) Option { return func(c *Config) { c.MaxIdleConns = n } }

// ConnMaxLifetime sets Config.ConnMaxLifetime.
func ConnMaxLifetime(d time.Duration) Option { return func(c *Config) { c.ConnMaxLifetime = d } }

// MaxRows sets Config.MaxRows.
func MaxRows(n int) Option { return func(c *Config) { c.MaxRows = n } }

// MaxBytes sets Config.MaxBytes.
func MaxBytes(n int64) Option { return func(c *Config) { c.MaxBytes = n } }

// Timeout sets Config.Timeout.
func Timeout(d time.Duration) Option { return func(c *Config) { c.Timeout = d } }

// StmtCache sets Config.StmtCache.
func StmtCache(n int) Option { return func(c *Config) { c.StmtCache = n } }

// WithObserver sets Config.Observer.
func WithObserver(o Observer) Option { return func(c *Config) { c.Observer = o } }

// WithConfig replaces the whole Config (later options still apply).
func WithConfig(cfg Config) Option { return func(c *Config) { *c = cfg } }

func (c *Config) defaults() {
	if c.Workers <= 0 {
		c.Workers = DefaultWorkers
	}
	if c.Queue == 0 {
		c.Queue = DefaultQueue
	}
	if c.MaxOpenConns == 0 {
		c.MaxOpenConns = c.Workers
	}
	if c.MaxIdleConns == 0 {
		c.MaxIdleConns = max(c.MaxOpenConns, 0)
	}
	if c.MaxRows <= 0 {
		c.MaxRows = DefaultMaxRows
	}
	if c.MaxBytes <= 0 {
		c.MaxBytes = DefaultMaxBytes
	}
	if c.Timeout <= 0 {
		c.Timeout = DefaultTimeout
	}
	if c.StmtCache == 0 {
		c.StmtCache = DefaultStmtCache
	}
}

// Handle is an open database with its own bounded pool of workers and its
// cache of prepared statements. Its methods are safe for concurrent use; the
// op constructors (Query, QueryRow, Exec) may be called on a loop, the
// *Context helpers block and must not be.
type Handle struct {
	db     *sql.DB
	drv    Driver
	cfg    Config
	pool   *async.Pool
	stmts  *stmtCache
	m      counters
	closed atomic.Bool
}

// Open opens a database with a driver of this module — DriverSQLite,
// DriverPostgres, DriverMySQL, whose package the program imports (see
// driver.go; ErrNoDriver otherwise) — or with any other database/sql driver
// the program registered. It does not connect: the first op does (use
// PingContext to check at start-up).
func Open(driverName, dsn string, opts ...Option) (*Handle, error) {
	var cfg Config
	for _, o := range opts {
		if o != nil {
			o(&cfg)
		}
	}
	cfg.defaults()
	drv, err := lookup(driverName)
	if err != nil {
		return nil, err
	}
	sdb, err := drv.Open(dsn, &cfg)
	if err != nil {
		return nil, fmt.Errorf("db: open %s: %w", driverName, err)
	}
	sdb.SetMaxOpenConns(max(cfg.MaxOpenConns, 0))
	sdb.SetMaxIdleConns(max(cfg.MaxIdleConns, 0))
	sdb.SetConnMaxLifetime(cfg.ConnMaxLifetime)
	h := &Handle{
		db:    sdb,
		drv:   drv,
		cfg:   cfg,
		pool:  async.NewPool(async.PoolConfig{Workers: cfg.Workers, Queue: cfg.Queue}),
		stmts: newStmtCache(cfg.StmtCache),
	}
	return h, nil
}

// Config returns the handle's configuration, defaults filled in.
func (h *Handle) Config() Config { return h.cfg }

// DB returns the underlying database/sql handle, for what this package does
// not cover (transactions at start-up, driver-specific calls). Never use it
// on a loop.
func (h *Handle) DB() *sql.DB { return h.db }

// Pool returns the handle's own pool of workers, which runs every op of the
// handle, so that its saturation can be exported:
//
//	exp.WatchPool("db", h.Pool()) // exp: a *metrics.Exporter (modules/metrics)
func (h *Handle) Pool() *async.Pool { return h.pool }

// Close stops accepting ops (they fail with ErrClosed), waits for the
// running ones (bounded by the handle's Timeout, then they are cancelled),
// closes the cached statements and the database. It is idempotent.
func (h *Handle) Close() error {
	if h.closed.Swap(true) {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), h.cfg.Timeout+time.Second)
	defer cancel()
	perr := h.pool.Close(ctx)
	serr := h.stmts.close()
	derr := h.db.Close()
	if err := errors.Join(perr, serr, derr); err != nil {
		return fmt.Errorf("db: close: %w", err)
	}
	return nil
}

// Op names, as passed to async.Name and to the Observer.
const (
	OpQuery    = "db.query"
	OpQueryRow = "db.queryrow"
	OpExec     = "db.exec"
)

// Query returns an op that runs query with args and completes with all its
// rows, or with an error wrapping ErrTooLarge when they exceed MaxRows or
// MaxBytes.
func (h *Handle) Query(query string, args ...any) async.Op[*Rows] {
	return blocking(h, OpQuery, query, args, func(ctx context.Context) (*Rows, error) {
		return h.query(ctx, query, args, h.cfg.MaxRows)
	})
}

// QueryRow returns an op that runs query with args and completes with its
// first row, or with ErrNoRows when there is none (further rows are ignored).
func (h *Handle) QueryRow(query string, args ...any) async.Op[Row] {
	return blocking(h, OpQueryRow, query, args, func(ctx context.Context) (Row, error) {
		return h.queryRow(ctx, query, args)
	})
}

// Exec returns an op that runs a statement that returns no rows (INSERT,
// UPDATE, DELETE, DDL) and completes with its Result.
func (h *Handle) Exec(query string, args ...any) async.Op[Result] {
	return blocking(h, OpExec, query, args, func(ctx context.Context) (Result, error) {
		return h.exec(ctx, query, args, true)
	})
}

// QueryContext runs query synchronously, for start-up work and tools; it
// blocks, so never call it on a loop. ctx bounds it (not the handle's
// Timeout); MaxRows and MaxBytes apply.
func (h *Handle) QueryContext(ctx context.Context, query string, args ...any) (*Rows, error) {
	return syncCall(h, ctx, OpQuery, func(ctx context.Context) (*Rows, error) {
		return h.query(ctx, query, args, h.cfg.MaxRows)
	})
}

// QueryRowContext is the synchronous QueryRow, like QueryContext.
func (h *Handle) QueryRowContext(ctx context.Context, query string, args ...any) (Row, error) {
	return syncCall(h, ctx, OpQueryRow, func(ctx context.Context) (Row, error) {
		return h.queryRow(ctx, query, args)
	})
}

// ExecContext runs a statement synchronously (migrations, schema set-up);
// it is not prepared, so a script of several statements works where the
// driver allows it. It blocks: never call it on a loop.
func (h *Handle) ExecContext(ctx context.Context, query string, args ...any) (Result, error) {
	return syncCall(h, ctx, OpExec, func(ctx context.Context) (Result, error) {
		return h.exec(ctx, query, args, false)
	})
}

// PingContext checks that the database can be reached, connecting if
// needed. It blocks: never call it on a loop.
func (h *Handle) PingContext(ctx context.Context) error {
	if h.closed.Load() {
		return ErrClosed
	}
	if err := h.db.PingContext(ctx); err != nil {
		return h.wrap(ctx, "db.ping", err)
	}
	return nil
}

// blocking builds the op of one statement: fn runs on the handle's pool with
// a context bounded by the handle's Timeout and cancelled with the op.
func blocking[T any](h *Handle, name, query string, args []any, fn func(context.Context) (T, error)) async.Op[T] {
	inner := async.Blocking(func(ctx context.Context) (T, error) {
		ctx, cancel := context.WithTimeout(ctx, h.cfg.Timeout)
		defer cancel()
		start := time.Now()
		v, err := fn(ctx)
		err = h.wrap(ctx, name, err)
		h.observe(name, time.Since(start), err)
		return v, err
	}, async.OnPool(h.pool), async.Name(name))
	return &op[T]{h: h, name: name, query: query, args: args, inner: inner}
}

// op adds the handle's bookkeeping to a Blocking op: rejections by a full
// pool are counted, and a closed pool reads as ErrClosed.
type op[T any] struct {
	h     *Handle
	name  string
	query string
	args  []any
	inner async.Op[T]
}

// Describe names the op and its SQL ("db.query: SELECT …"): the label of
// its await in logs and in siptest's exchanges (async.Describer).
func (o *op[T]) Describe() string { return o.name + ": " + o.query }

// Statement is what an op of a Handle runs, as Inspect reports it.
type Statement struct {
	// Op is the op's name: OpQuery, OpQueryRow or OpExec.
	Op string
	// Query is the SQL, as given.
	Query string
	// Args are the statement's arguments, as given.
	Args []any
}

// Inspect returns the statement of an op made by Query, QueryRow or Exec,
// and false for any other op. It lets a fake recognize a handle's ops
// without running them (modules/db/dbtest).
func Inspect(op any) (Statement, bool) {
	if o, ok := op.(interface{ statement() Statement }); ok {
		return o.statement(), true
	}
	return Statement{}, false
}

func (o *op[T]) statement() Statement { return Statement{Op: o.name, Query: o.query, Args: o.args} }

func (o *op[T]) Start(l *reactor.Loop, done func(T, error)) func() {
	return o.inner.Start(l, func(v T, err error) {
		if err != nil {
			switch {
			case errors.Is(err, async.ErrOverloaded):
				o.h.rejected(o.name)
			case errors.Is(err, async.ErrClosed):
				err = fmt.Errorf("%w: %w", ErrClosed, err)
			}
		}
		done(v, err)
	})
}

func syncCall[T any](h *Handle, ctx context.Context, name string, fn func(context.Context) (T, error)) (T, error) {
	if h.closed.Load() {
		var zero T
		return zero, fmt.Errorf("%s: %w", name, ErrClosed)
	}
	start := time.Now()
	v, err := fn(ctx)
	err = h.wrap(ctx, name, err)
	h.observe(name, time.Since(start), err)
	return v, err
}

// wrap names the op in err and classifies it: the handle's own deadline as
// async.ErrTimeout, connection failures as ErrUnavailable.
func (h *Handle) wrap(ctx context.Context, name string, err error) error {
	switch {
	case err == nil, errors.Is(err, ErrNoRows):
		return err
	case errors.Is(err, ErrTooLarge), errors.Is(err, ErrClosed):
		return fmt.Errorf("%s: %w", name, err)
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		return fmt.Errorf("%s: %w: %w", name, async.ErrTimeout, err)
	case ctx.Err() != nil && !errors.Is(err, ctx.Err()):
		// Cancelled (the await timed out, its context ended): say so even
		// when the driver reports it in its own words ("interrupted").
		return fmt.Errorf("%s: %w: %w", name, ctx.Err(), err)
	case ctx.Err() == nil && h.unavailable(err):
		return fmt.Errorf("%s: %w: %w", name, ErrUnavailable, err)
	}
	return fmt.Errorf("%s: %w", name, err)
}

// query runs a statement and reads at most maxRows rows.
func (h *Handle) query(ctx context.Context, query string, args []any, maxRows int) (*Rows, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	rs, release, err := h.rows(ctx, query, args)
	if err != nil {
		return nil, err
	}
	defer release()
	// Cancel before Close on a limit error: a driver would otherwise read
	// the rest of a huge result to the end.
	r, err := readRows(rs, maxRows, h.cfg.MaxBytes, false)
	if err != nil {
		cancel()
	}
	if cerr := rs.Close(); err == nil && cerr != nil {
		err = cerr
	}
	return r, err
}

func (h *Handle) queryRow(ctx context.Context, query string, args []any) (Row, error) {
	rs, release, err := h.rows(ctx, query, args)
	if err != nil {
		return Row{}, err
	}
	defer release()
	r, err := readRows(rs, 1, h.cfg.MaxBytes, true)
	if cerr := rs.Close(); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		return Row{}, err
	}
	if r.Len() == 0 {
		return Row{}, ErrNoRows
	}
	return r.Row(0), nil
}

// rows runs query through the statement cache (or directly when caching is
// off); release returns the statement to the cache after the rows are
// closed.
func (h *Handle) rows(ctx context.Context, query string, args []any) (*sql.Rows, func(), error) {
	if !h.stmts.enabled() {
		rs, err := h.db.QueryContext(ctx, query, args...)
		return rs, func() {}, err
	}
	st, err := h.stmts.get(ctx, h, query)
	if err != nil {
		return nil, nil, err
	}
	rs, err := st.stmt.QueryContext(ctx, args...)
	if err != nil {
		h.stmts.release(st)
		return nil, nil, err
	}
	return rs, func() { h.stmts.release(st) }, nil
}

func (h *Handle) exec(ctx context.Context, query string, args []any, prepared bool) (Result, error) {
	var (
		res sql.Result
		err error
	)
	if prepared && h.stmts.enabled() {
		var st *cachedStmt
		if st, err = h.stmts.get(ctx, h, query); err != nil {
			return Result{}, err
		}
		res, err = st.stmt.ExecContext(ctx, args...)
		h.stmts.release(st)
	} else {
		res, err = h.db.ExecContext(ctx, query, args...)
	}
	if err != nil {
		return Result{}, err
	}
	return newResult(res), nil
}
