package metrics

import (
	"fmt"
	"html"
	"net/http"
	"runtime"
	"runtime/pprof"
	"runtime/trace"
	"sort"
	"strconv"
	"strings"
	"time"
)

// The profiling endpoints are served by this file rather than by
// net/http/pprof: importing that package registers its handlers on
// http.DefaultServeMux as a side effect, which would expose profiles on any
// public server of the program that uses the default mux. Here they exist
// only on the exporter's own, opt-in listener. The wire formats are those
// of runtime/pprof and runtime/trace, so `go tool pprof` and `go tool
// trace` read them as usual.

// Bounds of the timed profiles, in seconds.
const (
	defaultCPUSeconds   = 30
	defaultTraceSeconds = 1
	maxProfileSeconds   = 300
)

func (e *Exporter) pprofIndex(w http.ResponseWriter, r *http.Request) {
	name := strings.TrimPrefix(r.URL.Path, "/debug/pprof/")
	switch name {
	case "":
	case "profile":
		e.cpuProfile(w, r)
		return
	case "trace":
		e.execTrace(w, r)
		return
	default:
		namedProfile(w, r, name)
		return
	}
	var names []string
	for _, p := range pprof.Profiles() {
		names = append(names, p.Name())
	}
	sort.Strings(names)
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	fmt.Fprint(w, "<html><head><title>/debug/pprof/</title></head><body><h1>/debug/pprof/</h1><ul>\n")
	for _, n := range names {
		n = html.EscapeString(n)
		fmt.Fprintf(w, "<li><a href=\"%s?debug=1\">%s</a></li>\n", n, n)
	}
	fmt.Fprint(w, "<li><a href=\"profile?seconds=30\">profile</a> (CPU, 30 s)</li>\n")
	fmt.Fprint(w, "<li><a href=\"trace?seconds=1\">trace</a> (execution trace, 1 s)</li>\n")
	fmt.Fprint(w, "</ul></body></html>\n")
}

// seconds parses the seconds query parameter within (0, maxProfileSeconds].
func seconds(r *http.Request, def int) (time.Duration, error) {
	s := r.URL.Query().Get("seconds")
	if s == "" {
		return time.Duration(def) * time.Second, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n <= 0 || n > maxProfileSeconds {
		return 0, fmt.Errorf("seconds must be an integer in 1..%d, got %q", maxProfileSeconds, s)
	}
	return time.Duration(n) * time.Second, nil
}

func namedProfile(w http.ResponseWriter, r *http.Request, name string) {
	p := pprof.Lookup(name)
	if p == nil {
		http.Error(w, "unknown profile "+strconv.Quote(name), http.StatusNotFound)
		return
	}
	debug, _ := strconv.Atoi(r.URL.Query().Get("debug"))
	if name == "heap" && r.URL.Query().Get("gc") != "" {
		runtime.GC()
	}
	if debug > 0 {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	} else {
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Disposition", `attachment; filename="`+name+`"`)
	}
	if err := p.WriteTo(w, debug); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
	}
}

// wait sleeps for d, or less when the client goes away or the exporter
// closes.
func (e *Exporter) wait(r *http.Request, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-r.Context().Done():
	case <-e.closing:
	}
}

func (e *Exporter) cpuProfile(w http.ResponseWriter, r *http.Request) {
	d, err := seconds(r, defaultCPUSeconds)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Disposition", `attachment; filename="profile"`)
	if err := pprof.StartCPUProfile(w); err != nil {
		// Headers are not sent yet: StartCPUProfile writes nothing on error.
		http.Error(w, "cannot start CPU profile: "+err.Error(), http.StatusConflict)
		return
	}
	e.wait(r, d)
	pprof.StopCPUProfile()
}

func (e *Exporter) execTrace(w http.ResponseWriter, r *http.Request) {
	d, err := seconds(r, defaultTraceSeconds)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Disposition", `attachment; filename="trace"`)
	if err := trace.Start(w); err != nil {
		http.Error(w, "cannot start trace: "+err.Error(), http.StatusConflict)
		return
	}
	e.wait(r, d)
	trace.Stop()
}
