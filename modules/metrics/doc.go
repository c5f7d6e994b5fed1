// Package metrics exports what an asyncsip server does as Prometheus
// metrics, and serves them with the pprof profiles on an opt-in HTTP
// listener.
//
// Most series are read at scrape time from counters that tm, the reactor
// loops and the async pools keep anyway (a prometheus.Collector), so the
// message path pays nothing for them. Two things are measured actively: the
// latency of every Await (the Exporter is the async.Observer tm hands to
// each Context), and each loop's lag, by posting a probe task to every loop
// each ProbeInterval and timing how long it waits. The probe also learns
// the loop's OS thread, whose CPU clock gives the loop's utilisation.
//
// Importing the root package links none of it: metrics are opt-in. With
// the root package an Exporter is one of the server's extensions (New
// attaches it, Start starts it, Shutdown closes it, and it observes the
// awaits):
//
//	exp := metrics.New(metrics.Config{Addr: "127.0.0.1:9090"})
//	srv, _ := asyncsip.New(asyncsip.Config{Extensions: []asyncsip.Extension{exp}})
//
// and by hand:
//
//	exp := metrics.New(metrics.Config{Addr: "127.0.0.1:9090"})
//	core := tm.NewServer(group.Loops(), tm.Config{Observer: exp}, routes)
//	_ = exp.Watch(core, group)
//	_ = exp.WatchPool("default", async.DefaultPool())
//	_ = exp.Start()
//	defer exp.Close(ctx)
//
// See README.md for the list of series.
package metrics
