// Package testenv holds helpers for tests that need something outside the Go
// process: a SIPp binary, a PostgreSQL server, free loopback ports, and a file
// descriptor count for leak checks.
//
// A test that needs an external peer asks for it through this package. When
// the peer is missing the test is skipped with a hint on how to provide it,
// except under CI (CI=true or CI=1), where a missing peer fails the test so a
// broken CI image cannot silently turn interop tests into skips. `make test`
// (and .ci/run) installs the peers and starts a private PostgreSQL.
package testenv

import (
	"net"
	"os"
	"os/exec"
	"testing"
)

// PostgresDSNEnv is the environment variable holding the DSN of a PostgreSQL
// database the tests may use freely. `make test` sets it.
const PostgresDSNEnv = "ASYNCSIP_TEST_POSTGRES_DSN"

// IsCI reports whether the tests run under CI, i.e. the CI environment
// variable is "true" or "1".
func IsCI() bool {
	v := os.Getenv("CI")
	return v == "true" || v == "1"
}

// Need reports that the test cannot run without what. Under CI it fails the
// test; otherwise it skips it, telling the reader howToRun it. Like t.Skip and
// t.Fatal it does not return.
func Need(t testing.TB, what, howToRun string) {
	t.Helper()
	if IsCI() {
		t.Fatalf("test dependency missing: %s (CI=true requires it; %s)", what, howToRun)
	}
	t.Skipf("%s not available; %s", what, howToRun)
}

// SIPp returns the path of the sipp binary found on PATH. If there is none it
// calls Need, so the test is skipped (or fails under CI).
func SIPp(t testing.TB) string {
	t.Helper()
	p, err := exec.LookPath("sipp")
	if err != nil {
		Need(t, "sipp", "install sip-tester (apt-get install sip-tester) or run `make test`")
	}
	return p
}

// PostgresDSN returns the DSN from ASYNCSIP_TEST_POSTGRES_DSN. If it is unset
// it calls Need, so the test is skipped (or fails under CI).
func PostgresDSN(t testing.TB) string {
	t.Helper()
	dsn := os.Getenv(PostgresDSNEnv)
	if dsn == "" {
		Need(t, "PostgreSQL ("+PostgresDSNEnv+")",
			"run `make test` which starts a private PostgreSQL, or set "+PostgresDSNEnv)
	}
	return dsn
}

// FreeUDPPort returns a UDP port on 127.0.0.1 that was free a moment ago: it
// binds port 0, reads the port the kernel chose and closes the socket. Another
// process may take the port before the caller binds it; tests that can bind
// port 0 themselves should prefer that.
func FreeUDPPort(t testing.TB) int {
	t.Helper()
	c, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("testenv: finding a free UDP port: %v", err)
	}
	port := c.LocalAddr().(*net.UDPAddr).Port
	if err := c.Close(); err != nil {
		t.Fatalf("testenv: closing UDP probe socket: %v", err)
	}
	return port
}

// FreeTCPPort returns a TCP port on 127.0.0.1 that was free a moment ago, in
// the same way as FreeUDPPort and with the same caveat.
func FreeTCPPort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("testenv: finding a free TCP port: %v", err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	if err := l.Close(); err != nil {
		t.Fatalf("testenv: closing TCP probe listener: %v", err)
	}
	return port
}

// CountFDs returns the number of file descriptors open in this process (the
// entries of /proc/self/fd), or -1 if that cannot be read. Compare two counts
// taken around the code under test to detect descriptor leaks; the Go runtime
// and other goroutines may open descriptors too, so allow for some slack or
// retry.
func CountFDs() int {
	f, err := os.Open("/proc/self/fd")
	if err != nil {
		return -1
	}
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil {
		return -1
	}
	// The directory handle itself is one of the entries; do not count it.
	return len(names) - 1
}
