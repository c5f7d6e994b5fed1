package main

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseConfigPrecedence(t *testing.T) {
	file := filepath.Join(t.TempDir(), "proxy.json")
	require.NoError(t, os.WriteFile(file, []byte(`{"domain": "file.example", "workers": 3, "rest_timeout": "2s"}`), 0o600))

	cfg, rest, err := parseConfig([]string{"-workers", "5", "user", "list"})
	require.NoError(t, err)
	assert.Equal(t, 5, cfg.Workers)
	assert.Equal(t, "127.0.0.1", cfg.Domain, "default")
	assert.Equal(t, []string{"user", "list"}, rest)

	cfg, _, err = parseConfig([]string{"-config", file, "-workers", "7"})
	require.NoError(t, err)
	assert.Equal(t, "file.example", cfg.Domain, "from the file")
	assert.Equal(t, 2*time.Second, cfg.RESTTimeout, "from the file")
	assert.Equal(t, 7, cfg.Workers, "the flag wins over the file")
	assert.Equal(t, []string{"udp:127.0.0.1:5060"}, cfg.Listen, "default kept")

	bad := filepath.Join(t.TempDir(), "bad.json")
	require.NoError(t, os.WriteFile(bad, []byte(`{"nope": 1}`), 0o600))
	_, _, err = parseConfig([]string{"-config", bad})
	assert.ErrorContains(t, err, "unknown field")
	_, _, err = parseConfig([]string{"-listen", "sctp:1.2.3.4:5"})
	assert.Error(t, err)
}
