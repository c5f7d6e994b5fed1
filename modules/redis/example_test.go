package redis_test

import (
	"context"
	"errors"
	"log"
	"time"

	"github.com/asyncsip/asyncsip"
	"github.com/asyncsip/asyncsip/async"
	"github.com/asyncsip/asyncsip/modules/redis"
	"github.com/asyncsip/asyncsip/reactor"
	"github.com/asyncsip/asyncsip/tm"
)

// A proxy that looks its targets up in Redis: the worker loop serves other
// traffic while the GET is in flight, and each failure is a value the
// resume branches on. (Compiled, not run: it needs a Redis server; the same
// route runs against one in TestRouteAwaitsRealRedis.)
func Example() {
	rc, err := redis.Open("redis://127.0.0.1:6379/0", redis.Timeout(500*time.Millisecond))
	if err != nil {
		log.Fatal(err) // a bad URL; an unreachable Redis is not an error here
	}
	defer rc.Close(context.Background())

	srv, err := asyncsip.New(asyncsip.Config{Listen: []string{"udp:127.0.0.1:5060"}})
	if err != nil {
		log.Fatal(err)
	}
	srv.Request(func(c *tm.Context) {
		if c.InDialog() {
			_ = c.Relay()
			return
		}
		async.Await(c, rc.Get("route:"+c.Recipient().User), func(target string, err error) {
			switch {
			case errors.Is(err, redis.ErrNil):
				_ = c.Reply(404, "Not Found")
			case err != nil: // ErrUnavailable (at once while Redis is down), a timeout, an overload
				_ = c.Reply(503, "Service Unavailable")
			default:
				_ = c.Relay(target)
			}
		})
	})
	if err := srv.Serve(context.Background()); err != nil {
		log.Fatal(err)
	}
}

// A concurrent-call limit shared by every proxy instance: one script call
// increments the counter, refreshes its expiry and refuses beyond the
// limit, atomically in Redis. Only the script's SHA1 travels with each
// call; after a SCRIPT FLUSH or a restart the client loads it again.
func ExampleScript() {
	limit := redis.NewScript(`
		local n = redis.call('INCR', KEYS[1])
		redis.call('PEXPIRE', KEYS[1], ARGV[2])
		if n > tonumber(ARGV[1]) then redis.call('DECR', KEYS[1]) return 0 end
		return n`)
	rc, err := redis.Open("redis://127.0.0.1:6379/0")
	if err != nil {
		log.Fatal(err)
	}
	route := func(c *tm.Context) {
		async.Await(c, limit.Int(rc, []string{"calls:trunk1"}, "30", "3600000"), func(n int64, err error) {
			switch {
			case err != nil:
				_ = c.Reply(503, "Service Unavailable") // fail closed: no count, no call
			case n == 0:
				_ = c.Reply(486, "Trunk Full")
			default:
				_ = c.Relay("sip:trunk1.example.net")
			}
		}, async.Timeout(time.Second))
	}
	_ = route
}

// Pub/sub messages run on a loop, like any other event of that loop: here
// a cache of one loop is invalidated by a message another instance
// published.
func ExampleClient_Subscribe() {
	rc, err := redis.Open("redis://127.0.0.1:6379/0")
	if err != nil {
		log.Fatal(err)
	}
	l, err := reactor.New(reactor.Config{})
	if err != nil {
		log.Fatal(err)
	}
	l.Start()
	cache := map[string]string{} // owned by l: no lock
	sub, err := rc.Subscribe(l, func(m redis.Message) {
		delete(cache, m.Payload)
	}, "invalidate")
	if err != nil {
		log.Fatal(err)
	}
	defer sub.Close()
}
