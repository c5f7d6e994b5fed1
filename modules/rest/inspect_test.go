package rest_test

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/asyncsip/asyncsip/async"
	"github.com/asyncsip/asyncsip/modules/rest"
)

// A client's ops say what they send without sending it — Describe for
// logs, Inspect and Outcome for fakes — and a JSON op's outcome is what
// the worker would have decoded.
func TestDescribeInspectOutcome(t *testing.T) {
	t.Parallel()
	c := newClient(t, rest.Config{BaseURL: "http://user:secret@api.invalid/v1/", Header: http.Header{"X-Key": {"k"}}})

	get := c.Get("route?to=1555")
	assert.Equal(t, "rest: GET http://user:xxxxx@api.invalid/v1/route?to=1555", get.(async.Describer).Describe())
	req, ok := rest.Inspect(get)
	require.True(t, ok)
	assert.Equal(t, "GET", req.Method)
	assert.Equal(t, "http://user:secret@api.invalid/v1/route?to=1555", req.URL.String())
	assert.Equal(t, "k", req.Header.Get("X-Key"))

	post := rest.JSON[map[string]int](c.PostJSON("/cdr", map[string]string{"a": "b"}))
	assert.Equal(t, "rest: POST http://user:xxxxx@api.invalid/cdr", post.(async.Describer).Describe())
	req, ok = rest.Inspect(post)
	require.True(t, ok)
	b, err := io.ReadAll(req.Body)
	require.NoError(t, err)
	assert.Equal(t, `{"a":"b"}`, string(b))
	assert.Equal(t, "application/json", req.Header.Get("Content-Type"))

	do, err := http.NewRequest("DELETE", "binding/7", strings.NewReader("x"))
	require.NoError(t, err)
	req, ok = rest.Inspect(c.Do(do))
	require.True(t, ok)
	assert.Equal(t, "http://user:secret@api.invalid/v1/binding/7", req.URL.String())

	v, err := rest.Outcome(post, rest.Result{Status: 200, Body: []byte(`{"n":3}`)})
	require.NoError(t, err)
	assert.Equal(t, map[string]int{"n": 3}, v)
	_, err = rest.Outcome(post, rest.Result{Status: 500})
	assert.ErrorIs(t, err, rest.ErrStatus)
	r := rest.Result{Status: 204}
	v, err = rest.Outcome(get, r)
	require.NoError(t, err)
	assert.Equal(t, r, v)

	_, ok = rest.Inspect(c.Get("http://[::1"))
	assert.False(t, ok, "a request that cannot be made")
	assert.Contains(t, c.Get("http://[::1").(async.Describer).Describe(), "(bad URL)")
	_, ok = rest.Inspect(async.Done(rest.Result{}, nil))
	assert.False(t, ok, "not a client's op")
}
