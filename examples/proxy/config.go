package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Config is the proxy's configuration: defaults, then a JSON config file
// (-config), then flags; later ones win. In the file, durations are strings
// ("10s", "1m30s") and every field is checked (see validate).
type Config struct {
	Listen      []string      `json:"listen"`       // "udp:127.0.0.1:5060", also tcp:, tls:, ws:, wss:
	Advertise   string        `json:"advertise"`    // host[:port] put in Via and Record-Route
	TLSCert     string        `json:"tls_cert"`     // PEM certificate chain for tls: and wss:
	TLSKey      string        `json:"tls_key"`      // PEM key for tls: and wss:
	Workers     int           `json:"workers"`      // event loops (0 = one per CPU)
	DataDir     string        `json:"data_dir"`     // where the SQLite file lives
	DB          string        `json:"db"`           // DSN: postgres://… switches to PostgreSQL
	Domain      string        `json:"domain"`       // SIP domain and digest realm
	Secret      string        `json:"secret"`       // nonce secret shared by instances (default: stored in the data dir)
	LogLevel    string        `json:"log_level"`    // debug, info, warn, error
	RESTHook    string        `json:"rest_hook"`    // URL asked about each new call (optional)
	RESTTimeout time.Duration `json:"rest_timeout"` // bound on the hook call
	FailOpen    bool          `json:"fail_open"`    // on hook error/timeout (not overload), route by the database
	DBTimeout   time.Duration `json:"db_timeout"`   // bound on each database await
	ExpireEvery time.Duration `json:"expire_every"` // how often expired bindings are removed
	GWTimeout   time.Duration `json:"gw_timeout"`   // how long a gateway may stay silent before the next is tried
	Digest      []string      `json:"digest"`       // digest algorithms offered, in order: SHA-256, MD5

	// Security (see the README's "Security" section and docs/SECURITY.md).
	Trusted         []string      `json:"trusted"`          // peers never challenged: IP, CIDR or IP:port (gateways are trusted by their IP:port)
	RouteKey        string        `json:"route_key"`        // file with the Record-Route signing key (default route.key in the data dir)
	MaxContacts     int           `json:"max_contacts"`     // bindings per user
	MaxFork         int           `json:"max_fork"`         // parallel branches of one call
	RESTConcurrency int           `json:"rest_concurrency"` // REST hook calls at once
	RESTQueue       int           `json:"rest_queue"`       // REST hook calls waiting beyond those; more are refused 503
	Rate            int           `json:"rate"`             // initial requests per second per untrusted source IP (0 = no limit)
	RateBurst       int           `json:"rate_burst"`       // requests at once above rate
	RateBan         time.Duration `json:"rate_ban"`         // how long a source over the rate is ignored
	AuthFailures    int           `json:"auth_failures"`    // failed digest attempts per source within a minute before a ban
	AuthBan         time.Duration `json:"auth_ban"`         // the first auth ban; each further one doubles, up to 1 h
	BindNonce       bool          `json:"bind_nonce"`       // a nonce is good only from the address it was sent to

	// NATFix stores the Contact of a REGISTER from behind a NAT (its Contact
	// does not name the source address and port) rewritten to that source,
	// so that calls reach the UA through its NAT binding (modules/nat).
	NATFix bool `json:"nat_fix"`
	// Scale-out (docs/SCALING.md): state several instances share.
	Location   string `json:"location"`    // "" = bindings in the database; redis://host:port = in Redis
	Shared     string `json:"shared"`      // "" = counters in this process; redis://host:port = trunk calls, rate and nonce counts shared by instances
	TrunkCalls int    `json:"trunk_calls"` // calls at once to the gateways, over every instance with shared (0 = no limit)
	Instance   string `json:"instance"`    // this instance's name in shared state (default host/pid)

	// NATPing, when not 0, is the interval of the OPTIONS keep-alives sent
	// to the bindings of UAs behind a NAT (to the address their REGISTER
	// came from); a binding silent for 3 pings in a row is removed.
	NATPing time.Duration `json:"nat_ping"`

	// RTPEngine, when set, is the rtpengine instances ("udp:IP:port",
	// comma-separated) that anchor the media of calls with a side behind a
	// NAT, and bridge browsers (SIP over WebSocket) to SIP phones (media.go).
	RTPEngine string `json:"rtpengine"`
}

