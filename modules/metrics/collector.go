package metrics

import (
	"strconv"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/asyncsip/asyncsip/async"
	"github.com/asyncsip/asyncsip/tm"
)

const namespace = "asyncsip"

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(namespace+"_"+name, help, labels, nil)
}

// Descriptors of the series read at scrape time from the counters tm, the
// loops and the pools keep anyway: nothing is added to the hot path.
var (
	dRequests = desc("sip_requests_total",
		"SIP requests on the wire by direction (in, out) and method, retransmissions included.", "direction", "method")
	dResponses = desc("sip_responses_total",
		"SIP responses on the wire by direction (in, out) and status class (1xx..6xx), retransmissions included.", "direction", "class")
	dSendErrors = desc("sip_send_errors_total", "Messages the transport failed to send.")
	dHandoffs   = desc("sip_handoffs_total", "Messages received on one loop and handed to the owner loop of their Call-ID.")
	dDrops      = desc("sip_dropped_total",
		"Received messages dropped, by reason: parse, size, headers, invalid, closed, other; stray, route, queue, "+
			"amplification, unanswerable; source, via, unsigned, routeset, screened (see tm.StatsSnapshot).", "reason")
	dTombstones = desc("transaction_tombstones",
		"Completed transactions kept only to absorb retransmissions (a final response and the keys to match).")
	dTxBytes = desc("transaction_bytes",
		"Memory accounted to transactions and tombstones, against tm.Config.MaxTransactionBytes.")
	dOverload = desc("overload_rejections_total",
		"Requests answered 503 or suspensions refused (ErrOverloaded) because a transaction bound was reached.")
	dTxCreated = desc("transactions_created_total",
		"Transactions created, by side (server, client).", "side")
	dTxDone = desc("transactions_completed_total",
		"Transactions terminated, by side (server, client).", "side")
	dTxActive = desc("transactions_active",
		"Transactions alive now (created - completed), by side (server, client).", "side")
	dInProgress = desc("transactions_in_progress",
		"Server transactions without a final response yet (what a graceful drain waits for).")
	dSuspended       = desc("transactions_suspended", "Transactions suspended on an async op now.")
	dSuspendTimeouts = desc("suspend_timeouts_total", "Suspensions that outlived the suspension bound.")
	dAbandoned       = desc("routes_abandoned_total", "Request routes that returned without acting (answered AbandonCode).")
	dPanics          = desc("route_panics_total", "Panics recovered in routes (answered 500).")
	dRetrans         = desc("retransmissions_absorbed_total", "Request retransmissions absorbed by a transaction.")
	dStateless       = desc("stateless_forwards_total", "Messages forwarded without a transaction.")

	dOrigStarted = desc("originated_started_total",
		"Requests the proxy originated (tm.Server.Send, Originate) and sent as a client transaction.")
	dOrigEnded = desc("originated_requests_total",
		"Originated requests by outcome: completed (a final response), timeout, failed (could not be sent, "+
			"or ended by Close), cancelled (the caller stopped waiting); refused and overloaded before anything "+
			"was sent (see tm.OriginatedStats).", "outcome")
	dOrigInFlight = desc("originated_in_flight", "Originated requests in flight now.")

	dPosted   = desc("loop_tasks_posted_total", "Tasks posted to the loop.", "loop")
	dPending  = desc("loop_tasks_pending", "Tasks queued on the loop now.", "loop")
	dWakeups  = desc("loop_wakeups_total", "Eventfd wake-ups of the loop.", "loop")
	dPolls    = desc("loop_polls_total", "epoll_wait calls of the loop.", "loop")
	dFDEvents = desc("loop_fd_events_total", "Fd events dispatched by the loop.", "loop")
	dTStarted = desc("loop_timers_started_total", "Timers started on the loop.", "loop")
	dTFired   = desc("loop_timers_fired_total", "Timers fired on the loop.", "loop")
	dTimers   = desc("loop_timers", "Timers scheduled on the loop (sampled by the lag probe).", "loop")
	dTables   = desc("loop_transactions",
		"Transactions in the loop's tables (sampled by the lag probe), by side (server, client).", "loop", "side")
	dWatchers = desc("loop_watched_fds", "Fds watched by the loop now.", "loop")
	dLPanics  = desc("loop_panics_total", "Panics recovered in loop tasks, timers and handlers.", "loop")
	dLag      = desc("loop_lag_last_seconds",
		"Post-to-run delay of the last lag probe, or the age of a probe still waiting (a stuck loop grows it).", "loop")
	dCPU = desc("loop_cpu_seconds_total",
		"CPU time used by the loop's thread: rate() of it is the loop's utilisation.", "loop")
	dUtil = desc("loop_utilization_ratio", "Share of the last probe interval the loop spent on CPU (0..1).", "loop")

	dPoolWorkers   = desc("pool_workers", "Goroutines alive in the blocking-call pool.", "pool")
	dPoolBusy      = desc("pool_busy_workers", "Pool workers running a call now.", "pool")
	dPoolQueued    = desc("pool_queued_calls", "Calls waiting for a pool worker now.", "pool")
	dPoolRejected  = desc("pool_rejected_total", "Calls refused with ErrOverloaded (every worker busy, queue full).", "pool")
	dPoolCompleted = desc("pool_completed_total", "Calls whose function returned.", "pool")
	dPoolDropped   = desc("pool_dropped_total", "Calls dropped unrun (cancelled while queued, or pool closed).", "pool")
)

