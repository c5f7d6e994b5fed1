package main

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// runIn runs the program in-process with args and returns its stdout.
func runIn(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out, errs bytes.Buffer
	err := run(args, &out, &errs)
	return out.String(), err
}

func TestCLIRefusesBadInput(t *testing.T) {
	cases := []struct {
		name string
		args []string
		want string // in the error
	}{
		{"gateway address without port", []string{"gw", "add", "4", "not-a-hostport", "-prefix", "+44"}, `gateway address "not-a-hostport": want HOST:PORT`},
		{"gateway without prefix", []string{"gw", "add", "4", "192.0.2.1:5060"}, "prefix: required"},
		{"gateway prefix syntax", []string{"gw", "add", "4", "192.0.2.1:5060", "-prefix", "44x"}, `prefix "44x"`},
		{"gateway id not a number", []string{"gw", "add", "four", "192.0.2.1:5060", "-prefix", "+44"}, `gateway id "four"`},
		{"gateway id zero", []string{"gw", "add", "-id", "0", "-addr", "192.0.2.1:5060", "-prefix", "+44"}, `gateway id "0"`},
		{"gateway id missing", []string{"gw", "add", "-prefix", "+44"}, "gateway id: missing"},
		{"gateway port out of range", []string{"gw", "add", "4", "192.0.2.1:70000", "-prefix", "+44"}, "port must be 1..65535"},
		{"gateway bad host", []string{"gw", "add", "4", "bad_host!:5060", "-prefix", "+44"}, "is not an IP address or host name"},
		{"gateway priority", []string{"gw", "add", "4", "192.0.2.1:5060", "-prefix", "+44", "-priority", "-1"}, `priority "-1"`},
		{"gateway extra argument", []string{"gw", "add", "4", "192.0.2.1:5060", "extra", "-prefix", "+44"}, `unexpected argument "extra"`},
		{"gw del id", []string{"gw", "del", "x"}, `gateway id "x"`},
		{"user name", []string{"user", "add", "al ice", "pw"}, `user name "al ice"`},
		{"user name with @", []string{"user", "add", "alice@example.com", "pw"}, `user name "alice@example.com"`},
		{"empty password", []string{"user", "add", "alice", ""}, "password: must not be empty"},
		{"password with newline", []string{"user", "add", "alice", "a\nb"}, "password: control characters"},
		{"user add arity", []string{"user", "add", "alice"}, "want NAME PASSWORD"},
		{"unknown command", []string{"user", "frobnicate"}, `unknown command "user frobnicate"`},
		{"incomplete command", []string{"user"}, "incomplete command"},
		{"list takes nothing", []string{"user", "list", "extra"}, `unexpected argument "extra"`},
		{"flag without value", []string{"user", "list", "-data"}, "flag -data needs a value"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			data := t.TempDir()
			_, err := runIn(t, append([]string{"-data", data}, tc.args...)...)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
			out, err := runIn(t, "-data", data, "gw", "list")
			require.NoError(t, err)
			assert.Equal(t, 1, strings.Count(out, "\n"), "nothing stored: %s", out)
		})
	}
}

func TestCLIGatewaySyntaxes(t *testing.T) {
	cases := []struct {
		name string
		args []string
		row  []string // fields of the stored row
	}{
		{"positional, single dash", []string{"gw", "add", "4", "192.0.2.1:5060", "-prefix", "+44"}, []string{"4", "192.0.2.1:5060", "+44", "0"}},
		{"double dash before positionals", []string{"gw", "add", "--prefix", "+44", "--priority", "3", "4", "192.0.2.1:5060"}, []string{"4", "192.0.2.1:5060", "+44", "3"}},
		{"all flags", []string{"gw", "add", "-id", "7", "-addr", "sip:gw.example.net:5070", "-prefix=1"}, []string{"7", "gw.example.net:5070", "1", "0"}},
		{"catch-all", []string{"gw", "add", "9", "[2001:db8::1]:5060", "-prefix", "*"}, []string{"9", "[2001:db8::1]:5060", "*", "0"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			data := t.TempDir()
			_, err := runIn(t, append([]string{"-data", data}, tc.args...)...)
			require.NoError(t, err)
			out, err := runIn(t, "gw", "list", "-data", data) // global flag after the command
			require.NoError(t, err)
			lines := strings.Split(strings.TrimSpace(out), "\n")
			require.Len(t, lines, 2, out)
			assert.Equal(t, []string{"ID", "ADDRESS", "PREFIX", "PRIORITY"}, strings.Fields(lines[0]))
			assert.Equal(t, tc.row, strings.Fields(lines[1]))
		})
	}
}

func TestCLIFlagsAfterTheCommand(t *testing.T) {
	data := t.TempDir()
	_, err := runIn(t, "user", "add", "alice", "secret", "-data", data)
	require.NoError(t, err)
	_, err = runIn(t, "user", "add", "-data="+data, "bob", "--", "-dashpw")
	require.NoError(t, err)
	out, err := runIn(t, "user", "list", "--data", data)
	require.NoError(t, err)
	assert.Equal(t, "USER\nalice\nbob\n", out)
	// The user really went into that directory's database.
	s, err := OpenStore(context.Background(), filepath.Join(data, "proxy.db"), "127.0.0.1")
	require.NoError(t, err)
	defer s.Close()
	rows, err := s.List(context.Background(), "subscriber")
	require.NoError(t, err)
	assert.Equal(t, 2, rows.Len())
}

func TestCLIHelpListsCommandsAndExitsZero(t *testing.T) {
	for _, args := range [][]string{{"-h"}, {"--help"}, {"gw", "add", "-h"}} {
		out, err := runIn(t, args...)
		require.NoError(t, err, "%v", args)
		for _, want := range []string{"user add NAME PASSWORD", "gw add ID HOST:PORT -prefix P", "location list", "-listen", "-advertise", "-gw-timeout"} {
			assert.Contains(t, out, want, "%v", args)
		}
	}
}

func TestCLILocationListIsReadable(t *testing.T) {
	data := t.TempDir()
	_, err := runIn(t, "-data", data, "user", "add", "alice", "pw")
	require.NoError(t, err)
	s, err := OpenStore(context.Background(), filepath.Join(data, "proxy.db"), "127.0.0.1")
	require.NoError(t, err)
	_, err = s.h.ExecContext(context.Background(), `INSERT INTO location (username, contact, expires_at)
		VALUES ('alice', 'sip:alice@192.0.2.7:5060', 4102444800), ('alice', 'sip:alice@192.0.2.8:5060', 946684800)`)
	require.NoError(t, err)
	s.Close()
	out, err := runIn(t, "-data", data, "location", "list")
	require.NoError(t, err)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	require.Len(t, lines, 3, out)
	assert.Equal(t, []string{"USER", "CONTACT", "EXPIRES", "(UTC)", "REMAINING"}, strings.Fields(lines[0]))
	assert.Contains(t, lines[1], "2100-01-01 00:00:00")
	assert.Regexp(t, `\d+h\d+m\d+s$`, lines[1], "remaining time")
	assert.Contains(t, lines[2], "2000-01-01 00:00:00")
	assert.True(t, strings.HasSuffix(lines[2], "expired"), lines[2])
	assert.NotContains(t, out, "4102444800", "no raw Unix time")
}
