package siptest

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"strconv"
	"strings"
)

// Neutral results: the fakes answer with these when a rule says
// ReturnRows, Output or Status, and Convert turns them into the type the
// route's resume takes, so that a test does not depend on how a module
// spells its result type.

// Rows is a query result: column names and rows of values (int64, float64,
// bool, []byte, string, time.Time, or nil for NULL).
type Rows struct {
	Columns []string
	Values  [][]any
}

// ExecResult is what a command did: its output and exit status.
type ExecResult struct {
	Stdout, Stderr string
	ExitCode       int
}

// HTTPResponse is a complete HTTP response.
type HTTPResponse struct {
	Status int
	Header http.Header
	Body   string
}

// RowsConverter is implemented by ops whose result type a test cannot
// build (unexported fields, as modules/db's Rows and Row): Convert hands
// them the rows of a Rows and takes what they build. An error (such as the
// module's "no rows" for a single-row query) becomes the await's error.
type RowsConverter interface {
	FromRows(columns []string, rows [][]any) (any, error)
}

// HTTPConverter is implemented by ops whose result is made from the HTTP
// response rather than being it (modules/rest's JSON ops decode the body
// into the caller's type): Convert hands them an HTTPResponse's parts. An
// error (a non-2xx status, a body that does not decode) becomes the
// await's error.
type HTTPConverter interface {
	FromHTTP(status int, header http.Header, body []byte) (any, error)
}

// ErrNoRows is the error an await gets when a Rows with no row is
// converted to a single row or value (a []any or a string).
var ErrNoRows = errors.New("siptest: no rows")

// errNoConversion: v is left as it is (and async will refuse it).
var errNoConversion = errors.New("siptest: no conversion")

// Convert returns v as a value of type t, the type the resume of op takes.
// A v already assignable to t (nil included) is returned as it is. The
// neutral results are converted:
//
//   - Rows: by op.FromRows when op is a RowsConverter; to [][]any (the
//     values), []any (the first row) or string (the first column of the
//     first row; ErrNoRows when there is none); to a struct, or pointer to
//     struct, with exported fields Columns []string and Rows or Values
//     [][]any.
//   - ExecResult: to string or []byte (stdout); to a struct or pointer to
//     struct with fields among Stdout or Output, Stderr (string or
//     []byte), ExitCode, Exit or Code (any integer type).
//   - HTTPResponse: by op.FromHTTP when op is an HTTPConverter; to
//     *http.Response; to string or []byte (the body); to
//     a struct or pointer to struct with fields among Status, StatusCode
//     or Code (integer), Header or Headers (http.Header), ContentType
//     (string) and Body (string or []byte).
//
// Anything else is returned unchanged with an error that explains why (the
// await then fails with async.ErrResultType).
func Convert(v any, t reflect.Type, op any) (any, error) {
	if v == nil || t == nil || reflect.TypeOf(v).AssignableTo(t) {
		return v, nil
	}
	var out any
	var err error
	ok := false
	switch n := v.(type) {
	case Rows:
		if rc, isRC := op.(RowsConverter); isRC {
			return rc.FromRows(n.Columns, n.Values)
		}
		out, ok, err = n.convert(t)
	case ExecResult:
		out, ok = n.convert(t)
	case HTTPResponse:
		if hc, isHC := op.(HTTPConverter); isHC {
			return hc.FromHTTP(n.Status, n.Header.Clone(), []byte(n.Body))
		}
		out, ok = n.convert(t)
	default:
		return v, fmt.Errorf("%w: %T is not %v", errNoConversion, v, t)
	}
	if err != nil {
		return nil, err
	}
	if !ok {
		hint := ""
		if _, isRows := v.(Rows); isRows {
			hint = "; give the rule a value of that type (Return), or make the op a siptest.RowsConverter"
		}
		return v, fmt.Errorf("%w: cannot turn a siptest.%s into %v%s", errNoConversion, reflect.TypeOf(v).Name(), t, hint)
	}
	return out, nil
}

