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

func TestConfigFileDurations(t *testing.T) {
	cases := []struct {
		name string
		json string
		want string // error text; "" = accepted
	}{
		{"string duration", `{"expire_every": "10s", "gw_timeout": "2s", "db_timeout": "500ms", "rest_timeout": "1m"}`, ""},
		{"number refused", `{"expire_every": 10}`, `expire_every: want a duration string such as "10s", got 10`},
		{"bad string", `{"db_timeout": "ten"}`, `db_timeout: "ten" is not a duration`},
		{"expire_every below 1s", `{"expire_every": "10ms"}`, "expire_every: 10ms is out of range 1s..24h0m0s"},
		{"gw_timeout above Timer C", `{"gw_timeout": "5m"}`, "gw_timeout: 5m0s is out of range"},
		{"rest_timeout zero", `{"rest_timeout": "0s"}`, "rest_timeout: 0s is out of range"},
		{"unknown field", `{"expire_evry": "10s"}`, `unknown field "expire_evry"`},
		{"listen as a list", `{"listen": ["udp:127.0.0.1:5060", "tcp:127.0.0.1:5060"]}`, ""},
		{"listen bad type", `{"listen": 5060}`, "listen: want"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "proxy.json")
			require.NoError(t, os.WriteFile(file, []byte(tc.json), 0o600))
			_, _, err := parseConfig([]string{"-config", file})
			if tc.want == "" {
				require.NoError(t, err)
				return
			}
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
	file := filepath.Join(t.TempDir(), "proxy.json")
	require.NoError(t, os.WriteFile(file, []byte(`{"expire_every": "10s", "listen": "tcp:0.0.0.0:5070"}`), 0o600))
	cfg, _, err := parseConfig([]string{"-config", file})
	require.NoError(t, err)
	assert.Equal(t, 10*time.Second, cfg.ExpireEvery)
	assert.Equal(t, []string{"tcp:0.0.0.0:5070"}, cfg.Listen)
}

func TestConfigValidation(t *testing.T) {
	cert := filepath.Join(t.TempDir(), "cert.pem")
	require.NoError(t, os.WriteFile(cert, []byte("x"), 0o600))
	cases := []struct {
		name  string
		flags []string
		want  string
	}{
		{"every transport", []string{"-listen", "udp:0.0.0.0:5060", "-listen", "tcp:0.0.0.0:5060", "-listen", "ws:[::]:8080",
			"-listen", "tls:0.0.0.0:5061", "-listen", "wss:0.0.0.0:8443", "-tls-cert", cert, "-tls-key", cert}, ""},
		{"unknown transport", []string{"-listen", "sctp:0.0.0.0:5060"}, `listen "sctp:0.0.0.0:5060": want transport:host:port`},
		{"listen host name", []string{"-listen", "udp:example.com:5060"}, "want an IP address and port"},
		{"listen port", []string{"-listen", "udp:0.0.0.0:99999"}, "want an IP address and port"},
		{"tls without cert", []string{"-listen", "tls:0.0.0.0:5061"}, "a tls: or wss: listener needs -tls-cert and -tls-key"},
		{"cert without key", []string{"-tls-cert", cert}, "tls_cert and tls_key: give both or neither"},
		{"missing cert file", []string{"-tls-cert", "/nonexistent/c.pem", "-tls-key", cert}, "tls_cert: "},
		{"advertise host", []string{"-listen", "udp:0.0.0.0:5060", "-advertise", "sip.example.com"}, ""},
		{"advertise host:port", []string{"-advertise", "203.0.113.5:5080"}, ""},
		{"advertise bad", []string{"-advertise", "bad host"}, `advertise "bad host"`},
		{"advertise port with two listeners", []string{"-listen", "udp:0.0.0.0:5060", "-listen", "tcp:0.0.0.0:5060", "-advertise", "203.0.113.5:5080"}, "a port is only allowed with one listener"},
		{"advertise port range", []string{"-advertise", "203.0.113.5:0"}, "port must be 1..65535"},
		{"workers negative", []string{"-workers", "-1"}, "workers: -1 is out of range"},
		{"workers too many", []string{"-workers", "100000"}, "workers: 100000 is out of range"},
		{"domain empty", []string{"-domain", ""}, `domain: "" is not a host name`},
		{"short secret", []string{"-secret", "abc"}, "secret: at least 16 characters"},
		{"log level", []string{"-log", "loud"}, `log_level "loud"`},
		{"rest hook scheme", []string{"-rest-hook", "ftp://x/"}, `rest_hook "ftp://x/"`},
		{"db scheme", []string{"-db", "mysql://u:pw@h/db"}, `db "mysql://u:***@h/db"`},
		{"gw timeout flag", []string{"-gw-timeout", "100ms"}, "gw_timeout: 100ms is out of range"},
		{"expire flag", []string{"-expire-every", "10ns"}, "expire_every: 10ns is out of range"},
		{"digest MD5 only", []string{"-digest", "MD5"}, ""},
		{"digest unknown", []string{"-digest", "SHA-512"}, `digest "SHA-512"`},
		{"digest repeated", []string{"-digest", "MD5,MD5"}, `digest "MD5,MD5"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := parseConfig(tc.flags)
			if tc.want == "" {
				require.NoError(t, err)
				return
			}
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}