// Bounds checked by validate.
const (
	maxWorkers   = 256
	minSecretLen = 16
)

var durationBounds = []struct {
	name     string
	get      func(*Config) time.Duration
	min, max time.Duration
}{
	{"rest_timeout", func(c *Config) time.Duration { return c.RESTTimeout }, 10 * time.Millisecond, time.Minute},
	{"db_timeout", func(c *Config) time.Duration { return c.DBTimeout }, 10 * time.Millisecond, time.Minute},
	{"expire_every", func(c *Config) time.Duration { return c.ExpireEvery }, time.Second, 24 * time.Hour},
	{"gw_timeout", func(c *Config) time.Duration { return c.GWTimeout }, 500 * time.Millisecond, 3 * time.Minute},
	{"rate_ban", func(c *Config) time.Duration { return c.RateBan }, time.Second, 24 * time.Hour},
	{"auth_ban", func(c *Config) time.Duration { return c.AuthBan }, time.Second, 24 * time.Hour},
}

var intBounds = []struct {
	name     string
	get      func(*Config) int
	min, max int
}{
	{"max_contacts", func(c *Config) int { return c.MaxContacts }, 1, 1000},
	{"max_fork", func(c *Config) int { return c.MaxFork }, 1, 60},
	{"rest_concurrency", func(c *Config) int { return c.RESTConcurrency }, 1, 4096},
	{"rest_queue", func(c *Config) int { return c.RESTQueue }, 0, 100000},
	{"rate", func(c *Config) int { return c.Rate }, 0, 100000},
	{"rate_burst", func(c *Config) int { return c.RateBurst }, 1, 1000000},
	{"auth_failures", func(c *Config) int { return c.AuthFailures }, 1, 10000},
	{"trunk_calls", func(c *Config) int { return c.TrunkCalls }, 0, 1000000},
}

func defaultConfig() Config {
	return Config{
		Listen: []string{"udp:127.0.0.1:5060"}, DataDir: defaultDataDir(), Domain: "127.0.0.1",
		LogLevel: "info", RESTTimeout: time.Second, FailOpen: false, DBTimeout: 2 * time.Second,
		ExpireEvery: 30 * time.Second, GWTimeout: 5 * time.Second, Digest: []string{"SHA-256", "MD5"},
		MaxContacts: 10, MaxFork: 10, RESTConcurrency: 32, RESTQueue: 64,
		Rate: 20, RateBurst: 40, RateBan: time.Minute, AuthFailures: 10, AuthBan: time.Minute, BindNonce: true,
	}
}

// defaultDataDir is under the user's cache directory, or ./asyncsip-data.
func defaultDataDir() string {
	if d, err := os.UserCacheDir(); err == nil {
		return filepath.Join(d, "asyncsip-proxy")
	}
	return "asyncsip-data"
}

// UnmarshalJSON reads the config file: unknown fields are refused, durations
// must be strings such as "10s" (a bare number would mean nanoseconds), and
// "listen" is one address or a list.
func (c *Config) UnmarshalJSON(b []byte) error {
	type plain Config
	aux := struct {
		*plain
		Listen      json.RawMessage `json:"listen"`
		RESTTimeout json.RawMessage `json:"rest_timeout"`
		DBTimeout   json.RawMessage `json:"db_timeout"`
		ExpireEvery json.RawMessage `json:"expire_every"`
		GWTimeout   json.RawMessage `json:"gw_timeout"`
		RateBan     json.RawMessage `json:"rate_ban"`
		AuthBan     json.RawMessage `json:"auth_ban"`
		NATPing     json.RawMessage `json:"nat_ping"`
	}{plain: (*plain)(c)}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&aux); err != nil {
		return err
	}
	for _, d := range []struct {
		name string
		raw  json.RawMessage
		dst  *time.Duration
	}{{"rest_timeout", aux.RESTTimeout, &c.RESTTimeout}, {"db_timeout", aux.DBTimeout, &c.DBTimeout},
		{"expire_every", aux.ExpireEvery, &c.ExpireEvery}, {"gw_timeout", aux.GWTimeout, &c.GWTimeout},
		{"rate_ban", aux.RateBan, &c.RateBan}, {"auth_ban", aux.AuthBan, &c.AuthBan}, {"nat_ping", aux.NATPing, &c.NATPing}} {
		if err := jsonDuration(d.name, d.raw, d.dst); err != nil {
			return err
		}
	}
	return jsonListen(aux.Listen, &c.Listen)
}

