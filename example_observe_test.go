package asyncsip_test

import (
	"context"
	"log"

	"github.com/asyncsip/asyncsip"
	"github.com/asyncsip/asyncsip/modules/hep"
	"github.com/asyncsip/asyncsip/modules/metrics"
	"github.com/asyncsip/asyncsip/tm"
)

// A proxy for production: Prometheus metrics and pprof on a private
// address, every message copied to Homer, and SIGTERM handling — the first
// signal drains (503 to new requests while calls in progress finish, up to
// DrainTimeout), a second one stops at once.
func ExampleServeSignals() {
	hx, err := hep.New(hep.Config{Collector: "127.0.0.1:9060", AgentID: 2001})
	if err != nil {
		log.Fatal(err)
	}
	defer hx.Close()                                           // after the server: flushes the queue
	exp := metrics.New(metrics.Config{Addr: "127.0.0.1:9090"}) // /metrics and /debug/pprof/
	exp.Registry().MustRegister(hx.Collector())
	srv, err := asyncsip.New(asyncsip.Config{
		Listen:     []string{"udp:127.0.0.1:5060"},
		Core:       tm.Config{Capture: hx.Capture},
		Extensions: []asyncsip.Extension{exp},
	})
	if err != nil {
		log.Fatal(err)
	}
	srv.Request(func(c *tm.Context) { _ = c.Relay() })
	if err := asyncsip.ServeSignals(context.Background(), srv); err != nil {
		log.Print(err) // asyncsip.ErrStopped: the drain was cut short
	}
}

// Routes can be replaced while serving, after a configuration reload:
// transactions in progress, suspended ones included, finish under the
// routes they started with.
func ExampleServer_SetRoutes() {
	srv, err := asyncsip.New(asyncsip.Config{Listen: []string{"udp:127.0.0.1:0"}})
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Shutdown(context.Background())
	load := func() tm.Routes { // e.g. read from a reloaded file
		return tm.Routes{Request: func(c *tm.Context) { _ = c.Relay() }}
	}
	srv.SetRoutes(load())
	// On SIGHUP: srv.SetRoutes(load())
}
