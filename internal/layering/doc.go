// Package layering holds the test that keeps the packages' imports
// pointing down the stack:
//
//	reactor ← async ← tm ← transport, modules/… ← asyncsip (facade) ← examples, bench
//
// A package may import its own layer and those below, never one above (test
// files excepted: a module's tests may start a real server through the
// facade). A test package of a lower layer, named like httptest ("…test":
// siptest, sharedtest), may also import the TestHelpers, since only tests
// import it. The layers are listed in Layers; a package the list does not
// place fails the test until it is placed.
package layering

import "strings"

// Module is the module path of this repository.
const Module = "github.com/asyncsip/asyncsip"

// A Layer is a rank in the stack and the package paths (relative to the
// module; "" is the root package, a trailing "/..." covers a folder) that
// sit on it.
type Layer struct {
	Name     string
	Packages []string
}

// Layers lists the stack from the bottom up.
var Layers = []Layer{
	{"reactor", []string{"reactor/..."}},
	{"async", []string{"async/..."}},
	{"tm", []string{"tm/..."}},
	{"transport and modules", []string{"transport/...", "modules/...", "internal/sipdns/...", "siptest/...", "internal/faketable/..."}},
	{"facade", []string{""}},
	{"programs and test support", []string{"examples/...", "bench/...", "internal/testenv/...",
		"internal/sipp/...", "internal/deps/...", "internal/e2e/...", "internal/layering/..."}},
}

// TestHelpers are the test-support packages that a lower layer's test
// package ("…test") may import.
var TestHelpers = []string{"internal/testenv/...", "internal/sipp/..."}

// LayerOf returns the rank of the package at path (a full import path) in
// layers, and false when no layer holds it.
func LayerOf(layers []Layer, path string) (int, bool) {
	for i, l := range layers {
		if matches(l.Packages, path) {
			return i, true
		}
	}
	return 0, false
}

// matches reports whether the import path is one of pkgs (paths relative
// to the module, "/..." for a folder).
func matches(pkgs []string, path string) bool {
	rel, ok := strings.CutPrefix(path, Module)
	if !ok || (rel != "" && rel[0] != '/') {
		return false
	}
	rel = strings.TrimPrefix(rel, "/")
	for _, p := range pkgs {
		if dir, all := strings.CutSuffix(p, "/..."); all {
			if rel == dir || strings.HasPrefix(rel, dir+"/") {
				return true
			}
		} else if rel == p {
			return true
		}
	}
	return false
}

// isTestPackage reports whether path names a test package ("…test").
func isTestPackage(path string) bool {
	return strings.HasSuffix(path[strings.LastIndexByte(path, '/')+1:], "test")
}

// Package is a package and what its non-test files import.
type Package struct {
	ImportPath string
	Imports    []string
}

// Check returns one line per import that goes up the stack (helpers
// excepted for test packages), and per package of this module that no
// layer places. Imports from outside the module are not its business.
func Check(layers []Layer, helpers []string, pkgs []Package) []string {
	var bad []string
	for _, p := range pkgs {
		from, ok := LayerOf(layers, p.ImportPath)
		if !ok {
			bad = append(bad, p.ImportPath+": no layer places this package (add it to layering.Layers)")
			continue
		}
		for _, imp := range p.Imports {
			if imp != Module && !strings.HasPrefix(imp, Module+"/") {
				continue
			}
			to, ok := LayerOf(layers, imp)
			if !ok {
				continue // reported as a package of its own
			}
			if to > from && !(isTestPackage(p.ImportPath) && matches(helpers, imp)) {
				bad = append(bad, p.ImportPath+" ("+layers[from].Name+") imports "+imp+
					" ("+layers[to].Name+"), a layer above it")
			}
		}
	}
	return bad
}