func jsonDuration(name string, raw json.RawMessage, dst *time.Duration) error {
	if len(raw) == 0 {
		return nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return fmt.Errorf("%s: want a duration string such as \"10s\", got %s", name, raw)
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("%s: %q is not a duration (want e.g. \"10s\", \"500ms\")", name, s)
	}
	*dst = d
	return nil
}

func jsonListen(raw json.RawMessage, dst *[]string) error {
	if len(raw) == 0 {
		return nil
	}
	var one string
	if json.Unmarshal(raw, &one) == nil {
		*dst = []string{one}
		return nil
	}
	var many []string
	if err := json.Unmarshal(raw, &many); err != nil {
		return fmt.Errorf("listen: want \"transport:host:port\" or a list of them, got %s", raw)
	}
	*dst = many
	return nil
}

// parseConfig reads flags (and the config file they name) from args. Flags
// may come before or after a CLI command ("user list -data DIR").
func parseConfig(args []string) (Config, []string, error) {
	cfg := defaultConfig()
	var file string
	cmd, err := parseFlags(&cfg, &file, args)
	if err != nil {
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
		if err := json.Unmarshal(b, &cfg); err != nil {
			return cfg, nil, fmt.Errorf("config %s: %w", file, err)
		}
		if cmd, err = parseFlags(&cfg, &file, args); err != nil {
			return cfg, nil, err
		}
	}
	return cfg, cmd, cfg.validate()
}

// parseFlags parses the global flags found anywhere in args onto cfg and
// returns the other words (the CLI command, its arguments and its own flags
// such as -prefix) in order. A lone "--" ends the flags.
func parseFlags(cfg *Config, file *string, args []string) ([]string, error) {
	fs := bindFlags(cfg, file)
	var global, words []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			words = append(words, args[i+1:]...)
			break
		}
		name, hasValue := flagName(a)
		if name == "h" || name == "help" {
			return nil, flag.ErrHelp
		}
		f := fs.Lookup(name)
		if f == nil {
			words = append(words, a) // a command word or a command's own flag
			continue
		}
		global = append(global, a)
		if b, ok := f.Value.(interface{ IsBoolFlag() bool }); !hasValue && !(ok && b.IsBoolFlag()) {
			if i+1 == len(args) {
				return nil, fmt.Errorf("flag -%s needs a value", name)
			}
			i++
			global = append(global, args[i])
		}
	}
	if err := fs.Parse(global); err != nil {
		return nil, err
	}
	return words, nil
}

// flagName returns the name of a "-name", "--name" or "-name=value"
// argument ("" for anything else) and whether the value is inline.
func flagName(a string) (string, bool) {
	if len(a) < 2 || a[0] != '-' {
		return "", false
	}
	n := strings.TrimPrefix(a[1:], "-")
	if n == "" || n[0] == '-' || n[0] == '=' {
		return "", false
	}
	name, _, inline := strings.Cut(n, "=")
	return name, inline
}

// listenFlag is -listen: the first use replaces the default, later ones add.
type listenFlag struct {
	dst *[]string
	set bool
}

func (l *listenFlag) String() string {
	if l.dst == nil {
		return ""
	}
	return strings.Join(*l.dst, ",")
}

func (l *listenFlag) Set(v string) error {
	if !l.set {
		*l.dst, l.set = nil, true
	}
	*l.dst = append(*l.dst, v)
	return nil
}

