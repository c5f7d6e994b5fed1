package modules_test

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/asyncsip/asyncsip/internal/testenv"
)

const (
	modulePath = "github.com/asyncsip/asyncsip/modules/"
	tmPath     = "github.com/asyncsip/asyncsip/tm"
)

// kindRow is a row of the table in docs/ARCHITECTURE.md:
// | [`db`](../modules/db) | op adapter | … |
var kindRow = regexp.MustCompile("^\\| \\[`([a-z0-9]+)`\\]\\(\\.\\./modules/([a-z0-9]+)\\) \\| (op adapter|plug-in) \\|")

// TestModuleKinds keeps the table of docs/ARCHITECTURE.md true: every
// folder of modules/ is in it; no package of an op adapter depends on tm,
// directly or through another package (its siptest fake excepted: a
// package whose name ends in "test"); a plug-in's package imports tm.
func TestModuleKinds(t *testing.T) {
	kinds := readKinds(t, filepath.Join("..", "docs", "ARCHITECTURE.md"))
	if len(kinds) == 0 {
		t.Fatal("docs/ARCHITECTURE.md: no table of module kinds found")
	}
	entries, err := os.ReadDir(".")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.IsDir() && kinds[e.Name()] == "" {
			t.Errorf("modules/%s is not in the table of docs/ARCHITECTURE.md (Two kinds of module): add it as an op adapter or a plug-in", e.Name())
		}
	}
	for name := range kinds {
		if _, err := os.Stat(name); err != nil {
			t.Errorf("docs/ARCHITECTURE.md lists modules/%s, which does not exist", name)
		}
	}

	goTool, err := exec.LookPath("go")
	if err != nil {
		testenv.Need(t, "the go tool", "run the tests with go test")
	}
	out, err := exec.Command(goTool, "list", "-f", "{{.ImportPath}}|{{join .Imports \" \"}}|{{join .Deps \" \"}}", "./...").CombinedOutput()
	if err != nil {
		t.Fatalf("go list ./modules/...: %v\n%s", err, out)
	}
	importsTM := map[string]bool{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		parts := strings.Split(line, "|")
		if len(parts) != 3 || !strings.HasPrefix(parts[0], modulePath) {
			continue
		}
		pkg := strings.TrimPrefix(parts[0], modulePath) // "db", "db/sqlite", "db/dbtest"
		name, _, _ := strings.Cut(pkg, "/")
		direct := hasWord(parts[1], tmPath)
		if !strings.Contains(pkg, "/") {
			importsTM[name] = direct
		}
		if kinds[name] == "op adapter" && !strings.HasSuffix(pkg, "test") && hasWord(parts[2], tmPath) {
			t.Errorf("modules/%s is listed as an op adapter but depends on tm (imports: %s)", pkg, parts[1])
		}
	}
	for name, kind := range kinds {
		if kind == "plug-in" && !importsTM[name] {
			t.Errorf("modules/%s is listed as a plug-in but does not import tm: list it as an op adapter", name)
		}
	}
}

// readKinds returns the kind of each module in the table of path.
func readKinds(t *testing.T, path string) map[string]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	kinds := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		m := kindRow.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		if m[1] != m[2] {
			t.Errorf("docs/ARCHITECTURE.md: %q links to modules/%s", m[1], m[2])
		}
		kinds[m[1]] = m[3]
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return kinds
}

func hasWord(list, word string) bool {
	for _, w := range strings.Fields(list) {
		if w == word {
			return true
		}
	}
	return false
}
