// Package reactor provides the event loops that every asyncsip worker runs.
//
// A Loop is one goroutine locked to its OS thread. It owns an epoll instance,
// an eventfd for wake-ups, two task queues (urgent and normal) that any
// goroutine may Post to, a timer heap whose next deadline sets the epoll_wait
// timeout, and fd watchers. Everything a loop owns is touched only by that
// loop, so state that belongs to one loop needs no lock.
//
// Each iteration runs, in order: due timers, urgent tasks (async resumes),
// normal tasks, then fd events — so completions always beat new traffic, and
// the number of tasks and events handled per iteration is bounded so that
// neither side starves the other.
//
// A Group runs N loops, spreads periodic jobs over them and stops them
// gracefully. UDPSocket puts SIP datagram sockets on the loops.
//
// For deterministic tests, NewManual returns a loop with no goroutine and no
// poller, driven by a FakeClock:
//
//	clk := reactor.NewFakeClock(time.Unix(0, 0))
//	l := reactor.NewManual(clk)
//	l.AfterFunc(time.Second, func() { fmt.Println("fired") })
//	l.Advance(time.Second) // prints "fired"
package reactor