// bindFlags defines the flags straight on cfg's fields.
func bindFlags(cfg *Config, file *string) *flag.FlagSet {
	fs := flag.NewFlagSet("proxy", flag.ContinueOnError)
	fs.SetOutput(discard{})
	fs.StringVar(file, "config", "", "JSON config file (flags override it)")
	fs.Var(&listenFlag{dst: &cfg.Listen}, "listen", "listen address transport:host:port (udp, tcp, tls, ws, wss); repeat for more")
	fs.StringVar(&cfg.Advertise, "advertise", cfg.Advertise, "host[:port] put in Via and Record-Route (public address when listening on 0.0.0.0)")
	fs.StringVar(&cfg.TLSCert, "tls-cert", cfg.TLSCert, "PEM certificate chain for tls: and wss: listeners")
	fs.StringVar(&cfg.TLSKey, "tls-key", cfg.TLSKey, "PEM private key for tls: and wss: listeners")
	fs.IntVar(&cfg.Workers, "workers", cfg.Workers, "event loops (0 = one per CPU)")
	fs.StringVar(&cfg.DataDir, "data", cfg.DataDir, "data directory (SQLite file, nonce secret)")
	fs.StringVar(&cfg.DB, "db", cfg.DB, "database DSN: postgres://user@host:port/db switches to PostgreSQL (default: SQLite in -data)")
	fs.StringVar(&cfg.Domain, "domain", cfg.Domain, "SIP domain / digest realm")
	fs.StringVar(&cfg.Secret, "secret", cfg.Secret, "nonce secret shared by proxy instances (at least 16 characters)")
	fs.StringVar(&cfg.LogLevel, "log", cfg.LogLevel, "log level: debug, info, warn, error")
	fs.StringVar(&cfg.RESTHook, "rest-hook", cfg.RESTHook, "HTTP URL asked to allow/deny/route each new call")
	fs.DurationVar(&cfg.RESTTimeout, "rest-timeout", cfg.RESTTimeout, "bound on the REST hook call")
	fs.BoolVar(&cfg.FailOpen, "fail-open", cfg.FailOpen, "route by the database when the REST hook fails or times out (never when it is overloaded)")
	fs.DurationVar(&cfg.DBTimeout, "db-timeout", cfg.DBTimeout, "bound on each database query")
	fs.DurationVar(&cfg.ExpireEvery, "expire-every", cfg.ExpireEvery, "how often expired bindings are removed")
	fs.DurationVar(&cfg.GWTimeout, "gw-timeout", cfg.GWTimeout, "how long a silent gateway is waited for before the next is tried")
	fs.Func("trusted", "peers never challenged: IP, CIDR or IP:port, comma-separated; repeat for more",
		func(v string) error {
			for _, t := range strings.Split(v, ",") {
				if t = strings.TrimSpace(t); t != "" {
					cfg.Trusted = append(cfg.Trusted, t)
				}
			}
			return nil
		})
	fs.StringVar(&cfg.RouteKey, "route-key", cfg.RouteKey, "file holding the Record-Route signing key, created if missing (default route.key in -data); share it between instances")
	fs.IntVar(&cfg.MaxContacts, "max-contacts", cfg.MaxContacts, "bindings per user; a REGISTER beyond it gets 403 (1..1000)")
	fs.IntVar(&cfg.MaxFork, "max-fork", cfg.MaxFork, "parallel branches of one call (1..60)")
	fs.IntVar(&cfg.RESTConcurrency, "rest-concurrency", cfg.RESTConcurrency, "REST hook calls at once")
	fs.IntVar(&cfg.RESTQueue, "rest-queue", cfg.RESTQueue, "REST hook calls queued beyond -rest-concurrency; more get 503")
	fs.IntVar(&cfg.Rate, "rate", cfg.Rate, "initial requests per second per untrusted source IP (0 = no limit)")
	fs.IntVar(&cfg.RateBurst, "rate-burst", cfg.RateBurst, "requests at once above -rate")
	fs.DurationVar(&cfg.RateBan, "rate-ban", cfg.RateBan, "how long a source over -rate is ignored")
	fs.IntVar(&cfg.AuthFailures, "auth-failures", cfg.AuthFailures, "failed digest attempts per source within a minute before a ban")
	fs.DurationVar(&cfg.AuthBan, "auth-ban", cfg.AuthBan, "first ban after -auth-failures (doubles at each further ban, up to 1h)")
	fs.BoolVar(&cfg.BindNonce, "bind-nonce", cfg.BindNonce, "accept a nonce only from the address it was sent to")
	fs.DurationVar(&cfg.NATPing, "nat-ping", cfg.NATPing, "interval of OPTIONS keep-alives to bindings of UAs behind a NAT; 3 unanswered in a row remove the binding (0 = off, else 1s..10m)")
	fs.StringVar(&cfg.RTPEngine, "rtpengine", cfg.RTPEngine, "rtpengine instances udp:IP:port, comma-separated: media of calls with a side behind a NAT, and of browser-to-phone calls, goes through them (default: none)")
	fs.StringVar(&cfg.Location, "location", cfg.Location, "where bindings live: redis://host:port (default: the database)")
	fs.StringVar(&cfg.Shared, "shared", cfg.Shared, "Redis shared by instances for trunk calls, rate and nonce counts: redis://host:port (default: this process only)")
	fs.IntVar(&cfg.TrunkCalls, "trunk-calls", cfg.TrunkCalls, "calls at once to the gateways, over every instance with -shared (0 = no limit)")
	fs.StringVar(&cfg.Instance, "instance", cfg.Instance, "this instance's name in shared state (default host/pid)")
	fs.BoolVar(&cfg.NATFix, "nat-fix", cfg.NATFix, "store the Contact of a UA behind a NAT (Contact is not the source address:port) rewritten to the source")
	fs.Func("digest", `digest algorithms offered, in order (default "SHA-256,MD5"; "MD5" for clients such as SIPp that only do MD5)`,
		func(v string) error {
			cfg.Digest = strings.Split(v, ",")
			return nil
		})
	return fs
}

