package db

import (
	"database/sql"
	"math"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Value's lenient accessors and strict Scan, on every driver value type.
func TestValueConversions(t *testing.T) {
	t.Parallel()
	ts := time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)
	cases := []struct {
		name  string
		v     any
		str   string
		i     int64
		f     float64
		b     bool
		bytes []byte
	}{
		{"null", nil, "", 0, 0, false, nil},
		{"int", int64(42), "42", 42, 42, true, []byte("42")},
		{"negative", int64(-7), "-7", -7, -7, true, []byte("-7")},
		{"float", 2.75, "2.75", 2, 2.75, true, []byte("2.75")},
		{"bool", true, "true", 1, 1, true, []byte("true")},
		{"text number", " 12 ", " 12 ", 12, 12, false, []byte(" 12 ")},
		{"text float", "3.5", "3.5", 3, 3.5, false, []byte("3.5")},
		{"text bool", "true", "true", 0, 0, true, []byte("true")},
		{"text", "abc", "abc", 0, 0, false, []byte("abc")},
		{"blob", []byte("1"), "1", 1, 1, true, []byte("1")},
		{"time", ts, "2024-05-06T07:08:09Z", 0, 0, false, []byte("2024-05-06T07:08:09Z")},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			v := Value{v: tc.v, ok: true}
			require.Equal(t, tc.str, v.String())
			require.Equal(t, tc.i, v.Int())
			require.Equal(t, tc.f, v.Float())
			require.Equal(t, tc.b, v.Bool())
			require.Equal(t, tc.bytes, v.Bytes())
			require.Equal(t, tc.v == nil, v.IsNull())
			require.Equal(t, tc.v, v.Any())
		})
	}
	require.Equal(t, ts, Value{v: "2024-05-06 07:08:09", ok: true}.Time())
	require.Equal(t, time.Unix(100, 0).UTC(), Value{v: int64(100), ok: true}.Time())
	require.True(t, Value{v: "never", ok: true}.Time().IsZero())
}

func TestScan(t *testing.T) {
	t.Parallel()
	var (
		s   string
		b   []byte
		i   int
		i8  int8
		i64 int64
		u16 uint16
		f32 float32
		ok  bool
		tm  time.Time
		ps  *string
		pi  *int64
		a   any
		ns  sql.NullString
		ni  sql.NullInt64
	)
	good := []struct {
		name string
		src  any
		dest any
		want any
	}{
		{"text", "x", &s, "x"},
		{"int as text", int64(5), &s, "5"},
		{"blob copy", []byte("ab"), &b, []byte("ab")},
		{"null blob", nil, &b, []byte(nil)},
		{"int", int64(-3), &i, -3},
		{"int8", int64(127), &i8, int8(127)},
		{"text int", "99", &i64, int64(99)},
		{"integral float", 4.0, &i64, int64(4)},
		{"uint16", int64(65535), &u16, uint16(65535)},
		{"float32", 1.5, &f32, float32(1.5)},
		{"bool from int", int64(1), &ok, true},
		{"time from text", "2024-05-06T07:08:09Z", &tm, time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)},
		{"any", int64(1), &a, int64(1)},
		{"null string", nil, &ns, sql.NullString{}},
		{"null int", nil, &ni, sql.NullInt64{}},
		{"valid int", int64(8), &ni, sql.NullInt64{Int64: 8, Valid: true}},
	}
	for _, tc := range good {
		require.NoError(t, scanValue(tc.src, tc.dest), tc.name)
	}
	require.Equal(t, "5", s)
	require.NoError(t, scanValue(nil, &ps))
	require.Nil(t, ps)
	require.NoError(t, scanValue("hi", &ps))
	require.Equal(t, "hi", *ps)
	require.NoError(t, scanValue(int64(7), &pi))
	require.Equal(t, int64(7), *pi)

	bad := []struct {
		name string
		src  any
		dest any
	}{
		{"null into string", nil, &s},
		{"null into int", nil, &i},
		{"int8 overflow", int64(128), &i8},
		{"negative uint", int64(-1), &u16},
		{"fraction into int", 1.5, &i64},
		{"text into int", "abc", &i64},
		{"float32 overflow", math.MaxFloat64, &f32},
		{"text into bool", "maybe", &ok},
		{"not a pointer", int64(1), i},
		{"nil pointer", int64(1), (*int)(nil)},
		{"nil", int64(1), nil},
		{"unsupported", int64(1), &struct{}{}},
		{"scanner error", "x", &ni},
	}
	for _, tc := range bad {
		require.ErrorIs(t, scanValue(tc.src, tc.dest), ErrScan, tc.name)
	}
	require.ErrorIs(t, Value{}.Scan(&s), ErrScan, "missing column")
	require.ErrorIs(t, Row{}.Scan(&s), ErrScan, "wrong count")
}
