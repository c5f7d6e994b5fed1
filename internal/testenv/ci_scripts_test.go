package testenv

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// ciDir is the repository's .ci directory, relative to this package.
const ciDir = "../../.ci"

// The CI scripts stop only what they started themselves, by PID or data
// directory: nothing by process or service name, since on a developer's
// machine that would stop their own Kamailio, MariaDB or PostgreSQL.
func TestCIScriptsStopNothingByName(t *testing.T) {
	byName := regexp.MustCompile(`\b(pkill|killall)\b|\bservice\s+\S+\s+stop\b|\bsystemctl\s+stop\b|\bpg_ctlcluster\b`)
	entries, err := os.ReadDir(ciDir)
	require.NoError(t, err)
	checked := 0
	for _, e := range entries {
		if e.IsDir() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(ciDir, e.Name()))
		require.NoError(t, err)
		for i, line := range strings.Split(string(b), "\n") {
			code, _, _ := strings.Cut(line, "#")
			require.False(t, byName.MatchString(code), "%s:%d stops something by name: %s", e.Name(), i+1, line)
		}
		checked++
	}
	require.GreaterOrEqual(t, checked, 3)
}

// pgStop runs `.ci/pg.sh stop` for port with its state kept in stateDir.
func pgStop(t *testing.T, stateDir, port string) string {
	t.Helper()
	cmd := exec.Command("bash", filepath.Join(ciDir, "pg.sh"), "stop")
	cmd.Env = append(os.Environ(), "ASYNCSIP_PG_PORT="+port, "ASYNCSIP_PG_STATE_DIR="+stateDir)
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)
	return string(out)
}

// A state file that does not describe a cluster pg.sh created for it — a
// directory it would not have created, or one of its directories that
// belongs to another state file (another checkout) — makes `stop` touch
// nothing: no pg_ctl, no rm.
func TestPGStopLeavesForeignClustersAlone(t *testing.T) {
	cases := map[string]struct{ dir, marker string }{
		"foreign dir":       {"someones-pg", ""},
		"no marker":         {"asyncsip-pg-1.abc", ""},
		"other state's dir": {"asyncsip-pg-2.abc", "/elsewhere/.ci/.state/pg-55999.state"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			stateDir, root := t.TempDir(), t.TempDir()
			dir := filepath.Join(root, tc.dir)
			require.NoError(t, os.MkdirAll(filepath.Join(dir, "data"), 0o700))
			if tc.marker != "" {
				require.NoError(t, os.WriteFile(filepath.Join(dir, ".asyncsip-pg"), []byte(tc.marker+"\n"), 0o600))
			}
			state := filepath.Join(stateDir, "pg-55999.state")
			require.NoError(t, os.WriteFile(state,
				[]byte("dir="+dir+"\nbindir=/nonexistent\nport=55999\npid=4242\n"), 0o600))
			out := pgStop(t, stateDir, "55999")
			require.Contains(t, out, "not stopping anything")
			require.DirExists(t, dir, "a directory pg.sh did not create for this state is not removed")
			require.NoFileExists(t, state, "the stale state file is dropped")
		})
	}
}

// Without a state file there is nothing of ours to stop, and pg.sh keeps
// no state in the shared /tmp (another checkout's cluster would be stopped).
func TestPGStateIsPerCheckout(t *testing.T) {
	require.Empty(t, pgStop(t, t.TempDir(), "55998"))
	b, err := os.ReadFile(filepath.Join(ciDir, "pg.sh"))
	require.NoError(t, err)
	require.NotContains(t, string(b), `STATE="/tmp`)
	require.Contains(t, string(b), `$ROOT/.ci/.state`)
}