// discard silences the flag package: errors are returned, and -h prints
// the usage from cli.go.
type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// validate checks every field; each error names the field.
func (c *Config) validate() error {
	var errs []error
	if len(c.Listen) == 0 {
		errs = append(errs, errors.New("listen: at least one address is needed"))
	}
	tlsNeeded := false
	for _, l := range c.Listen {
		proto, err := checkListen(l)
		if err != nil {
			errs = append(errs, err)
		}
		tlsNeeded = tlsNeeded || proto == "tls" || proto == "wss"
	}
	if err := c.checkTLS(tlsNeeded); err != nil {
		errs = append(errs, err)
	}
	if err := checkAdvertise(c.Advertise, len(c.Listen)); err != nil {
		errs = append(errs, err)
	}
	if c.Workers < 0 || c.Workers > maxWorkers {
		errs = append(errs, fmt.Errorf("workers: %d is out of range 0..%d (0 = one per CPU)", c.Workers, maxWorkers))
	}
	if c.Domain == "" || strings.ContainsAny(c.Domain, " \t\r\n;@,<>\"/") {
		errs = append(errs, fmt.Errorf("domain: %q is not a host name", c.Domain))
	}
	if c.Secret != "" && len(c.Secret) < minSecretLen {
		errs = append(errs, fmt.Errorf("secret: at least %d characters", minSecretLen))
	}
	if c.DB == "" && c.DataDir == "" {
		errs = append(errs, errors.New("data_dir: must not be empty without db"))
	}
	if err := checkDSN(c.DB); err != nil {
		errs = append(errs, err)
	}
	if _, err := logLevel(c.LogLevel); err != nil {
		errs = append(errs, err)
	}
	if err := checkDigest(c.Digest); err != nil {
		errs = append(errs, err)
	}
	if err := checkHTTPURL(c.RESTHook); err != nil {
		errs = append(errs, err)
	}
	for _, u := range []struct{ name, v string }{{"location", c.Location}, {"shared", c.Shared}} {
		if err := checkRedisURL(u.name, u.v); err != nil {
			errs = append(errs, err)
		}
	}
	for _, b := range durationBounds {
		if d := b.get(c); d < b.min || d > b.max {
			errs = append(errs, fmt.Errorf("%s: %v is out of range %v..%v", b.name, d, b.min, b.max))
		}
	}
	if d := c.NATPing; d != 0 && (d < time.Second || d > 10*time.Minute) {
		errs = append(errs, fmt.Errorf("nat_ping: %v is out of range 1s..10m (0 = off)", d))
	}
	if _, err := parseRTPEngines(c.RTPEngine); err != nil {
		errs = append(errs, err)
	}
	for _, b := range intBounds {
		if n := b.get(c); n < b.min || n > b.max {
			errs = append(errs, fmt.Errorf("%s: %d is out of range %d..%d", b.name, n, b.min, b.max))
		}
	}
	if _, _, err := parseTrusted(c.Trusted); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// checkListen checks "transport:ip:port" and returns the transport.
func checkListen(l string) (string, error) {
	proto, addr, ok := strings.Cut(l, ":")
	switch proto {
	case "udp", "tcp", "tls", "ws", "wss":
	default:
		return "", fmt.Errorf("listen %q: want transport:host:port with transport udp, tcp, tls, ws or wss", l)
	}
	if !ok {
		return "", fmt.Errorf("listen %q: want transport:host:port", l)
	}
	if _, err := netip.ParseAddrPort(addr); err != nil {
		return "", fmt.Errorf("listen %q: want an IP address and port, such as 0.0.0.0:5060 or [::]:5060", l)
	}
	return proto, nil
}

func (c *Config) checkTLS(needed bool) error {
	if (c.TLSCert == "") != (c.TLSKey == "") {
		return errors.New("tls_cert and tls_key: give both or neither")
	}
	if needed && c.TLSCert == "" {
		return errors.New("tls_cert, tls_key: a tls: or wss: listener needs -tls-cert and -tls-key")
	}
	for name, f := range map[string]string{"tls_cert": c.TLSCert, "tls_key": c.TLSKey} {
		if f == "" {
			continue
		}
		if _, err := os.Stat(f); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}
	return nil
}

// checkAdvertise checks "host" or "host:port"; a port only makes sense
// with a single listener.
func checkAdvertise(a string, listeners int) error {
	if a == "" {
		return nil
	}
	host, port, err := net.SplitHostPort(a)
	if err != nil {
		host, port = strings.TrimSuffix(strings.TrimPrefix(a, "["), "]"), ""
	}
	if !validHost(host) {
		return fmt.Errorf("advertise %q: want a host name or IP address, with an optional :port", a)
	}
	if port != "" {
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("advertise %q: port must be 1..65535", a)
		}
		if listeners > 1 {
			return fmt.Errorf("advertise %q: a port is only allowed with one listener", a)
		}
	}
	return nil
}

