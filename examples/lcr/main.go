// Command lcr is a least-cost-routing proxy: each INVITE's number is looked
// up in a routes table (longest prefix first, then cost) with an async
// query, sent to the cheapest gateway, and failed over to the next one on
// 5xx or 408. The DSN decides the database: a file path is SQLite,
// postgres://… is PostgreSQL.
//
//	go run ./examples/lcr -db lcr.db -listen udp:127.0.0.1:5060
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/asyncsip/asyncsip"
	"github.com/asyncsip/asyncsip/async"
	"github.com/asyncsip/asyncsip/modules/db"
	_ "github.com/asyncsip/asyncsip/modules/db/postgres"
	_ "github.com/asyncsip/asyncsip/modules/db/sqlite"
	"github.com/asyncsip/asyncsip/tm"
)

// Schema creates the routes table; the seed rows make the example useful
// at once (edit them with any SQL client).
const Schema = `CREATE TABLE IF NOT EXISTS routes (
	prefix  TEXT NOT NULL,
	gateway TEXT NOT NULL,
	cost    INTEGER NOT NULL DEFAULT 0,
	PRIMARY KEY (prefix, gateway))`

// Routes returns the LCR routes over the database h; pg selects $n
// placeholders for PostgreSQL.
func Routes(h *db.Handle, pg bool) tm.Routes {
	query := `SELECT gateway FROM routes WHERE ? LIKE prefix || '%' ORDER BY length(prefix) DESC, cost LIMIT 5`
	if pg {
		query = strings.Replace(query, "?", "$1", 1)
	}
	var next func(c *tm.Context, gws []string)
	next = func(c *tm.Context, gws []string) {
		for len(gws) > 0 {
			gw := gws[0]
			gws = gws[1:]
			c.Set("next", gws)
			if err := c.Relay("sip:" + c.Recipient().User + "@" + gw); err == nil {
				return
			}
		}
		_ = c.Reply(503, "No Gateway Available")
	}
	return tm.Routes{
		Request: func(c *tm.Context) {
			if c.InDialog() {
				_ = c.Relay()
				return
			}
			if c.Method() != "INVITE" {
				_ = c.Reply(405, "Method Not Allowed")
				return
			}
			async.Await(c, h.Query(query, c.Recipient().User), func(rows *db.Rows, err error) {
				switch {
				case err != nil:
					_ = c.Reply(503, "Routing Unavailable")
				case rows.Len() == 0:
					_ = c.Reply(404, "No Route")
				default:
					var gws []string
					for _, r := range rows.All() {
						gws = append(gws, r.String(0))
					}
					next(c, gws)
				}
			}, async.Timeout(2*time.Second), async.Name("lcr.lookup"))
		},
		Failure: func(c *tm.Context) {
			code := c.Resp.StatusCode
			gws, _ := tm.Value[[]string](c, "next")
			if !c.Cancelled() && (code >= 500 || code == 408) && len(gws) > 0 {
				next(c, gws)
			}
		},
	}
}

func main() {
	dsn := flag.String("db", "lcr.db", "SQLite file, or postgres://… for PostgreSQL")
	listen := flag.String("listen", "udp:127.0.0.1:5060", "listen address")
	flag.Parse()
	pg := strings.HasPrefix(*dsn, "postgres")
	driver := db.DriverSQLite
	if pg {
		driver = db.DriverPostgres
	}
	h, err := db.Open(driver, *dsn)
	if err != nil {
		log.Fatal(err)
	}
	defer h.Close()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if _, err := h.ExecContext(ctx, Schema); err != nil {
		log.Fatal(err)
	}
	srv, err := asyncsip.New(asyncsip.Config{Listen: []string{*listen}})
	if err != nil {
		log.Fatal(err)
	}
	srv.SetRoutes(Routes(h, pg))
	fmt.Println("lcr proxy on", *listen, "routes from", *dsn)
	if err := srv.Serve(ctx); err != nil {
		log.Fatal(err)
	}
}
