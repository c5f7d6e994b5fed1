package db_test

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/asyncsip/asyncsip/internal/testenv"
)

// Each driver lives in its own package so that a binary links only the
// drivers it imports: the core links none, each driver package only its
// own. go list -deps shows what a package links.
func TestPackagesLinkOnlyTheirDriver(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		testenv.Need(t, "the go tool", "run the tests with go test")
	}
	const (
		pgx    = "github.com/jackc/pgx/"
		mysql  = "github.com/go-sql-driver/mysql"
		sqlite = "modernc.org/sqlite"
	)
	for _, tc := range []struct {
		pkg       string
		forbidden []string
	}{
		{"github.com/asyncsip/asyncsip/modules/db", []string{pgx, mysql, sqlite}},
		{"github.com/asyncsip/asyncsip/modules/db/sqlite", []string{pgx, mysql}},
		{"github.com/asyncsip/asyncsip/modules/db/postgres", []string{mysql, sqlite}},
		{"github.com/asyncsip/asyncsip/modules/db/mysql", []string{pgx, sqlite}},
		{"github.com/asyncsip/asyncsip/modules/db/dbtest", []string{pgx, mysql, sqlite}},
	} {
		t.Run(tc.pkg[strings.LastIndex(tc.pkg, "/")+1:], func(t *testing.T) {
			t.Parallel()
			out, err := exec.Command(goTool, "list", "-deps", tc.pkg).CombinedOutput()
			if err != nil {
				t.Fatalf("go list -deps %s: %v\n%s", tc.pkg, err, out)
			}
			for _, dep := range strings.Fields(string(out)) {
				for _, f := range tc.forbidden {
					if strings.HasPrefix(dep, f) {
						t.Errorf("%s links %s", tc.pkg, dep)
					}
				}
			}
		})
	}
}
