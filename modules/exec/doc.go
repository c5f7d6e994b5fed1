// Package exec runs external commands for routes without blocking a worker:
// the asynchronous counterpart of OpenSIPS's exec module inside async().
//
// A Cmd is an async.Op[Result]: await it from a route, and the route
// continues on the same loop with what the command printed.
//
//	srv.Request(func(c *tm.Context) {
//		if c.InDialog() { // ACK, BYE, re-INVITE of a call we record-routed: no script
//			c.Relay() // follows the call's signed Route
//			return
//		}
//		cmd := exec.Command("/etc/asyncsip/route.sh", c.Recipient().User)
//		cmd.Timeout = time.Second // SIGTERM to its process group, SIGKILL after Grace
//		async.Await(c, cmd, func(r exec.Result, err error) {
//			if err != nil || len(r.Lines()) == 0 { // non-zero exit, killed, overloaded...
//				c.Reply(503, "Routing unavailable")
//				return
//			}
//			c.Relay(r.Lines()[0])
//		}, async.Timeout(2*time.Second))
//	})
//
// # How a command waits
//
// On Linux with pidfd support (5.3+), a command costs no goroutine: its
// stdout and stderr are non-blocking pipes and its exit is a pidfd, all
// watched by the owner loop; stdin is written as its pipe becomes writable;
// the child is reaped when its pidfd is readable. The op completes when the
// process has exited and its output reached EOF. A command that exits while
// something it started still holds its output open gets a short bounded
// drain (Drain), after which the holders are killed and the pipes closed.
// Without pidfd (older kernels) each command gets one goroutine that waits
// for the exit and posts it to the loop; the choice is made once per Runner
// and logged.
//
// The fork+exec itself runs on the loop (as OpenSIPS forks in its worker):
// a few hundred µs, more under CPU contention.
//
// On a manual loop (reactor.NewManual, the loop siptest's Harness runs
// routes on), which has no poller, one goroutine per command watches the
// pipes and the exit and posts the result to the loop; Timeout, Grace and
// Drain then run on the wall clock, and the await's own timeout on the
// loop's fake clock. With siptest.WithRealOps("exec") a unit test runs the
// real command; without it modules/exec/exectest's Fake answers for it by
// program and arguments, or the test completes the await itself.
//
// # Limits and cleanup
//
// Captured output is capped per stream (MaxOutput); the excess is read and
// discarded, and Result.Truncated is set. A Runner bounds the commands in
// flight (Config.MaxCommands); beyond it a command fails at once with an
// error wrapping async.ErrOverloaded. Every command runs in its own process
// group; on its Timeout, or when the op is cancelled (the await timed out,
// the transaction ended), the group gets SIGTERM, then SIGKILL after Grace,
// and the child is reaped: no zombie and no descriptor outlives a command.
package exec
