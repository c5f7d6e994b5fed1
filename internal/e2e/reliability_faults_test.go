package e2e

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/asyncsip/asyncsip"
	"github.com/asyncsip/asyncsip/async"
	"github.com/asyncsip/asyncsip/internal/testenv"
	"github.com/asyncsip/asyncsip/modules/db"
	_ "github.com/asyncsip/asyncsip/modules/db/postgres"
	sexec "github.com/asyncsip/asyncsip/modules/exec"
	"github.com/asyncsip/asyncsip/modules/rest"
	"github.com/asyncsip/asyncsip/tm"
)

// Faults: a backend of the routes fails under a steady load (50 requests a
// second through the real server). Every request gets exactly one final
// response within the bound of its await — 200 while the backend works,
// 503/504 while it does not — the proxy keeps answering requests that need
// no backend, and it serves again once the backend is back.

const (
	faultRate  = 20 * time.Millisecond // 50 requests a second
	faultBound = 500 * time.Millisecond
	faultSlack = 2500 * time.Millisecond // scheduling on a shared machine, not a performance bound
)

// backendRoute answers "ping" at once and awaits op() for the others,
// bounded by faultBound.
func backendRoute[T any](op func() async.Op[T], ok func(T) bool) tm.Routes {
	return backendRouteWithin(func(*tm.Context) async.Op[T] { return op() }, ok,
		func(*tm.Context) time.Duration { return faultBound })
}

// backendRouteWithin is backendRoute with the op and the await's bound
// chosen per request.
func backendRouteWithin[T any](op func(*tm.Context) async.Op[T], ok func(T) bool, bound func(*tm.Context) time.Duration) tm.Routes {
	return tm.Routes{Request: func(c *tm.Context) {
		if c.Recipient().User == "ping" {
			_ = c.Reply(200, "OK")
			return
		}
		async.Await(c, op(c), func(v T, err error) {
			switch {
			case errors.Is(err, async.ErrTimeout):
				_ = c.Reply(504, "Backend Timeout")
			case err != nil || !ok(v):
				_ = c.Reply(503, "Backend Unavailable")
			default:
				_ = c.Reply(200, "OK")
			}
		}, async.Timeout(bound(c)))
	}}
}

// faultLoad sends a steady load in phases and checks what came back.
type faultLoad struct {
	t     *testing.T
	p     *proxy
	cl    *relClient
	sent  map[string]time.Time
	phase []string
}

func newFaultLoad(t *testing.T, p *proxy) *faultLoad {
	return &faultLoad{t: t, p: p, cl: newRelClient(t), sent: map[string]time.Time{}}
}

// run sends n backend requests (and one ping every 5) for phase name and
// waits for their final responses.
func (f *faultLoad) run(name string, n int) {
	f.phase = append(f.phase, name)
	to, err := net.ResolveUDPAddr("udp4", f.p.addr)
	require.NoError(f.t, err)
	for i := 0; i < n; i++ {
		id := fmt.Sprintf("%s-%03d", name, i)
		f.sent[id] = time.Now()
		f.cl.send(f.t, to, "MESSAGE", "backend", id)
		if i%5 == 0 {
			pid := "ping-" + id
			f.sent[pid] = time.Now()
			f.cl.send(f.t, to, "OPTIONS", "ping", pid)
		}
		time.Sleep(faultRate)
	}
	// The phase ends when every request sent so far has its final
	// response: the test changes the backend next, and a request the proxy
	// had not finished by then would meet the next phase's backend.
	f.cl.waitFinals(len(f.sent), 2*faultBound+faultSlack+5*time.Second)
}

