package db_test

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/asyncsip/asyncsip/internal/testenv"
	"github.com/asyncsip/asyncsip/modules/db"
)

// startMariaDB starts a private MariaDB server (Debian package
// mariadb-server) in a temp dir on a free loopback port, without grant
// tables, and returns the DSN of a fresh database on it. It skips the test
// when the server binaries are not installed: `make test` does not install
// them, so this test runs where a developer has.
func startMariaDB(t *testing.T) string {
	t.Helper()
	server, err := exec.LookPath("mariadbd")
	if err != nil {
		server, err = exec.LookPath("/usr/sbin/mariadbd")
	}
	install, ierr := exec.LookPath("mariadb-install-db")
	if err != nil || ierr != nil {
		testenv.Need(t, "MariaDB (mariadbd, mariadb-install-db)", "apt-get install mariadb-server, or run make test")
	}
	dir, err := os.MkdirTemp("", "asyncsip-mariadb-")
	require.NoError(t, err)
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	data := filepath.Join(dir, "data")
	user := []string{}
	if os.Geteuid() == 0 {
		user = []string{"--user=root"}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, install, append([]string{"--no-defaults", "--datadir=" + data,
		"--auth-root-authentication-method=normal", "--skip-test-db"}, user...)...).CombinedOutput()
	require.NoError(t, err, "mariadb-install-db: %s", out)

	port := testenv.FreeTCPPort(t)
	cmd := exec.Command(server, append([]string{"--no-defaults", "--datadir=" + data,
		"--socket=" + filepath.Join(dir, "sock"), "--pid-file=" + filepath.Join(dir, "pid"),
		"--bind-address=127.0.0.1", "--port=" + strconv.Itoa(port), "--skip-grant-tables",
		"--skip-name-resolve", "--log-error=" + filepath.Join(dir, "error.log"),
		"--innodb-buffer-pool-size=16M", "--max-connections=100"}, user...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	require.NoError(t, cmd.Start())
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
	})

	// Wait (bounded) until it accepts connections, then create a database.
	root := fmt.Sprintf("root@tcp(127.0.0.1:%d)/?timeout=2s", port)
	sdb, err := sql.Open("mysql", root)
	require.NoError(t, err)
	defer sdb.Close()
	up := testenv.Poll(60*time.Second, func() bool {
		pctx, pcancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer pcancel()
		err = sdb.PingContext(pctx)
		return err == nil
	})
	if !up {
		log, _ := os.ReadFile(filepath.Join(dir, "error.log"))
		t.Fatalf("mariadbd did not start: %v\n%s", err, log)
	}
	_, err = sdb.Exec("CREATE DATABASE asyncsip_test")
	require.NoError(t, err)
	return fmt.Sprintf("root@tcp(127.0.0.1:%d)/asyncsip_test?timeout=2s", port)
}

// The op suite on a real MariaDB through github.com/go-sql-driver/mysql.
func TestOpsMySQL(t *testing.T) {
	dsn := startMariaDB(t)
	opSuite(t, dialect{
		name: "mysql",
		open: func(t testing.TB, opts ...db.Option) *db.Handle {
			return open(t, "mysql", dsn, opts...)
		},
		ph:       func(int) string { return "?" },
		schema:   `CREATE TABLE %s (id INT AUTO_INCREMENT PRIMARY KEY, name TEXT NOT NULL, score DOUBLE, data BLOB, note TEXT)`,
		insertID: true,
		slow:     `SELECT SLEEP(60)`,
		echo:     `SELECT CONCAT(?, 'x')`,
	})
}
