// Package async is asyncsip's suspend/resume engine: a route starts I/O, the
// worker loop goes on serving other traffic, and the route continues later,
// on the same loop, with the result and with its transaction intact.
//
// An Op is anything that can be started on a reactor loop and completes
// once with (T, error): a database query, a child process, an HTTP call, a
// timer. Await runs an op for a context (tm.Context implements Suspender)
// and continues with a resume func:
//
//	srv.Request(func(c *tm.Context) {
//		async.Await(c, async.Blocking(func(ctx context.Context) (string, error) {
//			return lookupGateway(ctx, c.Recipient().User) // any blocking call
//		}, async.Name("lcr")), func(gw string, err error) {
//			if err != nil { // ErrTimeout, ErrOverloaded, the lookup's own error
//				c.Reply(503, "Routing unavailable")
//				return
//			}
//			c.SetDestination(gw)
//			c.Relay()
//		}, async.Timeout(2*time.Second))
//	})
//
// # Guarantees
//
//   - The resume runs on the context's loop, exactly once, or never if the
//     context ended first (its Resumer aborted: the op is then cancelled).
//   - An op that completes synchronously (a cache hit, an overloaded pool)
//     resumes inline: no suspension, no task, no timer.
//   - Every wait is bounded: DefaultTimeout unless Timeout says otherwise.
//     On timeout the op is cancelled (Blocking's ctx is cancelled) and the
//     resume gets an error wrapping ErrTimeout; a later completion is
//     dropped.
//   - Completions from other goroutines are posted to the loop at urgent
//     priority, so they run before new network input and normal tasks.
//   - The loop never blocks: a full Pool fails the op at once with
//     ErrOverloaded.
//   - A resume may Await again (chained awaits); each await is a new op
//     with its own timeout.
//   - Failures of every kind reach the resume as err: there are no panics
//     on bad input (a nil op gives ErrNilOp), and a panicking op gives
//     ErrPanic.
//
// Launch runs an op that is not tied to a context (fire and forget); its
// report callback runs exactly once, also when the op completed
// synchronously or timed out. LaunchGroup does the same from any goroutine
// on the least busy loop of a reactor.Group.
//
// # Writing ops
//
// An op waits however it likes (see Op for the contract):
//
//   - Blocking runs a blocking Go call on a bounded Pool (DefaultPool:
//     GOMAXPROCS*64 workers, a queue of 4096, workers started on demand and
//     gone after DefaultIdleTimeout of idleness) and posts the result back.
//   - FDOp and FDSet wait on file descriptors registered on the loop —
//     several at once, with per-fd "keep waiting / remove / close" actions —
//     and close them all when the op completes or is cancelled.
//   - Sleep waits on a loop timer.
//   - OpFunc adapts any function; PostDone delivers a result from another
//     goroutine; Done is an op that has already completed; Map and Then
//     combine ops.
//
// # Cost
//
// An Await that completes synchronously makes two allocations (its call
// state and the done func handed to the op); a suspended one makes four (a
// loop timer and one func shared by the timer, the abort hook and the
// resume), plus what the op and the host allocate. Options are plain values
// and allocate nothing. BenchmarkAwaitSync and BenchmarkAwaitAsync measure
// it. Observer (optional, per context via ObservedSuspender
// or per call via Observe) feeds metrics without importing a metrics
// library.
package async