// check waits for every final response and returns the codes of each
// phase in order of sending ("200 200 503 ...").
func (f *faultLoad) check() map[string][]int {
	t := f.t
	got := f.cl.waitFinals(len(f.sent), 2*faultBound+faultSlack+5*time.Second)
	require.Equal(t, len(f.sent), got, "every request got a final response")
	fins := f.cl.finals()
	codes := map[string][]int{}
	var ids []string
	for id := range f.sent {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	worst := map[string]time.Duration{}
	for _, id := range ids {
		fs := fins[id]
		require.Len(t, fs, 1, "%s: exactly one final response", id)
		lat := fs[0].at.Sub(f.sent[id])
		if strings.HasPrefix(id, "ping-") {
			assert.Equal(t, 200, fs[0].code, "%s: the proxy keeps serving", id)
			worst["ping"] = max(worst["ping"], lat)
			continue
		}
		phase := id[:strings.LastIndexByte(id, '-')]
		codes[phase] = append(codes[phase], fs[0].code)
		worst[phase] = max(worst[phase], lat)
		assert.LessOrEqual(t, lat, faultBound+faultSlack, "%s: final response within its bound", id)
	}
	for _, ph := range f.phase {
		t.Logf("phase %-10s %s (slowest final %v)", ph, summarize(codes[ph]), worst[ph].Round(time.Millisecond))
	}
	t.Logf("pings: %d, all 200 (slowest %v)", len(ids)-sumLen(codes), worst["ping"].Round(time.Millisecond))
	require.Eventually(t, func() bool {
		st := f.p.srv.Stats()
		return st.InProgress == 0 && st.Suspended == 0
	}, 5*time.Second, 20*time.Millisecond, "nothing left in progress")
	return codes
}

func sumLen(m map[string][]int) int {
	n := 0
	for _, v := range m {
		n += len(v)
	}
	return n
}

// summarize turns codes into "50×200" or "3×503, 47×200".
func summarize(codes []int) string {
	var parts []string
	for i := 0; i < len(codes); {
		j := i
		for j < len(codes) && codes[j] == codes[i] {
			j++
		}
		parts = append(parts, fmt.Sprintf("%d×%d", j-i, codes[i]))
		i = j
	}
	return strings.Join(parts, ", ")
}

// requireAll checks that every code of a phase is one of want.
func requireAll(t *testing.T, phase string, codes []int, want ...int) {
	t.Helper()
	for i, c := range codes {
		require.Contains(t, want, c, "%s request %d: %s", phase, i, summarize(codes))
	}
}

// requireRecovered checks that a phase ends with at least n 200s in a row.
func requireRecovered(t *testing.T, phase string, codes []int, n int) {
	t.Helper()
	require.GreaterOrEqual(t, len(codes), n)
	for _, c := range codes[len(codes)-n:] {
		require.Equal(t, 200, c, "%s did not recover: %s", phase, summarize(codes))
	}
}

// PostgreSQL stopped and restarted under load: a private cluster started
// by this test on its own port (.ci/pg.sh), stopped with pg_ctl mid-load.
func TestReliabilityFaultPostgres(t *testing.T) {
	pg := startPrivatePostgres(t)
	h, err := db.Open(db.DriverPostgres, pg.dsn, db.Timeout(faultBound))
	require.NoError(t, err)
	defer h.Close() // before the proxy's descriptor check
	_, err = h.ExecContext(context.Background(), `CREATE TABLE routes (name text PRIMARY KEY, target text)`)
	require.NoError(t, err)
	_, err = h.ExecContext(context.Background(), `INSERT INTO routes VALUES ('bob', 'sip:bob@127.0.0.1')`)
	require.NoError(t, err)

	p := startProxy(t, asyncsip.Config{}, backendRoute(func() async.Op[db.Row] {
		return h.QueryRow(`SELECT target FROM routes WHERE name = $1`, "bob")
	}, func(r db.Row) bool { return r.String(0) != "" }))
	load := newFaultLoad(t, p)
	load.run("up", 50)
	pg.ctl(t, "-m", "fast", "-w", "-t", "30", "stop")
	load.run("stopped", 50)
	pg.ctl(t, "-l", filepath.Join(pg.dir, "server.log"), "-w", "-t", "30", "start")
	load.run("restarted", 100)
	codes := load.check()
	requireAll(t, "up", codes["up"], 200)
	requireAll(t, "stopped", codes["stopped"], 503, 504)
	requireAll(t, "restarted", codes["restarted"], 200, 503, 504)
	requireRecovered(t, "restarted", codes["restarted"], 50)
}

// privatePostgres is a cluster of .ci/pg.sh on a port of this test's own.
type privatePostgres struct {
	port        int
	dsn         string
	dir, bindir string
}

func startPrivatePostgres(t *testing.T) *privatePostgres {
	t.Helper()
	if _, err := exec.LookPath("initdb"); err != nil {
		if matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb"); len(matches) == 0 {
			testenv.Need(t, "PostgreSQL server binaries (initdb, pg_ctl)", "apt-get install postgresql, or make test")
		}
	}
	port := testenv.FreeTCPPort(t)
	env := append(os.Environ(), "ASYNCSIP_PG_PORT="+strconv.Itoa(port))
	pgsh := func(arg string) ([]byte, error) {
		cmd := exec.Command("bash", filepath.Join("..", "..", ".ci", "pg.sh"), arg)
		cmd.Env = env
		return cmd.CombinedOutput()
	}
	out, err := pgsh("start")
	require.NoError(t, err, "pg.sh start: %s", out)
	t.Cleanup(func() {
		if out, err := pgsh("stop"); err != nil {
			t.Errorf("pg.sh stop: %v: %s", err, out)
		}
	})
	state, err := os.ReadFile(filepath.Join("..", "..", ".ci", ".state", fmt.Sprintf("pg-%d.state", port)))
	require.NoError(t, err)
	pg := &privatePostgres{port: port,
		dsn: fmt.Sprintf("postgres://postgres@127.0.0.1:%d/asyncsip_test?sslmode=disable", port)}
	for _, line := range strings.Split(string(state), "\n") {
		if v, ok := strings.CutPrefix(line, "dir="); ok {
			pg.dir = v
		}
		if v, ok := strings.CutPrefix(line, "bindir="); ok {
			pg.bindir = v
		}
	}
	require.NotEmpty(t, pg.dir)
	return pg
}