// validHost accepts an IP address or a DNS name.
func validHost(h string) bool {
	if _, err := netip.ParseAddr(h); err == nil {
		return true
	}
	if h == "" || len(h) > 253 {
		return false
	}
	for _, label := range strings.Split(h, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, r := range label {
			if !(r == '-' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') {
				return false
			}
		}
	}
	return true
}

func checkDSN(dsn string) error {
	if dsn == "" || !strings.Contains(dsn, "://") {
		return nil // empty, or a SQLite file path
	}
	u, err := url.Parse(dsn)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") || u.Host == "" {
		return fmt.Errorf("db %q: want postgres://user@host:port/db or a SQLite file path", redact(dsn))
	}
	return nil
}

// checkDigest accepts a non-empty list of SHA-256 and MD5 without repeats.
func checkDigest(algs []string) error {
	if len(algs) == 0 {
		return errors.New("digest: at least one algorithm (SHA-256, MD5)")
	}
	seen := map[string]bool{}
	for _, a := range algs {
		if (a != "SHA-256" && a != "MD5") || seen[a] {
			return fmt.Errorf("digest %q: want SHA-256 and/or MD5, each once", strings.Join(algs, ","))
		}
		seen[a] = true
	}
	return nil
}

func checkHTTPURL(s string) error {
	if s == "" {
		return nil
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("rest_hook %q: want an http:// or https:// URL", s)
	}
	return nil
}

func logLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return l, fmt.Errorf("log_level %q: want debug, info, warn or error", s)
	}
	return l, nil
}

// dsn returns the database DSN: -db, or the SQLite file in the data dir,
// created readable by its owner only (it holds the users' HA1 values).
func (c *Config) dsn() (string, error) {
	if c.DB != "" {
		return c.DB, nil
	}
	if err := c.makeDataDir(); err != nil {
		return "", err
	}
	p := filepath.Join(c.DataDir, "proxy.db")
	f, err := os.OpenFile(p, os.O_RDONLY|os.O_CREATE|os.O_EXCL, 0o600)
	switch {
	case err == nil:
		f.Close()
	case !errors.Is(err, fs.ErrExist):
		return "", fmt.Errorf("database file: %w", err)
	}
	return p, nil
}

// makeDataDir creates the data directory, accessible by its owner only (a
// directory that exists keeps its mode: the operator chose it).
func (c *Config) makeDataDir() error {
	if err := os.MkdirAll(c.DataDir, 0o700); err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	return nil
}

// routeKeyFile is where the Record-Route signing key lives: -route-key, or
// route.key in the data dir.
func (c *Config) routeKeyFile() (string, error) {
	if c.RouteKey != "" {
		return c.RouteKey, nil
	}
	if err := c.makeDataDir(); err != nil {
		return "", err
	}
	return filepath.Join(c.DataDir, "route.key"), nil
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
	if err := c.makeDataDir(); err != nil {
		return nil, err
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
