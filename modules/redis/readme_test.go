package redis_test

import (
	"bufio"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// The README's go test commands name this package and select tests or
// benchmarks that exist here (the measurements themselves only log; they
// run with ASYNCSIP_MEASURE=1).
func TestReadmeCommands(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	var funcs []string
	files, _ := filepath.Glob("*_test.go")
	decl := regexp.MustCompile(`(?m)^func ((?:Test|Benchmark)\w+)\(`)
	for _, f := range files {
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range decl.FindAllStringSubmatch(string(src), -1) {
			funcs = append(funcs, m[1])
		}
	}
	flag := regexp.MustCompile(`-(run|bench) ('[^']*'|\S+)`)
	n := 0
	sc := bufio.NewScanner(strings.NewReader(string(b)))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		i := strings.Index(line, "go test ")
		if i < 0 || strings.HasPrefix(line, "|") {
			continue
		}
		cmd := strings.Trim(line[i:], "`")
		if !strings.HasSuffix(cmd, " ./modules/redis") {
			t.Errorf("README command %q does not name ./modules/redis", cmd)
		}
		var selects []*regexp.Regexp
		for _, m := range flag.FindAllStringSubmatch(cmd, -1) {
			re, err := regexp.Compile(strings.Trim(m[2], "'"))
			if err != nil {
				t.Errorf("README command %q: %v", cmd, err)
				continue
			}
			if m[1] == "run" && m[2] == "'^$'" {
				continue // no tests: only benchmarks
			}
			selects = append(selects, re)
		}
		for _, re := range selects {
			found := false
			for _, f := range funcs {
				found = found || re.MatchString(f)
			}
			if !found {
				t.Errorf("README command %q selects no test or benchmark of this package (%s)", cmd, re)
			}
		}
		n++
	}
	if n < 2 {
		t.Fatalf("found %d go test commands in README.md", n)
	}
}
