package siptest_test

import (
	"io"
	"net/http"
	"reflect"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/asyncsip/asyncsip/siptest"
)

func TestConvert(t *testing.T) {
	t.Parallel()
	type bytesName []byte
	type small struct{ Code int8 }
	type unsigned struct{ ExitCode uint16 }
	type alt struct {
		Output  string
		Exit    int64
		Headers http.Header
	}
	type nothing struct{ Other int }
	rows := siptest.Rows{Columns: []string{"gw"}, Values: [][]any{{[]byte("sip:gw@10.0.0.1")}}}
	exec := siptest.ExecResult{Stdout: "out\n", Stderr: "warn", ExitCode: 3}
	web := siptest.HTTPResponse{Status: 404, Header: http.Header{"Content-Type": {"application/json"}}, Body: `{"error":"none"}`}

	for _, tc := range []struct {
		name    string
		v       any
		to      reflect.Type
		want    any
		wantErr error // nil: converted; errAny: refused
	}{
		{"assignable", 5, reflect.TypeFor[int](), 5, nil},
		{"to an interface", 5, reflect.TypeFor[any](), 5, nil},
		{"nil", nil, reflect.TypeFor[string](), nil, nil},
		{"rows to text from bytes", rows, reflect.TypeFor[string](), "sip:gw@10.0.0.1", nil},
		{"rows to values", rows, reflect.TypeFor[[][]any](), rows.Values, nil},
		{"no rows to a row", siptest.Rows{}, reflect.TypeFor[[]any](), nil, siptest.ErrNoRows},
		{"no rows to text", siptest.Rows{}, reflect.TypeFor[string](), nil, siptest.ErrNoRows},
		{"exec to exec.Result shape", exec, reflect.TypeFor[execResult](), execResult{Stdout: []byte("out\n"), Stderr: []byte("warn"), ExitCode: 3}, nil},
		{"exec to pointer", exec, reflect.TypeFor[*execResult](), &execResult{Stdout: []byte("out\n"), Stderr: []byte("warn"), ExitCode: 3}, nil},
		{"exec to string", exec, reflect.TypeFor[string](), "out\n", nil},
		{"exec to named bytes", exec, reflect.TypeFor[bytesName](), bytesName("out\n"), nil},
		{"exec to other names", exec, reflect.TypeFor[alt](), alt{Output: "out\n", Exit: 3}, nil},
		{"exec to unsigned", exec, reflect.TypeFor[unsigned](), unsigned{ExitCode: 3}, nil},
		{"rest to rest.Result shape", web, reflect.TypeFor[restResult](), restResult{Status: 404, Header: web.Header,
			ContentType: "application/json", Body: []byte(`{"error":"none"}`)}, nil},
		{"rest to body", web, reflect.TypeFor[[]byte](), []byte(`{"error":"none"}`), nil},
		{"rest to a narrow int", siptest.HTTPResponse{Status: 99}, reflect.TypeFor[small](), small{Code: 99}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := siptest.Convert(tc.v, tc.to, nil)
			if tc.wantErr != nil {
				require.ErrorIs(t, err, tc.wantErr)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
		})
	}

	for _, tc := range []struct {
		name string
		v    any
		to   reflect.Type
		msg  string
	}{
		{"plain wrong type", "x", reflect.TypeFor[int](), "string is not int"},
		{"no field matches", exec, reflect.TypeFor[nothing](), "cannot turn a siptest.ExecResult into siptest_test.nothing"},
		{"int overflow", siptest.HTTPResponse{Status: 404}, reflect.TypeFor[small](), "cannot turn a siptest.HTTPResponse"},
		{"negative into unsigned", siptest.ExecResult{ExitCode: -1}, reflect.TypeFor[unsigned](), "cannot turn"},
		{"rows into a map", rows, reflect.TypeFor[map[string]any](), "siptest.RowsConverter"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := siptest.Convert(tc.v, tc.to, nil)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.msg)
			assert.Equal(t, tc.v, got, "refused: v is returned as it is")
		})
	}
}

func TestConvertHTTPResponse(t *testing.T) {
	t.Parallel()
	got, err := siptest.Convert(siptest.HTTPResponse{Status: 503, Body: "busy"}, reflect.TypeFor[*http.Response](), nil)
	require.NoError(t, err)
	r := got.(*http.Response)
	assert.Equal(t, 503, r.StatusCode)
	assert.Equal(t, "503 Service Unavailable", r.Status)
	assert.NotNil(t, r.Header)
	assert.EqualValues(t, 4, r.ContentLength)
	b, err := io.ReadAll(r.Body)
	require.NoError(t, err)
	assert.Equal(t, "busy", string(b))
	require.NoError(t, r.Body.Close())
}

func TestConvertUsesRowsConverter(t *testing.T) {
	t.Parallel()
	op := &opaqueOp{}
	got, err := siptest.Convert(siptest.Rows{Columns: []string{"a"}, Values: [][]any{{"x"}}}, reflect.TypeFor[*opaqueRows](), op)
	require.NoError(t, err)
	assert.Equal(t, "x", got.(*opaqueRows).first())
	_, err = siptest.Convert(siptest.Rows{}, reflect.TypeFor[*opaqueRows](), op)
	assert.ErrorIs(t, err, errOpaqueNoRows)
}
