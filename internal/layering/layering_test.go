package layering

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// goList runs `go list` with args from the module root.
func goList(t *testing.T, args ...string) []byte {
	t.Helper()
	gotool := os.Getenv("GO")
	if gotool == "" {
		gotool = "go"
	}
	cmd := exec.Command(gotool, append([]string{"list"}, args...)...)
	cmd.Dir = "../.."
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	require.NoError(t, err, "go list %v: %s", args, stderr.String())
	return out
}

// Every package of the module imports only its own layer and those below.
func TestImportsPointDown(t *testing.T) {
	dec := json.NewDecoder(bytes.NewReader(goList(t, "-json=ImportPath,Imports", "./...")))
	var pkgs []Package
	for {
		var p Package
		err := dec.Decode(&p)
		if errors.Is(err, io.EOF) {
			break
		}
		require.NoError(t, err)
		pkgs = append(pkgs, p)
	}
	require.Greater(t, len(pkgs), 20, "go list found the module's packages")
	if bad := Check(Layers, TestHelpers, pkgs); len(bad) > 0 {
		t.Errorf("imports that go up the stack (%s):\n  %s", stack(), strings.Join(bad, "\n  "))
	}
}

func stack() string {
	var names []string
	for _, l := range Layers {
		names = append(names, l.Name)
	}
	return strings.Join(names, " ← ")
}

// Importing the facade links no module: metrics (Prometheus) are opt-in
// from modules/metrics. A program built only on the facade, like
// examples/stateless, links neither Prometheus nor a database driver.
func TestFacadeLinksNoModule(t *testing.T) {
	for _, pkg := range []string{".", "./examples/stateless"} {
		deps := strings.Fields(string(goList(t, "-deps", pkg)))
		require.NotEmpty(t, deps)
		for _, d := range deps {
			assert.False(t, strings.HasPrefix(d, Module+"/modules/"), "%s links %s", pkg, d)
			for _, heavy := range []string{"prometheus", "jackc/pgx", "go-sql-driver/mysql"} {
				assert.NotContains(t, d, heavy, "%s links %s", pkg, d)
			}
		}
	}
}

// The rule itself: what it must refuse, it refuses, naming the import.
func TestCheckRefusesUpwardImports(t *testing.T) {
	m := func(rel string) string {
		if rel == "" {
			return Module
		}
		return Module + "/" + rel
	}
	cases := map[string]struct {
		pkgs []Package
		want []string
	}{
		"reactor imports tm": {
			[]Package{{m("reactor"), []string{m("tm"), "net/netip"}}},
			[]string{m("reactor") + " (reactor) imports " + m("tm") + " (tm), a layer above it"},
		},
		"tm imports transport": {
			[]Package{{m("tm"), []string{m("transport")}}},
			[]string{m("tm") + " (tm) imports " + m("transport") + " (transport and modules), a layer above it"},
		},
		"facade imports an example": {
			[]Package{{m(""), []string{m("examples/lcr")}}},
			[]string{m("") + " (facade) imports " + m("examples/lcr") + " (programs and test support), a layer above it"},
		},
		"a module imports the facade": {
			[]Package{{m("modules/metrics"), []string{m("")}}},
			[]string{m("modules/metrics") + " (transport and modules) imports " + m("") + " (facade), a layer above it"},
		},
		"library code imports test support": {
			[]Package{{m("transport"), []string{m("internal/testenv")}}},
			[]string{m("transport") + " (transport and modules) imports " + m("internal/testenv") + " (programs and test support), a layer above it"},
		},
		"a module imports a test helper": {
			[]Package{{m("modules/shared"), []string{m("internal/testenv")}}},
			[]string{m("modules/shared") + " (transport and modules) imports " + m("internal/testenv") + " (programs and test support), a layer above it"},
		},
		"a test package imports the facade": {
			[]Package{{m("modules/shared/sharedtest"), []string{m("")}}},
			[]string{m("modules/shared/sharedtest") + " (transport and modules) imports " + m("") + " (facade), a layer above it"},
		},
		"an unplaced package": {
			[]Package{{m("newthing"), nil}},
			[]string{m("newthing") + ": no layer places this package (add it to layering.Layers)"},
		},
		"downward and sideways imports pass": {
			[]Package{
				{m(""), []string{m("transport"), m("tm"), m("internal/sipdns")}},
				{m("transport"), []string{m("reactor")}},
				{m("modules/dispatcher/dbsets"), []string{m("modules/db"), m("modules/dispatcher")}},
				{m("examples/proxy"), []string{m(""), m("modules/nat"), "github.com/emiago/sipgo/sip"}},
				{m("modules/shared/sharedtest"), []string{m("internal/testenv"), m("internal/sipp")}},
			},
			nil,
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			assert.Equal(t, tc.want, Check(Layers, TestHelpers, tc.pkgs))
		})
	}
}

func TestLayerOf(t *testing.T) {
	cases := map[string]struct {
		path  string
		layer int
		ok    bool
	}{
		"root":             {Module, 4, true},
		"sub-package":      {Module + "/tm/internal/x", 2, true},
		"prefix only":      {Module + "/reactorx", 0, false},
		"another module":   {"github.com/asyncsip/asyncsipx", 0, false},
		"examples program": {Module + "/examples/stateless", 5, true},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			got, ok := LayerOf(Layers, tc.path)
			assert.Equal(t, tc.ok, ok)
			if ok {
				assert.Equal(t, tc.layer, got)
			}
		})
	}
}
