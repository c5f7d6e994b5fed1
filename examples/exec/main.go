// Command exec is a proxy whose routing is decided by an external script:
// for each new INVITE it runs `script <callee> <caller>`; the first line the
// script prints is the target URI, and exit status 1 means "no route"
// (404). The script runs without blocking the worker; a script that hangs is
// killed after -timeout and the caller gets 503.
//
//	go run ./examples/exec -script ./route.sh
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/asyncsip/asyncsip"
	"github.com/asyncsip/asyncsip/async"
	"github.com/asyncsip/asyncsip/modules/exec"
	"github.com/asyncsip/asyncsip/tm"
)

// Routes runs script for every new INVITE.
func Routes(script string, timeout time.Duration) tm.Routes {
	return tm.Routes{Request: func(c *tm.Context) {
		if c.InDialog() {
			_ = c.Relay()
			return
		}
		cmd := exec.Command(script, c.Recipient().User, c.Req().From().Address.User)
		cmd.Timeout = timeout
		async.Await(c, cmd, func(r exec.Result, err error) {
			switch {
			case r.ExitCode == 1:
				_ = c.Reply(404, "No Route")
			case err != nil || len(r.Lines()) == 0:
				c.Logger().Warn("routing script failed", "err", err, "stderr", string(r.Stderr))
				_ = c.Reply(503, "Routing Unavailable")
			default:
				// A target that cannot be used is answered by tm, with the
				// reason (404, 503, …).
				_ = c.Relay(r.Lines()[0])
			}
		}, async.Timeout(timeout+time.Second), async.Name("route.script"))
	}}
}

func main() {
	script := flag.String("script", "./route.sh", "routing script: prints the target URI")
	listen := flag.String("listen", "udp:127.0.0.1:5060", "listen address")
	timeout := flag.Duration("timeout", time.Second, "kill the script after this long")
	flag.Parse()
	srv, err := asyncsip.New(asyncsip.Config{Listen: []string{*listen}})
	if err != nil {
		log.Fatal(err)
	}
	srv.SetRoutes(Routes(*script, *timeout))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	fmt.Println("exec proxy on", *listen, "routing with", *script)
	if err := srv.Serve(ctx); err != nil {
		log.Fatal(err)
	}
}
