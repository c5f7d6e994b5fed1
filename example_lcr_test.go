package asyncsip_test

import (
	"context"
	"errors"
	"log"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/asyncsip/asyncsip"
	"github.com/asyncsip/asyncsip/async"
	"github.com/asyncsip/asyncsip/modules/db"
	_ "github.com/asyncsip/asyncsip/modules/db/sqlite"
	"github.com/asyncsip/asyncsip/tm"
)

// lcrProxy is the README's headline, verbatim (TestReadmeHeadlineIsTheExample
// keeps the two identical; headline_test.go places calls through it).
func lcrProxy(ctx context.Context, listen, dsn string) error {
	routes, err := db.Open(db.DriverSQLite, dsn) // table lcr(prefix TEXT, gw TEXT)
	if err != nil {
		return err
	}
	defer routes.Close()
	srv, err := asyncsip.New(asyncsip.Config{Listen: []string{listen}})
	if err != nil {
		return err
	}
	srv.Request(func(c *tm.Context) {
		if c.InDialog() { // ACK, BYE, re-INVITE of a call we record-routed: no lookup
			c.Relay() // follows the call's signed Route
			return
		}
		if c.Method() != "INVITE" {
			c.Reply(405, "Method Not Allowed")
			return
		}
		async.Await(c, routes.QueryRow(`SELECT gw FROM lcr WHERE ? LIKE prefix||'%' ORDER BY length(prefix) DESC`,
			c.Recipient().User), func(row db.Row, err error) {
			switch {
			case errors.Is(err, db.ErrNoRows):
				c.Reply(404, "No Route")
			case err != nil:
				c.Reply(503, "Routing Unavailable")
			default:
				c.Relay("sip:" + c.Recipient().User + "@" + row.String(0))
			}
		}, async.Timeout(2*time.Second))
	})
	return srv.Serve(ctx) // the worker serves other calls while a query runs
}

// A least-cost-routing proxy: each new call's number is looked up in SQLite
// (longest prefix first) without blocking the worker, and the call is sent
// to the gateway found; ACK, BYE and re-INVITEs of a call follow the
// record-routed path without a lookup. Until SIGINT or SIGTERM.
func Example_lcrProxy() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := lcrProxy(ctx, "udp:127.0.0.1:5060", "routes.db"); err != nil {
		log.Fatal(err)
	}
}