// ctl runs pg_ctl on the cluster, as its owner.
func (pg *privatePostgres) ctl(t *testing.T, args ...string) {
	t.Helper()
	argv := append([]string{filepath.Join(pg.bindir, "pg_ctl"), "-D", filepath.Join(pg.dir, "data")}, args...)
	if os.Geteuid() == 0 {
		argv = append([]string{"runuser", "-u", "postgres", "--"}, argv...)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = pg.dir
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "pg_ctl %v: %s", args, out)
}

// A REST backend refusing connections, then answering, then slow, then
// hanging, then answering again.
func TestReliabilityFaultREST(t *testing.T) {
	port := testenv.FreeTCPPort(t)
	client, err := rest.NewClient(rest.Config{BaseURL: fmt.Sprintf("http://127.0.0.1:%d/", port),
		ConnectTimeout: 200 * time.Millisecond, Timeout: 300 * time.Millisecond})
	require.NoError(t, err)
	defer client.Close(context.Background()) // before the proxy's descriptor check

	var mode atomic.Value // "ok", "slow", "hang"
	mode.Store("ok")
	quit := make(chan struct{})
	p := startProxy(t, asyncsip.Config{}, backendRoute(func() async.Op[rest.Result] { return client.Get("route") },
		func(r rest.Result) bool { return r.Status == http.StatusOK }))
	load := newFaultLoad(t, p)

	load.run("refused", 25) // nothing listens yet
	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	require.NoError(t, err)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch mode.Load() {
		case "slow":
			select {
			case <-time.After(time.Second):
			case <-r.Context().Done():
			case <-quit:
			}
		case "hang":
			select {
			case <-r.Context().Done():
			case <-quit:
			}
			return
		}
		_, _ = w.Write([]byte("sip:bob@127.0.0.1"))
	}))
	_ = srv.Listener.Close() // the one NewUnstartedServer opened: ours is on the reserved port
	srv.Listener = ln
	srv.Start()
	t.Cleanup(func() { close(quit); srv.Close() })
	load.run("up", 25)
	mode.Store("slow")
	load.run("slow", 25)
	mode.Store("hang")
	load.run("hanging", 25)
	mode.Store("ok")
	load.run("back", 50)
	codes := load.check()
	requireAll(t, "refused", codes["refused"], 503)
	requireAll(t, "up", codes["up"], 200)
	requireAll(t, "slow", codes["slow"], 503, 504)
	requireAll(t, "hanging", codes["hanging"], 503, 504)
	requireRecovered(t, "back", codes["back"], 40)
}

// An external command that hangs (killed at its timeout), then one that
// answers.
func TestReliabilityFaultExec(t *testing.T) {
	runner := sexec.NewRunner(sexec.Config{MaxCommands: 64})
	// A request of the hanging phase (its Call-ID says which: the proxy may
	// run a route after the test moved on, fork and exec run on the loop)
	// runs a script that hangs: it is killed after 300 ms and its await
	// gives up at faultBound. Once the script is back, a fork and exec on a
	// loaded machine may take longer than that, so the recovered phase is
	// bounded with slack (it checks recovery, not speed).
	hanging := func(c *tm.Context) bool { return strings.HasPrefix(c.CallID(), "hanging-") }
	bound := func(c *tm.Context) time.Duration {
		if hanging(c) {
			return faultBound
		}
		return faultSlack
	}
	p := startProxy(t, asyncsip.Config{}, backendRouteWithin(func(c *tm.Context) async.Op[sexec.Result] {
		if hanging(c) {
			cmd := runner.Command("/bin/sh", "-c", "sleep 30")
			cmd.Timeout = 300 * time.Millisecond
			return cmd
		}
		cmd := runner.Command("/bin/sh", "-c", "echo sip:bob@127.0.0.1")
		cmd.Timeout = faultSlack
		return cmd
	}, func(r sexec.Result) bool { return len(r.Lines()) == 1 }, bound))
	load := newFaultLoad(t, p)
	load.run("hanging", 50)
	load.run("back", 50)
	codes := load.check()
	requireAll(t, "hanging", codes["hanging"], 503, 504)
	requireRecovered(t, "back", codes["back"], 45)
	st := runner.Stats()
	t.Logf("exec: %d started, %d reaped, %d killed on timeout", st.Started, st.Finished, st.Kills(sexec.KillTimeout))
	require.Eventually(t, func() bool { return runner.Stats().InFlight == 0 }, 5*time.Second, 20*time.Millisecond, "every hung command was killed and reaped")
}
