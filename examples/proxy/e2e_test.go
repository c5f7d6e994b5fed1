package main

import (
	"bufio"
	"context"
	"database/sql"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	_ "github.com/jackc/pgx/v5/stdlib"
	_ "modernc.org/sqlite"

	"github.com/asyncsip/asyncsip/internal/testenv"
)

var proxyBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "proxy-e2e")
	if err != nil {
		panic(err)
	}
	proxyBin = filepath.Join(dir, "proxy")
	out, err := exec.Command("go", "build", "-o", proxyBin, ".").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "building the proxy: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// proxyProc is the example proxy running as a process.
type proxyProc struct {
	addr *net.UDPAddr
	cmd  *exec.Cmd
	done chan struct{}
	out  *strings.Builder
}

func cli(t *testing.T, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, proxyBin, args...).CombinedOutput()
	require.NoError(t, err, "proxy %v: %s", args, out)
	return string(out)
}

// startProxy runs the proxy on a free 127.0.0.1 UDP port with flags and
// waits for its banner.
func startProxy(t *testing.T, flags ...string) *proxyProc {
	t.Helper()
	port := testenv.FreeUDPPort(t)
	listen := fmt.Sprintf("udp:127.0.0.1:%d", port)
	p := startProxyOn(t, []string{listen}, flags...)
	p.addr = &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port}
	return p
}

// startProxyOn runs the proxy with its listeners and flags and waits for its
// banner, which must name every listener.
func startProxyOn(t *testing.T, listen []string, flags ...string) *proxyProc {
	t.Helper()
	args := []string{"-workers", "2", "-log", "warn"}
	for _, l := range listen {
		args = append(args, "-listen", l)
	}
	args = append(args, flags...)
	cmd := exec.Command(proxyBin, args...)
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	var errs strings.Builder
	cmd.Stderr = &errs
	require.NoError(t, cmd.Start())
	p := &proxyProc{cmd: cmd, done: make(chan struct{}), out: &errs}
	banner := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			select {
			case banner <- sc.Text():
			default:
			}
		}
	}()
	go func() { _ = cmd.Wait(); close(p.done) }()
	select {
	case line := <-banner:
		for _, l := range listen {
			require.Contains(t, line, l, "banner names each listener")
		}
	case <-p.done:
		t.Fatalf("proxy exited at start: %s", errs.String())
	case <-time.After(15 * time.Second):
		t.Fatal("no banner from the proxy")
	}
	t.Cleanup(func() { p.stop(t) })
	return p
}

// stop sends SIGINT and checks the proxy drains and exits by itself.
func (p *proxyProc) stop(t *testing.T) {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-p.done:
		assert.Equal(t, 0, p.cmd.ProcessState.ExitCode(), "proxy exit: %s", p.out.String())
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
		t.Error("proxy did not stop within 10 s of SIGINT")
	}
}

func TestRegisterAndCall(t *testing.T) {
	data := t.TempDir()
	cli(t, "-data", data, "user", "add", "alice", "alicepw")
	cli(t, "-data", data, "user", "add", "bob", "bobpw")
	p := startProxy(t, "-data", data)

	alice := newUA(t, "alice", p.addr)
	bob := newUA(t, "bob", p.addr)

	// A wrong password is refused and stores nothing.
	r := bob.register("127.0.0.1", "wrong", 600)
	assert.Equal(t, 403, r.StatusCode)
	assert.NotContains(t, cli(t, "-data", data, "location", "list"), "bob")

	r = alice.register("127.0.0.1", "alicepw", 600)
	require.Equal(t, 200, r.StatusCode, r.String())
	r = bob.register("127.0.0.1", "bobpw", 600)
	require.Equal(t, 200, r.StatusCode, r.String())
	require.Len(t, r.GetHeaders("Contact"), 1)

	// The bindings are in the database.
	db, err := sql.Open("sqlite", filepath.Join(data, "proxy.db"))
	require.NoError(t, err)
	defer db.Close()
	var n int
	require.NoError(t, db.QueryRow(`SELECT count(*) FROM location WHERE username IN ('alice','bob')`).Scan(&n))
	assert.Equal(t, 2, n)

	// Alice calls Bob through the proxy, answering its challenge.
	alice.call("sip:bob@127.0.0.1", "call-ab", "alicepw")
	inv, from := bob.recvRequest()
	require.Equal(t, "INVITE", string(inv.Method))
	assert.Equal(t, bob.contact(), inv.Recipient.String())
	require.NotNil(t, inv.RecordRoute(), "the proxy record-routes")
	bob.answer(inv, from, 180, "Ringing")
	assert.Equal(t, 180, alice.recvResponse().StatusCode)
	bob.answer(inv, from, 200, "OK")
	ok := alice.recvResponse()
	require.Equal(t, 200, ok.StatusCode)

	// Un-register: Expires 0 removes Bob's binding, and a call to him then
	// finds him offline.
	r = bob.register("127.0.0.1", "bobpw", 0)
	require.Equal(t, 200, r.StatusCode)
	assert.Empty(t, r.GetHeaders("Contact"))
	alice.call("sip:bob@127.0.0.1", "call-ab2", "alicepw")
	assert.Equal(t, 480, alice.recvResponse().StatusCode)
}

