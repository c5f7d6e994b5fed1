package testenv

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// RedisAddrEnv is the environment variable holding the host:port of a Redis
// server the tests may use freely (any key, any database). `make test`
// starts a private one (.ci/redis.sh) and sets it.
const RedisAddrEnv = "ASYNCSIP_TEST_REDIS_ADDR"

// Redis returns the address (host:port) from ASYNCSIP_TEST_REDIS_ADDR. If it
// is unset it calls Need, so the test is skipped (or fails under CI). Tests
// sharing this server must use keys of their own (a prefix from t.Name());
// a test that stops or flushes Redis starts its own with StartRedis.
func Redis(t testing.TB) string {
	t.Helper()
	addr := os.Getenv(RedisAddrEnv)
	if addr == "" {
		Need(t, "Redis ("+RedisAddrEnv+")",
			"run `make test` which starts a private redis-server, or set "+RedisAddrEnv+"=127.0.0.1:6379")
	}
	return addr
}

// RedisServer returns the path of the redis-server binary (PATH, then
// /usr/bin and /usr/sbin). If there is none it calls Need.
func RedisServer(t testing.TB) string {
	t.Helper()
	if p, err := exec.LookPath("redis-server"); err == nil {
		return p
	}
	for _, p := range []string{"/usr/bin/redis-server", "/usr/sbin/redis-server"} {
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() {
			return p
		}
	}
	Need(t, "redis-server", "install redis-server (apt-get install redis-server) or run `make test`")
	return ""
}

// RedisProc is a private redis-server started by a test: loopback only, on
// a port of its own, no persistence, its files in a temp dir of the test.
// The test may stop and start it again (same port, empty data); it is
// stopped by PID when the test ends. Methods are safe for concurrent use.
type RedisProc struct {
	t    testing.TB
	bin  string
	dir  string
	port int
	conf string   // config file given first (Sentinel), "" for none
	args []string // extra redis-server arguments

	mu  sync.Mutex
	cmd *exec.Cmd
}

// StartRedis starts a private redis-server and waits until it answers
// PING. args are passed on to redis-server after this package's own
// ("--replicaof", "127.0.0.1 6379" for a replica). The server is stopped
// when the test ends.
func StartRedis(t testing.TB, args ...string) *RedisProc {
	t.Helper()
	p := &RedisProc{t: t, bin: RedisServer(t), dir: t.TempDir(), port: StaticPorts(t, 1)[0], args: args}
	t.Cleanup(p.Stop)
	if err := p.start(); err != nil {
		t.Fatalf("testenv: %v", err)
	}
	return p
}

// StartSentinel starts a private Redis Sentinel monitoring the master at
// masterAddr (host:port) under the name master, with a quorum of 1 and a
// down-after of 1 s; its config file (Sentinel rewrites it) is in the
// test's temp dir. Clients reach it with
// redis://<Addr()>/0?master_set=<master>. It is stopped when the test
// ends, like StartRedis's servers.
func StartSentinel(t testing.TB, master, masterAddr string) *RedisProc {
	t.Helper()
	host, port, err := net.SplitHostPort(masterAddr)
	if err != nil {
		t.Fatalf("testenv: sentinel master address %q: %v", masterAddr, err)
	}
	p := &RedisProc{t: t, bin: RedisServer(t), dir: t.TempDir(), port: StaticPorts(t, 1)[0]}
	p.conf = filepath.Join(p.dir, "sentinel.conf")
	conf := fmt.Sprintf("sentinel monitor %[1]s %[2]s %[3]s 1\n"+
		"sentinel down-after-milliseconds %[1]s 1000\n"+
		"sentinel failover-timeout %[1]s 10000\n", master, host, port)
	if err := os.WriteFile(p.conf, []byte(conf), 0o600); err != nil {
		t.Fatalf("testenv: %v", err)
	}
	p.args = []string{"--sentinel"}
	t.Cleanup(p.Stop)
	if err := p.start(); err != nil {
		t.Fatalf("testenv: %v", err)
	}
	return p
}

// Addr returns the server's host:port.
func (p *RedisProc) Addr() string { return "127.0.0.1:" + strconv.Itoa(p.port) }

// URL returns redis://host:port/0 for the server.
func (p *RedisProc) URL() string { return "redis://" + p.Addr() + "/0" }

// PID returns the server's process id, 0 while it is stopped.
func (p *RedisProc) PID() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

// Start starts the server again after Stop (same address, no data). It
// fails the test if the server does not answer PING within 10s; starting
// a running server does nothing.
func (p *RedisProc) Start() {
	p.t.Helper()
	if err := p.start(); err != nil {
		p.t.Fatalf("testenv: %v", err)
	}
}

// Stop stops the server (SIGTERM to its PID, SIGKILL after 10s) and waits
// for it to exit. Stopping a stopped server does nothing.
func (p *RedisProc) Stop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return
	}
	cmd := p.cmd
	p.cmd = nil
	_ = cmd.Process.Signal(syscall.SIGTERM)
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		<-exited
	}
}

func (p *RedisProc) start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil {
		return nil
	}
	log, err := os.OpenFile(filepath.Join(p.dir, "redis.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer log.Close()
	var args []string
	if p.conf != "" {
		args = append(args, p.conf)
	}
	args = append(args, "--port", strconv.Itoa(p.port), "--bind", "127.0.0.1", "--dir", p.dir,
		"--daemonize", "no", "--protected-mode", "yes", "--loglevel", "warning")
	if p.conf == "" { // a data server; Sentinel refuses these
		args = append(args, "--save", "", "--appendonly", "no", "--unixsocket", "")
	}
	cmd := exec.Command(p.bin, append(args, p.args...)...)
	cmd.Dir = p.dir
	cmd.Stdout, cmd.Stderr = log, log
	// The server dies with the test binary even if cleanups never run.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting redis-server: %w", err)
	}
	p.cmd = cmd
	if err := waitRedis(p.Addr(), 10*time.Second); err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		p.cmd = nil
		b, _ := os.ReadFile(filepath.Join(p.dir, "redis.log"))
		return fmt.Errorf("redis-server on %s: %w; log:\n%s", p.Addr(), err, b)
	}
	return nil
}

// waitRedis waits until the server at addr answers PING (bounded).
func waitRedis(addr string, within time.Duration) error {
	deadline := time.Now().Add(within)
	var err error
	for time.Now().Before(deadline) {
		if err = RedisPing(addr); err == nil {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("no answer to PING after %v: %w", within, err)
}

// RedisPing sends PING to the server at addr on a connection of its own
// (bounded by 1s) and reports an error unless it answers +PONG. Tests use
// it to check a server without the client under test.
func RedisPing(addr string) error {
	_, err := RedisCommand(addr, "PING")
	return err
}

// RedisCommand sends one command to the server at addr on a connection of
// its own (bounded by 1s) and returns the first line of its reply (for
// example "+OK", ":1", "$5"). An error reply ("-ERR ...") is an error.
// It is for test set-up (FLUSHALL, SCRIPT FLUSH, CONFIG SET), independent
// of the client under test.
func RedisCommand(addr string, args ...string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	if err := c.SetDeadline(time.Now().Add(time.Second)); err != nil {
		return "", err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := c.Write([]byte(b.String())); err != nil {
		return "", err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return "", err
	}
	line = strings.TrimRight(line, "\r\n")
	if strings.HasPrefix(line, "-") {
		return line, errors.New("redis: " + line[1:])
	}
	return line, nil
}