var classNames = [6]string{"1xx", "2xx", "3xx", "4xx", "5xx", "6xx"}

// serverCollector reads tm's counters, the loops' counters and the pools'
// stats when Prometheus scrapes.
type serverCollector struct {
	core   *tm.Server
	probes []*loopProbe

	mu    sync.Mutex
	pools []namedPool
}

type namedPool struct {
	name string
	p    *async.Pool
}

func (c *serverCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{
		dRequests, dResponses, dSendErrors, dHandoffs, dDrops, dOverload, dTxCreated, dTxDone, dTxActive,
		dTombstones, dTxBytes,
		dInProgress, dSuspended, dSuspendTimeouts, dAbandoned, dPanics, dRetrans, dStateless,
		dOrigStarted, dOrigEnded, dOrigInFlight,
		dPosted, dPending, dWakeups, dPolls, dFDEvents, dTStarted, dTFired, dTimers, dTables, dWatchers, dLPanics,
		dLag, dCPU, dUtil,
		dPoolWorkers, dPoolBusy, dPoolQueued, dPoolRejected, dPoolCompleted, dPoolDropped,
	} {
		ch <- d
	}
}

func (c *serverCollector) Collect(ch chan<- prometheus.Metric) {
	c.collectSIP(ch)
	c.collectLoops(ch)
	c.collectPools(ch)
}

func counter(ch chan<- prometheus.Metric, d *prometheus.Desc, v uint64, labels ...string) {
	ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
}

func gauge(ch chan<- prometheus.Metric, d *prometheus.Desc, v float64, labels ...string) {
	ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
}

