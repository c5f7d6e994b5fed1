package main

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/asyncsip/asyncsip/async"
	"github.com/asyncsip/asyncsip/modules/db"
	"github.com/asyncsip/asyncsip/modules/rest"
	"github.com/asyncsip/asyncsip/tm"
)

// Scenarios lists the -scenario values, in the order the driver runs them.
var Scenarios = []string{"relay", "sleep", "sleep-blocking", "rest", "db"}

// ErrUnknownScenario is returned for a -scenario that is not in Scenarios.
var ErrUnknownScenario = errors.New("benchproxy: unknown scenario")

// Delay is what the sleep scenarios wait before relaying, and what the
// delay HTTP server of the rest scenario is expected to take.
const Delay = 20 * time.Millisecond

// options are the scenario inputs taken from the command line.
type options struct {
	scenario string
	target   string       // next hop, "host:port"
	restURL  string       // rest: GET it; the body is the next hop "host:port"
	rest     *rest.Client // rest: modules/rest client
	db       *db.Handle   // db: modules/db handle on the routes table
	dbQuery  string
}

// request builds the request route of a scenario. In-dialog requests (ACK,
// BYE) are loose-routed by Record-Route in every scenario; only the initial
// request pays for the lookup, as in a real routing proxy.
func request(o options) (func(c *tm.Context), error) {
	dest := "sip:" + o.target
	relayTo := func(c *tm.Context, d string) {
		if err := c.SetDestination(d); err != nil {
			_ = c.Reply(500, "Bad Destination")
			return
		}
		_ = c.Relay()
	}
	var initial func(c *tm.Context)
	switch o.scenario {
	case "relay":
		initial = func(c *tm.Context) { relayTo(c, dest) }
	case "sleep":
		initial = func(c *tm.Context) {
			async.Await(c, async.Sleep(Delay), func(struct{}, error) { relayTo(c, dest) })
		}
	case "sleep-blocking":
		// The anti-pattern async removes: the worker loop sleeps.
		initial = func(c *tm.Context) { time.Sleep(Delay); relayTo(c, dest) }
	case "rest":
		if o.restURL == "" || o.rest == nil {
			return nil, fmt.Errorf("benchproxy: scenario rest needs -rest-url")
		}
		sep := "?"
		if strings.Contains(o.restURL, "?") {
			sep = "&"
		}
		initial = func(c *tm.Context) {
			u := o.restURL + sep + "user=" + url.QueryEscape(c.Recipient().User)
			async.Await(c, o.rest.Get(u), func(r rest.Result, err error) {
				if err != nil || r.Status != 200 {
					_ = c.Reply(503, "Routing Unavailable")
					return
				}
				relayTo(c, "sip:"+strings.TrimSpace(r.Text()))
			}, async.Timeout(2*time.Second))
		}
	case "db":
		if o.db == nil {
			return nil, fmt.Errorf("benchproxy: scenario db needs -db")
		}
		initial = func(c *tm.Context) {
			async.Await(c, o.db.QueryRow(o.dbQuery, c.Recipient().User), func(row db.Row, err error) {
				switch {
				case errors.Is(err, db.ErrNoRows):
					_ = c.Reply(404, "Not Found")
				case err != nil:
					_ = c.Reply(503, "Routing Unavailable")
				default:
					relayTo(c, "sip:"+row.String(0))
				}
			}, async.Timeout(2*time.Second))
		}
	default:
		return nil, fmt.Errorf("%w %q (want one of %s)", ErrUnknownScenario, o.scenario, strings.Join(Scenarios, ", "))
	}
	return func(c *tm.Context) {
		if c.InDialog() {
			_ = c.Relay()
			return
		}
		initial(c)
	}, nil
}
