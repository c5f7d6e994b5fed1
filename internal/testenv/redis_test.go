package testenv

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// StartRedis gives a private server that the test can stop and start again
// on the same address; it is stopped by PID at cleanup.
func TestStartRedisStopStart(t *testing.T) {
	var pids []int
	t.Run("server", func(t *testing.T) {
		p := StartRedis(t)
		require.NoError(t, RedisPing(p.Addr()))
		line, err := RedisCommand(p.Addr(), "SET", "k", "v")
		require.NoError(t, err)
		require.Equal(t, "+OK", line)
		_, err = RedisCommand(p.Addr(), "NOSUCHCOMMAND")
		require.ErrorContains(t, err, "ERR unknown command")
		pids = append(pids, p.PID())

		p.Stop()
		require.Zero(t, p.PID())
		require.Error(t, RedisPing(p.Addr()), "stopped server still answers")
		p.Stop() // stopping twice is harmless

		p.Start()
		require.NoError(t, RedisPing(p.Addr()))
		line, err = RedisCommand(p.Addr(), "EXISTS", "k")
		require.NoError(t, err)
		require.Equal(t, ":0", line, "a restarted server starts empty")
		pids = append(pids, p.PID())
		require.NotEqual(t, pids[0], pids[1])
		require.Equal(t, "redis://"+p.Addr()+"/0", p.URL())
	})
	for _, pid := range pids { // the cleanup stopped it by PID
		_, err := os.Stat("/proc/" + strconv.Itoa(pid))
		require.True(t, os.IsNotExist(err), "redis-server %d still running after the test", pid)
	}
}

// redisSh runs .ci/redis.sh with its state in stateDir on port ("": the
// script picks one).
func redisSh(t *testing.T, stateDir, port string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command("bash", append([]string{filepath.Join(ciDir, "redis.sh")}, args...)...)
	cmd.Env = append(os.Environ(), "ASYNCSIP_REDIS_PORT="+port, "ASYNCSIP_REDIS_STATE_DIR="+stateDir)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// .ci/redis.sh starts a private server that answers PING, prints its
// address, and stops it (by its recorded PID) and removes its directory.
func TestRedisShStartEnvStop(t *testing.T) {
	RedisServer(t)
	stateDir := t.TempDir()
	port := strconv.Itoa(StaticPorts(t, 1)[0])
	out, err := redisSh(t, stateDir, port, "start")
	require.NoError(t, err, out)
	t.Cleanup(func() { _, _ = redisSh(t, stateDir, port, "stop") })
	out, err = redisSh(t, stateDir, port, "env")
	require.NoError(t, err, out)
	addr := "127.0.0.1:" + port
	require.Equal(t, RedisAddrEnv+"="+addr+"\n", out)
	require.NoError(t, RedisPing(addr))

	state, err := os.ReadFile(filepath.Join(stateDir, "redis-"+port+".state"))
	require.NoError(t, err)
	var dir string
	var pid int
	for _, l := range strings.Split(string(state), "\n") {
		if v, ok := strings.CutPrefix(l, "dir="); ok {
			dir = v
		}
		if v, ok := strings.CutPrefix(l, "pid="); ok {
			pid, _ = strconv.Atoi(v)
		}
	}
	require.DirExists(t, dir)
	require.NotZero(t, pid)

	out, err = redisSh(t, stateDir, port, "stop")
	require.NoError(t, err, out)
	require.Error(t, RedisPing(addr), "server still answers after stop")
	require.NoDirExists(t, dir)
	_, err = os.Stat("/proc/" + strconv.Itoa(pid))
	require.True(t, os.IsNotExist(err), "redis-server %d still running", pid)
	out, err = redisSh(t, stateDir, port, "env")
	require.Error(t, err, "env without a running server: %s", out)
}

// A state file that does not describe a server redis.sh created for it
// makes `stop` signal nothing and remove nothing; a recorded PID that is
// not a redis-server in the recorded dir is never signalled.
func TestRedisShStopLeavesForeignServersAlone(t *testing.T) {
	sleeper := exec.Command("sleep", "30")
	require.NoError(t, sleeper.Start())
	t.Cleanup(func() { _ = sleeper.Process.Kill(); _ = sleeper.Wait() })
	pid := strconv.Itoa(sleeper.Process.Pid)

	cases := map[string]struct{ dir, marker string }{
		"foreign dir":        {"someones-redis", ""},
		"no marker":          {"asyncsip-redis-1.abc", ""},
		"other state's dir":  {"asyncsip-redis-2.abc", "/elsewhere/.ci/.state/redis-56999.state"},
		"pid not redis here": {"asyncsip-redis-3.abc", "SELF"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			stateDir, root := t.TempDir(), t.TempDir()
			dir := filepath.Join(root, tc.dir)
			require.NoError(t, os.MkdirAll(dir, 0o700))
			state := filepath.Join(stateDir, "redis-56999.state")
			marker := tc.marker
			if marker == "SELF" {
				marker = state
			}
			if marker != "" {
				require.NoError(t, os.WriteFile(filepath.Join(dir, ".asyncsip-redis"), []byte(marker+"\n"), 0o600))
			}
			require.NoError(t, os.WriteFile(state, []byte("dir="+dir+"\nport=56999\npid="+pid+"\n"), 0o600))
			out, err := redisSh(t, stateDir, "56999", "stop")
			require.NoError(t, err, out)
			require.NoFileExists(t, state, "the state file is dropped")
			_, err = os.Stat("/proc/" + pid)
			require.NoError(t, err, "a process that is not our redis-server was signalled")
			if marker != state {
				require.Contains(t, out, "not stopping anything")
				require.DirExists(t, dir, "a directory redis.sh did not create for this state is not removed")
			}
		})
	}
}

