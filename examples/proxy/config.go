package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Config is the proxy's configuration: defaults, then a JSON config file
// (-config), then flags; later ones win.
type Config struct {
	Listen      string        `json:"listen"`       // "udp:127.0.0.1:5060"
	Workers     int           `json:"workers"`      // event loops (0 = one per CPU)
	DataDir     string        `json:"data_dir"`     // where the SQLite file lives
	DB          string        `json:"db"`           // DSN: postgres://… switches to PostgreSQL
	Domain      string        `json:"domain"`       // SIP domain and digest realm
	Secret      string        `json:"secret"`       // nonce secret shared by instances (default: stored in the data dir)
	LogLevel    string        `json:"log_level"`    // debug, info, warn, error
	RESTHook    string        `json:"rest_hook"`    // URL asked about each new call (optional)
	RESTTimeout time.Duration `json:"rest_timeout"` // bound on the hook call
	FailOpen    bool          `json:"fail_open"`    // on hook error/timeout, route by the database
	DBTimeout   time.Duration `json:"db_timeout"`   // bound on each database await
	ExpireEvery time.Duration `json:"expire_every"` // how often expired bindings are removed
}

func defaultConfig() Config {
	return Config{
		Listen: "udp:127.0.0.1:5060", DataDir: defaultDataDir(), Domain: "127.0.0.1",
		LogLevel: "info", RESTTimeout: time.Second, FailOpen: true, DBTimeout: 2 * time.Second,
		ExpireEvery: 30 * time.Second,
	}
}

// defaultDataDir is under the user's cache directory, or ./asyncsip-data.
func defaultDataDir() string {
	if d, err := os.UserCacheDir(); err == nil {
		return filepath.Join(d, "asyncsip-proxy")
	}
	return "asyncsip-data"
}

// parseConfig reads flags (and the config file they name) from args.
func parseConfig(args []string) (Config, []string, error) {
	cfg := defaultConfig()
	var file string
	fs := bindFlags(&cfg, &file)
	if err := fs.Parse(args); err != nil {
		return cfg, nil, err
	}
	if file != "" {
		// The file sits between the defaults and the flags: load it, then
		// parse the flags again on top of it.
		cfg = defaultConfig()
		b, err := os.ReadFile(file)
		if err != nil {
			return cfg, nil, fmt.Errorf("config: %w", err)
		}
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&cfg); err != nil {
			return cfg, nil, fmt.Errorf("config %s: %w", file, err)
		}
		fs = bindFlags(&cfg, &file)
		if err := fs.Parse(args); err != nil {
			return cfg, nil, err
		}
	}
	return cfg, fs.Args(), cfg.validate()
}

// bindFlags defines the flags straight on cfg's fields.
func bindFlags(cfg *Config, file *string) *flag.FlagSet {
	fs := flag.NewFlagSet("proxy", flag.ContinueOnError)
	fs.StringVar(file, "config", "", "JSON config file (flags override it)")
	fs.StringVar(&cfg.Listen, "listen", cfg.Listen, "listen address, udp:host:port")
	fs.IntVar(&cfg.Workers, "workers", cfg.Workers, "event loops (0 = one per CPU)")
	fs.StringVar(&cfg.DataDir, "data", cfg.DataDir, "data directory (SQLite file)")
	fs.StringVar(&cfg.DB, "db", cfg.DB, "database DSN: postgres://user@host:port/db switches to PostgreSQL (default: SQLite in -data)")
	fs.StringVar(&cfg.Domain, "domain", cfg.Domain, "SIP domain / digest realm")
	fs.StringVar(&cfg.Secret, "secret", cfg.Secret, "nonce secret shared by proxy instances")
	fs.StringVar(&cfg.LogLevel, "log", cfg.LogLevel, "log level: debug, info, warn, error")
	fs.StringVar(&cfg.RESTHook, "rest-hook", cfg.RESTHook, "HTTP URL asked to allow/deny/route each new call")
	fs.DurationVar(&cfg.RESTTimeout, "rest-timeout", cfg.RESTTimeout, "bound on the REST hook call")
	fs.BoolVar(&cfg.FailOpen, "fail-open", cfg.FailOpen, "route by the database when the REST hook fails")
	return fs
}

func (c *Config) validate() error {
	if !strings.HasPrefix(c.Listen, "udp:") {
		return fmt.Errorf("listen %q: want udp:host:port", c.Listen)
	}
	if c.Domain == "" {
		return errors.New("domain must not be empty")
	}
	if c.DBTimeout <= 0 || c.RESTTimeout <= 0 || c.ExpireEvery <= 0 {
		return errors.New("timeouts must be positive")
	}
	if _, err := logLevel(c.LogLevel); err != nil {
		return err
	}
	return nil
}

func logLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return l, fmt.Errorf("log level %q: want debug, info, warn or error", s)
	}
	return l, nil
}

// dsn returns the database DSN: -db, or the SQLite file in the data dir.
func (c *Config) dsn() (string, error) {
	if c.DB != "" {
		return c.DB, nil
	}
	if err := os.MkdirAll(c.DataDir, 0o755); err != nil {
		return "", fmt.Errorf("data dir: %w", err)
	}
	return filepath.Join(c.DataDir, "proxy.db"), nil
}

// secretBytes returns the nonce secret: -secret, or one kept in the data dir
// so that nonces survive a restart.
func (c *Config) secretBytes() ([]byte, error) {
	if c.Secret != "" {
		return []byte(c.Secret), nil
	}
	if c.DB != "" && !strings.HasPrefix(c.DB, "file:") && strings.Contains(c.DB, "://") {
		// Instances sharing a server database should share -secret; a
		// per-process random one still works, within one instance.
		return nil, nil
	}
	p := filepath.Join(c.DataDir, "nonce.secret")
	if b, err := os.ReadFile(p); err == nil && len(b) >= 16 {
		return b, nil
	}
	b := make([]byte, 32)
	if _, err := randRead(b); err != nil {
		return nil, err
	}
	if err := os.WriteFile(p, b, 0o600); err != nil {
		return nil, fmt.Errorf("secret: %w", err)
	}
	return b, nil
}
