package db

import (
	"database/sql"
	"fmt"
	"iter"
	"strconv"
	"strings"
	"time"
)

// Rows is the whole result of a Query, read into memory within MaxRows and
// MaxBytes: a resume uses it without touching the database. Its values are
// the driver's: int64, float64, bool, []byte, string, time.Time or nil for
// NULL. A nil *Rows is an empty result.
type Rows struct {
	cols []string
	vals []any // row-major: row i is vals[i*len(cols) : (i+1)*len(cols)]
	n    int
}

// NewRows returns the rows of columns with the values of rows, as a query
// would give them: for a fake to answer a Query (or, with Row(0), a
// QueryRow) without a database. The values are those a driver gives:
// int64, float64, bool, []byte, string, time.Time or nil for NULL. A row
// with as many values as columns is required.
func NewRows(columns []string, rows ...[]any) (*Rows, error) {
	rs := &Rows{cols: append([]string(nil), columns...), n: len(rows)}
	for i, r := range rows {
		if len(r) != len(columns) {
			return nil, fmt.Errorf("%w: row %d has %d values for %d columns", ErrScan, i, len(r), len(columns))
		}
		rs.vals = append(rs.vals, r...)
	}
	return rs, nil
}

// Len returns the number of rows.
func (r *Rows) Len() int {
	if r == nil {
		return 0
	}
	return r.n
}

// Columns returns the column names, in order. Do not modify the slice.
func (r *Rows) Columns() []string {
	if r == nil {
		return nil
	}
	return r.cols
}

// Row returns row i (0-based); out of range it returns an empty Row, whose
// values are all NULL.
func (r *Rows) Row(i int) Row {
	if r == nil || i < 0 || i >= r.n {
		return Row{}
	}
	return Row{rs: r, off: i * len(r.cols)}
}

// All iterates over the rows with their index:
//
//	for i, row := range rows.All() { ... }
func (r *Rows) All() iter.Seq2[int, Row] {
	return func(yield func(int, Row) bool) {
		for i := range r.Len() {
			if !yield(i, r.Row(i)) {
				return
			}
		}
	}
}

// Index returns the index of the column called name (an exact match first,
// then a case-insensitive one), or -1.
func (r *Rows) Index(name string) int {
	if r == nil {
		return -1
	}
	for i, c := range r.cols {
		if c == name {
			return i
		}
	}
	for i, c := range r.cols {
		if strings.EqualFold(c, name) {
			return i
		}
	}
	return -1
}

// Row is one row of a result. The zero Row has no columns. Accessors by
// index or by name never panic: a column that does not exist reads as NULL
// (Value.Exists tells them apart), and Scan reports it as an error.
type Row struct {
	rs  *Rows
	off int
}

// Len returns the number of columns.
func (r Row) Len() int { return len(r.rs.Columns()) }

// Columns returns the column names, in order. Do not modify the slice.
func (r Row) Columns() []string { return r.rs.Columns() }

// Value returns column i (0-based).
func (r Row) Value(i int) Value {
	if i < 0 || i >= r.Len() {
		return Value{}
	}
	return Value{v: r.rs.vals[r.off+i], ok: true}
}

// Named returns the column called name (see Rows.Index).
func (r Row) Named(name string) Value { return r.Value(r.rs.Index(name)) }

// String returns column i as a string (see Value.String).
func (r Row) String(i int) string { return r.Value(i).String() }

// Int returns column i as an int64 (see Value.Int).
func (r Row) Int(i int) int64 { return r.Value(i).Int() }

// Float returns column i as a float64 (see Value.Float).
func (r Row) Float(i int) float64 { return r.Value(i).Float() }

// Bytes returns column i as bytes (see Value.Bytes).
func (r Row) Bytes(i int) []byte { return r.Value(i).Bytes() }

// IsNull reports whether column i is NULL or does not exist.
func (r Row) IsNull(i int) bool { return r.Value(i).IsNull() }

// Scan copies the columns into dest, one destination per column, with the
// conversions described at Value.Scan. Every column must be given one (use
// a *any to skip a column).
func (r Row) Scan(dest ...any) error {
	if len(dest) != r.Len() {
		return fmt.Errorf("%w: %d destinations for %d columns", ErrScan, len(dest), r.Len())
	}
	for i, d := range dest {
		if err := r.Value(i).Scan(d); err != nil {
			return fmt.Errorf("column %d (%s): %w", i, r.rs.cols[i], err)
		}
	}
	return nil
}

