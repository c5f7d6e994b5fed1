// Command restroute is a proxy whose routing is decided by an HTTP API: for
// each new INVITE it asks GET {api}?from=…&to=… and relays the call to the
// "target" of the JSON answer; {"reject": 403} refuses it. The route waits
// for the API without blocking its worker; on error or timeout the caller
// gets 503.
//
//	go run ./examples/restroute -api http://127.0.0.1:8080/route
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"net/url"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/asyncsip/asyncsip"
	"github.com/asyncsip/asyncsip/async"
	"github.com/asyncsip/asyncsip/modules/rest"
	"github.com/asyncsip/asyncsip/tm"
)

// Answer is the API's JSON answer.
type Answer struct {
	Target string `json:"target"` // a SIP URI, e.g. "sip:+1555@10.0.0.7:5060"
	Reject int    `json:"reject"` // a 4xx-6xx code to refuse the call
}

// Routes asks api about every new INVITE through client.
func Routes(client *rest.Client, api string, timeout time.Duration) tm.Routes {
	return tm.Routes{Request: func(c *tm.Context) {
		if c.InDialog() {
			_ = c.Relay()
			return
		}
		q := url.Values{"from": {c.Req().From().Address.User}, "to": {c.Recipient().User}}
		op := rest.JSON[Answer](client.Get(api + "?" + q.Encode()))
		async.Await(c, op, func(a Answer, err error) {
			switch {
			case err != nil:
				c.Logger().Warn("routing API failed", "err", err)
				_ = c.Reply(503, "Routing Unavailable")
			case a.Reject >= 400 && a.Reject <= 699:
				_ = c.Reply(a.Reject, "")
			case a.Target == "":
				_ = c.Reply(404, "No Route")
			default:
				// A target that cannot be used is answered by tm, with the
				// reason (404, 503, …).
				_ = c.Relay(a.Target)
			}
		}, async.Timeout(timeout), async.Name("rest.route"))
	}}
}

func main() {
	api := flag.String("api", "http://127.0.0.1:8080/route", "routing API URL")
	listen := flag.String("listen", "udp:127.0.0.1:5060", "listen address")
	timeout := flag.Duration("timeout", time.Second, "bound on each API call")
	flag.Parse()
	client, err := rest.NewClient(rest.Config{Timeout: *timeout})
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close(context.Background())
	srv, err := asyncsip.New(asyncsip.Config{Listen: []string{*listen}})
	if err != nil {
		log.Fatal(err)
	}
	srv.SetRoutes(Routes(client, *api, *timeout))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	fmt.Println("restroute proxy on", *listen, "asking", *api)
	if err := srv.Serve(ctx); err != nil {
		log.Fatal(err)
	}
}