func (r Rows) convert(t reflect.Type) (any, bool, error) {
	switch t {
	case reflect.TypeFor[[][]any]():
		return r.Values, true, nil
	case reflect.TypeFor[[]any]():
		if len(r.Values) == 0 {
			return nil, true, ErrNoRows
		}
		return r.Values[0], true, nil
	case reflect.TypeFor[string]():
		if len(r.Values) == 0 || len(r.Values[0]) == 0 {
			return nil, true, ErrNoRows
		}
		return text(r.Values[0][0]), true, nil
	}
	out, ok := fill(t, map[string]any{"Columns": r.Columns, "Rows": r.Values, "Values": r.Values})
	return out, ok, nil
}

func (e ExecResult) convert(t reflect.Type) (any, bool) {
	if out, ok := basic(t, e.Stdout); ok {
		return out, true
	}
	return fill(t, map[string]any{"Stdout": e.Stdout, "Output": e.Stdout, "Stderr": e.Stderr,
		"ExitCode": e.ExitCode, "Exit": e.ExitCode, "Code": e.ExitCode})
}

func (h HTTPResponse) convert(t reflect.Type) (any, bool) {
	hdr := h.Header.Clone()
	if hdr == nil {
		hdr = http.Header{}
	}
	if t == reflect.TypeFor[*http.Response]() {
		return &http.Response{
			Status: strconv.Itoa(h.Status) + " " + http.StatusText(h.Status), StatusCode: h.Status,
			Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1, Header: hdr,
			Body: io.NopCloser(strings.NewReader(h.Body)), ContentLength: int64(len(h.Body)),
		}, true
	}
	if out, ok := basic(t, h.Body); ok {
		return out, true
	}
	return fill(t, map[string]any{"Status": h.Status, "StatusCode": h.Status, "Code": h.Status,
		"Header": hdr, "Headers": hdr, "ContentType": hdr.Get("Content-Type"), "Body": h.Body})
}

// basic converts s to a string or []byte type.
func basic(t reflect.Type, s string) (any, bool) {
	switch {
	case t.Kind() == reflect.String:
		return reflect.ValueOf(s).Convert(t).Interface(), true
	case t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.Uint8:
		return reflect.ValueOf([]byte(s)).Convert(t).Interface(), true
	}
	return nil, false
}

// fill builds a t (a struct, or a pointer to one) with the exported fields
// named in fields; it fails when no field could be set.
func fill(t reflect.Type, fields map[string]any) (any, bool) {
	st := t
	if st.Kind() == reflect.Pointer {
		st = st.Elem()
	}
	if st.Kind() != reflect.Struct {
		return nil, false
	}
	pv := reflect.New(st)
	sv := pv.Elem()
	set := 0
	for name, val := range fields {
		if f := sv.FieldByName(name); f.IsValid() && f.CanSet() && assign(f, val) {
			set++
		}
	}
	if set == 0 {
		return nil, false
	}
	if t.Kind() == reflect.Pointer {
		return pv.Interface(), true
	}
	return sv.Interface(), true
}

// assign sets f to val where the conversion is lossless: same type,
// string to string or []byte kinds, integer to any integer kind.
func assign(f reflect.Value, val any) bool {
	v := reflect.ValueOf(val)
	if !v.IsValid() {
		return false
	}
	switch {
	case v.Type().AssignableTo(f.Type()):
		f.Set(v)
	case v.Kind() == reflect.String:
		out, ok := basic(f.Type(), v.String())
		if !ok {
			return false
		}
		f.Set(reflect.ValueOf(out))
	case v.CanInt() && f.CanInt():
		if f.OverflowInt(v.Int()) {
			return false
		}
		f.SetInt(v.Int())
	case v.CanInt() && f.CanUint():
		if v.Int() < 0 || f.OverflowUint(uint64(v.Int())) {
			return false
		}
		f.SetUint(uint64(v.Int()))
	default:
		return false
	}
	return true
}

// text returns a query value as text.
func text(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case []byte:
		return string(x)
	case string:
		return x
	}
	return fmt.Sprint(v)
}