// Without ASYNCSIP_REDIS_PORT the script takes the first free port from
// 56379 up (another checkout's server may hold one) and records it: a
// second checkout's start while the first runs gets another port.
func TestRedisShPicksAFreePort(t *testing.T) {
	RedisServer(t)
	first, second := t.TempDir(), t.TempDir()
	addr := func(stateDir string) string {
		out, err := redisSh(t, stateDir, "", "env")
		require.NoError(t, err, out)
		return strings.TrimSpace(strings.TrimPrefix(out, RedisAddrEnv+"="))
	}
	out, err := redisSh(t, first, "", "start")
	require.NoError(t, err, out)
	t.Cleanup(func() { _, _ = redisSh(t, first, "", "stop") })
	out, err = redisSh(t, second, "", "start")
	require.NoError(t, err, out)
	t.Cleanup(func() { _, _ = redisSh(t, second, "", "stop") })
	a, b := addr(first), addr(second)
	require.NotEqual(t, a, b)
	require.NoError(t, RedisPing(a))
	require.NoError(t, RedisPing(b))
	for _, d := range []string{first, second} {
		out, err := redisSh(t, d, "", "stop")
		require.NoError(t, err, out)
	}
	require.Error(t, RedisPing(a))
	require.Error(t, RedisPing(b))
}

// A port that looks free (nothing accepts connections on it) but that the
// server cannot bind — another process bound it between the script's check
// and redis-server's bind — makes .ci/redis.sh pick the next one instead of
// failing: the port the script would pick first is held, bound and not
// listening, while it starts.
func TestRedisShRetriesAPortTakenBeforeBind(t *testing.T) {
	RedisServer(t)
	var held int
	var fd int
	for p := 56379; p < 56479; p++ {
		if c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(p), time.Second); err == nil {
			c.Close()
			continue // busy: the script skips it too
		}
		s, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
		require.NoError(t, err)
		if syscall.Bind(s, &syscall.SockaddrInet4{Port: p, Addr: [4]byte{127, 0, 0, 1}}) != nil {
			syscall.Close(s)
			continue
		}
		held, fd = p, s
		break
	}
	require.NotZero(t, held, "no port to hold in 56379..56478")
	t.Cleanup(func() { syscall.Close(fd) })
	stateDir := t.TempDir()
	out, err := redisSh(t, stateDir, "", "start")
	require.NoError(t, err, out)
	t.Cleanup(func() { _, _ = redisSh(t, stateDir, "", "stop") })
	out, err = redisSh(t, stateDir, "", "env")
	require.NoError(t, err, out)
	addr := strings.TrimSpace(strings.TrimPrefix(out, RedisAddrEnv+"="))
	require.NotEqual(t, "127.0.0.1:"+strconv.Itoa(held), addr)
	require.NoError(t, RedisPing(addr))
	out, err = redisSh(t, stateDir, "", "stop")
	require.NoError(t, err, out)
	require.Error(t, RedisPing(addr))
}
