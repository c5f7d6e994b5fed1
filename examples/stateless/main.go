// Command stateless is a minimal stateless load balancer: every request is
// forwarded without a transaction to one of the backends, chosen by a hash
// of its Call-ID so that all requests of a call reach the same backend.
// Responses find their way back through the Via headers. A backend that is
// down is not detected: put a stateful proxy behind it for that.
//
//	go run ./examples/stateless -backends 127.0.0.1:5070,127.0.0.1:5071
package main

import (
	"context"
	"flag"
	"fmt"
	"hash/fnv"
	"log"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/asyncsip/asyncsip"
	"github.com/asyncsip/asyncsip/tm"
)

// Routes balances over backends ("host:port").
func Routes(backends []string) tm.Routes {
	return tm.Routes{Request: func(c *tm.Context) {
		if c.LooseRouted() {
			_ = c.Forward() // in-dialog, through our Record-Route: follow the Route set
			return
		}
		h := fnv.New32a()
		h.Write([]byte(*c.Req().CallID()))
		err := c.SetDestination(backends[h.Sum32()%uint32(len(backends))])
		if err == nil {
			err = c.Forward()
		}
		if err != nil {
			c.Logger().Warn("forward failed", "err", err)
			_ = c.Reply(503, "Backend Unavailable") // no-op for an ACK
		}
	}}
}

func main() {
	list := flag.String("backends", "127.0.0.1:5070,127.0.0.1:5071", "comma-separated backends")
	listen := flag.String("listen", "udp:127.0.0.1:5060", "listen address")
	flag.Parse()
	backends := strings.Split(*list, ",")
	srv, err := asyncsip.New(asyncsip.Config{
		Listen: []string{*listen},
		// Nothing is kept per call, so no Record-Route either: a caller
		// that sends its ACK and BYE through the balancer (its outbound
		// proxy) sends them without our signed Route. They are forwarded
		// by Call-ID like the INVITE, to the backend that decides about
		// them, instead of being refused 403 (tm's default).
		Core: tm.Config{NoRecordRoute: true, Security: tm.Security{AllowUnsignedInDialog: true}},
	})
	if err != nil {
		log.Fatal(err)
	}
	srv.SetRoutes(Routes(backends))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	fmt.Println("stateless balancer on", *listen, "over", backends)
	if err := srv.Serve(ctx); err != nil {
		log.Fatal(err)
	}
}