func TestGatewayFailover(t *testing.T) {
	data := t.TempDir()
	cli(t, "-data", data, "user", "add", "carol", "carolpw")
	p0 := startProxy(t, "-data", data) // the CLI works on the same file
	gw1 := newUA(t, "gw1", p0.addr)
	gw2 := newUA(t, "gw2", p0.addr)
	cli(t, "-data", data, "gw", "add", "1", fmt.Sprintf("127.0.0.1:%d", gw1.port()), "--prefix", "+1", "--priority", "1")
	cli(t, "-data", data, "gw", "add", "2", fmt.Sprintf("127.0.0.1:%d", gw2.port()), "--prefix", "+1", "--priority", "2")
	cli(t, "-data", data, "gw", "add", "3", "127.0.0.1:9", "--prefix", "+44")

	caller := newUA(t, "carol", p0.addr)
	caller.call("sip:+15551234@127.0.0.1", "call-lcr", "carolpw")
	inv, from := gw1.recvRequest()
	assert.Equal(t, "+15551234", inv.Recipient.User)
	gw1.answer(inv, from, 503, "Service Unavailable")
	ack, _ := gw1.recvRequest()
	assert.Equal(t, "ACK", string(ack.Method), "hop-by-hop ACK for the 503")
	inv2, from2 := gw2.recvRequest()
	require.Equal(t, "INVITE", string(inv2.Method), "failover to the second gateway")
	gw2.answer(inv2, from2, 200, "OK")
	assert.Equal(t, 200, caller.recvResponse().StatusCode)

	caller.call("sip:+3312345@127.0.0.1", "call-nogw", "carolpw")
	assert.Equal(t, 404, caller.recvResponse().StatusCode)
}

// Two instances sharing one PostgreSQL serve the same users: register
// through one, call through the other.
func TestTwoInstancesSharePostgres(t *testing.T) {
	dsn := testenv.PostgresDSN(t)
	schema := fmt.Sprintf("proxy_e2e_%d", time.Now().UnixNano())
	admin, err := sql.Open("pgx", dsn)
	require.NoError(t, err)
	defer admin.Close()
	_, err = admin.Exec(`CREATE SCHEMA ` + schema)
	require.NoError(t, err)
	t.Cleanup(func() { _, _ = admin.Exec(`DROP SCHEMA ` + schema + ` CASCADE`) })
	sep := "?"
	if strings.Contains(dsn, "?") {
		sep = "&"
	}
	sdsn := dsn + sep + "search_path=" + schema

	cli(t, "-db", sdsn, "user", "add", "alice", "pw1")
	cli(t, "-db", sdsn, "user", "add", "bob", "pw2")
	// Instances share the nonce secret and the route key; each has its
	// own data dir (nothing else is kept there with -db).
	key := filepath.Join(t.TempDir(), "route.key")
	a := startProxy(t, "-db", sdsn, "-secret", "shared-secret-0123456789", "-route-key", key, "-data", t.TempDir())
	b := startProxy(t, "-db", sdsn, "-secret", "shared-secret-0123456789", "-route-key", key, "-data", t.TempDir())

	bob := newUA(t, "bob", a.addr)
	require.Equal(t, 200, bob.register("127.0.0.1", "pw2", 600).StatusCode)
	alice := newUA(t, "alice", b.addr)
	alice.call("sip:bob@127.0.0.1", "call-2inst", "pw1")
	inv, from := bob.recvRequest()
	require.Equal(t, "INVITE", string(inv.Method))
	bob.answer(inv, from, 200, "OK")
	assert.Equal(t, 200, alice.recvResponse().StatusCode)
}