// Value is one column of one row. The accessors convert leniently, for use
// in routes: a NULL, a missing column or a value that does not convert gives
// the zero value. Scan converts strictly and reports what does not fit.
type Value struct {
	v  any
	ok bool
}

// Any returns the driver's value: int64, float64, bool, []byte, string,
// time.Time, or nil for NULL.
func (v Value) Any() any { return v.v }

// Exists reports whether the column exists (false for a bad index or name).
func (v Value) Exists() bool { return v.ok }

// IsNull reports whether the value is NULL or the column does not exist.
func (v Value) IsNull() bool { return v.v == nil }

// String returns the value as text: strings and bytes as they are, numbers
// in decimal, booleans as "true"/"false", times in RFC 3339; NULL is "".
func (v Value) String() string {
	switch x := v.v.(type) {
	case nil:
		return ""
	case string:
		return x
	case []byte:
		return string(x)
	case int64:
		return strconv.FormatInt(x, 10)
	case float64:
		return strconv.FormatFloat(x, 'g', -1, 64)
	case bool:
		return strconv.FormatBool(x)
	case time.Time:
		return x.Format(time.RFC3339Nano)
	}
	return fmt.Sprint(v.v)
}

// Int returns the value as an integer: integers as they are, floats
// truncated, text parsed as a decimal number, booleans as 0 or 1; anything
// else (NULL, not a number) is 0.
func (v Value) Int() int64 {
	n, _ := toInt(v.v)
	return n
}

// Float returns the value as a float64 like Int does for integers.
func (v Value) Float() float64 {
	f, _ := toFloat(v.v)
	return f
}

// Bool returns the value as a boolean: true for true, non-zero numbers and
// text that strconv.ParseBool reads as true.
func (v Value) Bool() bool {
	b, _ := toBool(v.v)
	return b
}

// Bytes returns the value as bytes: blobs as they are (not copied), other
// values as the bytes of String; NULL is nil.
func (v Value) Bytes() []byte {
	switch x := v.v.(type) {
	case nil:
		return nil
	case []byte:
		return x
	}
	return []byte(v.String())
}

// Time returns the value as a time: times as they are, text in RFC 3339 or
// SQLite's "2006-01-02 15:04:05" forms, integers as Unix seconds; anything
// else is the zero time.
func (v Value) Time() time.Time {
	t, _ := toTime(v.v)
	return t
}

// Result is the outcome of Exec.
type Result struct {
	// RowsAffected is the number of rows changed, 0 when the driver does
	// not say.
	RowsAffected int64
	// LastInsertID is the id of the last inserted row where the driver
	// reports one (SQLite, MySQL); PostgreSQL does not (use RETURNING with
	// QueryRow), and it is then 0.
	LastInsertID int64
}

func newResult(r sql.Result) Result {
	var res Result
	if n, err := r.RowsAffected(); err == nil {
		res.RowsAffected = n
	}
	if id, err := r.LastInsertId(); err == nil {
		res.LastInsertID = id
	}
	return res
}

// readRows reads rs into Rows, failing with ErrTooLarge beyond maxRows rows
// or maxBytes bytes (see Config.MaxBytes). With one it stops after the
// first row without counting the others.
func readRows(rs *sql.Rows, maxRows int, maxBytes int64, one bool) (*Rows, error) {
	cols, err := rs.Columns()
	if err != nil {
		return nil, err
	}
	out := &Rows{cols: cols}
	buf := make([]any, 2*len(cols)) // the row's values, then pointers to them
	row, ptrs := buf[:len(cols):len(cols)], buf[len(cols):]
	for i := range row {
		ptrs[i] = &row[i]
	}
	var size int64
	for rs.Next() {
		if out.n >= maxRows {
			return nil, fmt.Errorf("%w: more than %d rows (MaxRows)", ErrTooLarge, maxRows)
		}
		if err := rs.Scan(ptrs...); err != nil {
			return nil, err
		}
		for _, v := range row {
			size += valueSize(v)
		}
		if size > maxBytes {
			return nil, fmt.Errorf("%w: more than %d bytes (MaxBytes)", ErrTooLarge, maxBytes)
		}
		out.n++
		if one {
			out.vals = row // not reused: no copy
			return out, nil
		}
		out.vals = append(out.vals, row...)
	}
	if err := rs.Err(); err != nil {
		return nil, err
	}
	return out, nil
}

func valueSize(v any) int64 {
	switch x := v.(type) {
	case nil:
		return 0
	case string:
		return int64(len(x))
	case []byte:
		return int64(len(x))
	}
	return 8
}