func (c *serverCollector) collectSIP(ch chan<- prometheus.Metric) {
	m := c.core.Messages()
	for dir, byMethod := range map[string]map[string]uint64{"in": m.RequestsIn, "out": m.RequestsOut} {
		for method, n := range byMethod {
			counter(ch, dRequests, n, dir, method)
		}
	}
	for i, class := range classNames {
		counter(ch, dResponses, m.ResponsesIn[i], "in", class)
		counter(ch, dResponses, m.ResponsesOut[i], "out", class)
	}
	st := c.core.Stats()
	counter(ch, dSendErrors, st.SendErrors)
	counter(ch, dHandoffs, st.Handoffs)
	for reason, n := range map[string]uint64{
		"parse": st.DropParse, "size": st.DropSize, "headers": st.DropHeaders,
		"invalid": st.DropInvalid, "closed": st.DropClosed, "other": st.DropOther,
		"stray": st.DropStray, "route": st.DropRoute, "queue": st.DropQueue,
		"amplification": st.DropAmplification, "unanswerable": st.DropUnanswerable,
		"source": st.DropSource, "via": st.DropVia, "unsigned": st.DropUnsigned, "routeset": st.DropRouteSet,
		"screened": st.DropScreened,
	} {
		counter(ch, dDrops, n, reason)
	}
	counter(ch, dOverload, st.Overload)
	counter(ch, dTxCreated, st.ServerTxCreated, "server")
	counter(ch, dTxCreated, st.ClientTxCreated, "client")
	counter(ch, dTxDone, st.ServerTxDone, "server")
	counter(ch, dTxDone, st.ClientTxDone, "client")
	// The snapshot is not atomic: a transaction may end between the two
	// loads, hence the clamp.
	gauge(ch, dTxActive, max(0, float64(st.ServerTxCreated)-float64(st.ServerTxDone)), "server")
	gauge(ch, dTxActive, max(0, float64(st.ClientTxCreated)-float64(st.ClientTxDone)), "client")
	gauge(ch, dInProgress, float64(st.InProgress))
	gauge(ch, dTombstones, float64(st.Tombstones))
	gauge(ch, dTxBytes, float64(st.TransactionBytes))
	gauge(ch, dSuspended, float64(st.Suspended))
	counter(ch, dSuspendTimeouts, st.SuspendTimeouts)
	counter(ch, dAbandoned, st.Abandoned)
	counter(ch, dPanics, st.Panics)
	counter(ch, dRetrans, st.RetransAbsorbed)
	counter(ch, dStateless, st.Stateless)
	o := st.Originated
	counter(ch, dOrigStarted, o.Started)
	for outcome, n := range map[string]uint64{
		"completed": o.Completed, "timeout": o.TimedOut, "failed": o.Failed, "cancelled": o.Cancelled,
		"refused": o.Refused, "overloaded": o.Overloaded,
	} {
		counter(ch, dOrigEnded, n, outcome)
	}
	gauge(ch, dOrigInFlight, float64(o.InFlight))
}

func (c *serverCollector) collectLoops(ch chan<- prometheus.Metric) {
	for _, p := range c.probes {
		id := strconv.Itoa(p.l.ID())
		s := p.l.Stats()
		counter(ch, dPosted, s.Posted, id)
		gauge(ch, dPending, float64(s.Pending), id)
		counter(ch, dWakeups, s.Wakeups, id)
		counter(ch, dPolls, s.Polls, id)
		counter(ch, dFDEvents, s.FDEvents, id)
		counter(ch, dTStarted, s.TimersStarted, id)
		counter(ch, dTFired, s.TimersFired, id)
		gauge(ch, dTimers, float64(p.timers.Load()), id)
		gauge(ch, dTables, float64(p.srvTx.Load()), id, "server")
		gauge(ch, dTables, float64(p.cliTx.Load()), id, "client")
		gauge(ch, dWatchers, float64(s.Watchers), id)
		counter(ch, dLPanics, s.Panics, id)
		gauge(ch, dLag, p.currentLag().Seconds(), id)
		if cpu, ok := p.cpu(); ok {
			ch <- prometheus.MustNewConstMetric(dCPU, prometheus.CounterValue, cpu.Seconds(), id)
			gauge(ch, dUtil, p.utilization(), id)
		}
	}
}

func (c *serverCollector) collectPools(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	pools := append([]namedPool(nil), c.pools...)
	c.mu.Unlock()
	for _, np := range pools {
		s := np.p.Stats()
		gauge(ch, dPoolWorkers, float64(s.Workers), np.name)
		gauge(ch, dPoolBusy, float64(s.Busy), np.name)
		gauge(ch, dPoolQueued, float64(s.Queued), np.name)
		counter(ch, dPoolRejected, s.Rejected, np.name)
		counter(ch, dPoolCompleted, s.Completed, np.name)
		counter(ch, dPoolDropped, s.Dropped, np.name)
	}
}
