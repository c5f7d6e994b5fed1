package db

import (
	"database/sql"
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"
	"time"
)

// Scan stores the value in dest, a pointer, converting strictly:
//
//   - *string, *[]byte (a copy; NULL gives nil), *bool, *time.Time, *float32, *float64 and
//     the pointers to every int and uint type take the value when it
//     converts without loss (text is parsed; an integer that does not fit
//     is an error); NULL into them is an error.
//   - A pointer to a pointer (**string, **int64, …) takes NULL as nil.
//   - An sql.Scanner (sql.NullString, sql.NullInt64, …) scans the value
//     itself, NULL included.
//   - *any takes the driver's value as it is.
//
// Errors wrap ErrScan.
func (v Value) Scan(dest any) error {
	if !v.ok {
		return fmt.Errorf("%w: no such column", ErrScan)
	}
	return scanValue(v.v, dest)
}

func scanValue(src, dest any) error {
	if dest == nil {
		return fmt.Errorf("%w: nil destination", ErrScan)
	}
	if rv := reflect.ValueOf(dest); rv.Kind() != reflect.Pointer || rv.IsNil() {
		return fmt.Errorf("%w: destination %T is not a non-nil pointer", ErrScan, dest)
	}
	switch d := dest.(type) {
	case *any:
		*d = src
		return nil
	case sql.Scanner:
		if err := d.Scan(src); err != nil {
			return fmt.Errorf("%w: %w", ErrScan, err)
		}
		return nil
	}
	if src == nil {
		if b, ok := dest.(*[]byte); ok { // as database/sql does
			*b = nil
			return nil
		}
		return scanNull(dest)
	}
	switch d := dest.(type) {
	case *string:
		*d = Value{v: src}.String()
		return nil
	case *[]byte:
		if b, ok := src.([]byte); ok {
			*d = append([]byte(nil), b...)
		} else {
			*d = []byte(Value{v: src}.String())
		}
		return nil
	case *bool:
		b, ok := toBool(src)
		return set(d, b, ok, src)
	case *time.Time:
		t, ok := toTime(src)
		return set(d, t, ok, src)
	case *float64:
		f, ok := toFloat(src)
		return set(d, f, ok, src)
	case *float32:
		f, ok := toFloat(src)
		return set(d, float32(f), ok && (math.IsInf(f, 0) || math.Abs(f) <= math.MaxFloat32), src)
	case *int64:
		n, ok := toInt(src)
		return set(d, n, ok && exactInt(src), src)
	case *int:
		n, ok := toInt(src)
		return set(d, int(n), ok && exactInt(src) && n >= math.MinInt && n <= math.MaxInt, src)
	case *int32:
		n, ok := toInt(src)
		return set(d, int32(n), ok && exactInt(src) && n >= math.MinInt32 && n <= math.MaxInt32, src)
	case *int16:
		n, ok := toInt(src)
		return set(d, int16(n), ok && exactInt(src) && n >= math.MinInt16 && n <= math.MaxInt16, src)
	case *int8:
		n, ok := toInt(src)
		return set(d, int8(n), ok && exactInt(src) && n >= math.MinInt8 && n <= math.MaxInt8, src)
	case *uint64:
		n, ok := toInt(src)
		return set(d, uint64(n), ok && exactInt(src) && n >= 0, src)
	case *uint:
		n, ok := toInt(src)
		return set(d, uint(n), ok && exactInt(src) && n >= 0, src)
	case *uint32:
		n, ok := toInt(src)
		return set(d, uint32(n), ok && exactInt(src) && n >= 0 && n <= math.MaxUint32, src)
	case *uint16:
		n, ok := toInt(src)
		return set(d, uint16(n), ok && exactInt(src) && n >= 0 && n <= math.MaxUint16, src)
	case *uint8:
		n, ok := toInt(src)
		return set(d, uint8(n), ok && exactInt(src) && n >= 0 && n <= math.MaxUint8, src)
	}
	return scanPointer(src, dest)
}

// scanPointer handles **T: a fresh T gets the value.
func scanPointer(src, dest any) error {
	ev := reflect.ValueOf(dest).Elem()
	if ev.Kind() != reflect.Pointer {
		return fmt.Errorf("%w: unsupported destination type %T", ErrScan, dest)
	}
	if src == nil {
		ev.SetZero()
		return nil
	}
	nv := reflect.New(ev.Type().Elem())
	if err := scanValue(src, nv.Interface()); err != nil {
		return err
	}
	ev.Set(nv)
	return nil
}

func scanNull(dest any) error {
	if ev := reflect.ValueOf(dest).Elem(); ev.Kind() == reflect.Pointer {
		ev.SetZero()
		return nil
	}
	return fmt.Errorf("%w: NULL into %T (use a pointer to a pointer, or sql.Null*)", ErrScan, dest)
}

func set[T any](d *T, v T, ok bool, src any) error {
	if !ok {
		return fmt.Errorf("%w: %T value %q into %T", ErrScan, src, Value{v: src}.String(), d)
	}
	*d = v
	return nil
}

// exactInt reports whether src has no fractional part to lose.
func exactInt(src any) bool {
	switch x := src.(type) {
	case float64:
		return x == math.Trunc(x)
	case string, []byte:
		f, err := strconv.ParseFloat(strings.TrimSpace(Value{v: x}.String()), 64)
		return err == nil && f == math.Trunc(f)
	}
	return true
}

func toInt(src any) (int64, bool) {
	switch x := src.(type) {
	case int64:
		return x, true
	case float64:
		if math.IsNaN(x) || x < math.MinInt64 || x >= math.MaxInt64 {
			return 0, false
		}
		return int64(x), true
	case bool:
		if x {
			return 1, true
		}
		return 0, true
	case string, []byte:
		s := strings.TrimSpace(Value{v: x}.String())
		if n, err := strconv.ParseInt(s, 10, 64); err == nil {
			return n, true
		}
		if f, err := strconv.ParseFloat(s, 64); err == nil {
			return toInt(f)
		}
	}
	return 0, false
}

func toFloat(src any) (float64, bool) {
	switch x := src.(type) {
	case float64:
		return x, true
	case int64:
		return float64(x), true
	case bool:
		if x {
			return 1, true
		}
		return 0, true
	case string, []byte:
		f, err := strconv.ParseFloat(strings.TrimSpace(Value{v: x}.String()), 64)
		return f, err == nil
	}
	return 0, false
}

func toBool(src any) (bool, bool) {
	switch x := src.(type) {
	case bool:
		return x, true
	case int64:
		return x != 0, true
	case float64:
		return x != 0, true
	case string, []byte:
		b, err := strconv.ParseBool(strings.TrimSpace(Value{v: x}.String()))
		return b, err == nil
	}
	return false, false
}

// timeLayouts are the text forms of times that Time and Scan accept: RFC
// 3339 and the forms SQLite's date functions produce.
var timeLayouts = []string{
	time.RFC3339Nano,
	"2006-01-02 15:04:05.999999999-07:00",
	"2006-01-02 15:04:05.999999999",
	"2006-01-02T15:04:05.999999999",
	"2006-01-02 15:04",
	"2006-01-02",
}

func toTime(src any) (time.Time, bool) {
	switch x := src.(type) {
	case time.Time:
		return x, true
	case int64:
		return time.Unix(x, 0).UTC(), true
	case string, []byte:
		s := strings.TrimSpace(Value{v: x}.String())
		for _, layout := range timeLayouts {
			if t, err := time.Parse(layout, s); err == nil {
				return t, true
			}
		}
	}
	return time.Time{}, false
}
