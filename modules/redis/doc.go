// Package redis runs Redis commands as async ops, so that a route can read
// and write shared state (locations, call counters, rate counters) without
// blocking its worker loop — the asynchronous counterpart of OpenSIPS's
// cachedb_redis and Kamailio's ndb_redis, which block their workers.
//
//	rc, err := redis.Open("redis://127.0.0.1:6379/0")
//	...
//	srv.Request(func(c *tm.Context) {
//		async.Await(c, rc.Get("route:"+c.Recipient().User), func(target string, err error) {
//			switch {
//			case errors.Is(err, redis.ErrNil):
//				c.Reply(404, "Not Found")
//			case err != nil: // redis.ErrUnavailable, async.ErrTimeout, async.ErrOverloaded, *redis.ReplyError
//				c.Reply(503, "Service Unavailable")
//			default:
//				c.Relay(target)
//			}
//		})
//	})
//
// A Client wraps a rueidis client (auto-pipelining over one connection).
// Ops are typed — Do (raw Reply), String, Int, Float, Bool, Strings,
// StringMap, and helpers such as Get, Set, Incr — and every failure is a
// value the resume branches on:
//
//   - ErrNil: the reply was nil (a missing key); not a failure.
//   - *ReplyError: Redis answered with an error (WRONGTYPE, a script error).
//   - async.ErrTimeout: no reply within Config.Timeout (each op has its own
//     loop timer, whatever the await's timeout).
//   - async.ErrOverloaded: Config.MaxInFlight ops are already in flight;
//     the op failed at once.
//   - ErrUnavailable: Redis cannot be reached. After the first such error
//     the client fails new ops at once, without a wait, and PINGs Redis
//     every RetryInterval in the background; when it answers, ops go
//     through again on the same Client.
//
// No goroutine is started per op: a few dispatcher goroutines send queued
// commands in pipelined batches and post the replies to the loops (see
// dispatch.go). Scripts (NewScript) run with EVALSHA and load themselves on
// NOSCRIPT. Subscribe and SubscribeGroup deliver pub/sub messages to
// loops. Package redistest is a fake for route unit tests. README.md has
// the design choice, the failure semantics and the measured figures.
package redis
