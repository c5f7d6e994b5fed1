package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/asyncsip/asyncsip/async"
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
	target   string // next hop, "host:port"
	restURL  string // rest: GET it; the body is the next hop "host:port"
	db       *sql.DB
	dbQuery  string
	pool     *async.Pool // rest and db calls run here
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
		if o.restURL == "" {
			return nil, fmt.Errorf("benchproxy: scenario rest needs -rest-url")
		}
		get := restGet(o)
		initial = func(c *tm.Context) {
			async.Await(c, get(c.Req.Recipient.User), func(hop string, err error) {
				if err != nil {
					_ = c.Reply(503, "Routing Unavailable")
					return
				}
				relayTo(c, "sip:"+hop)
			}, async.Timeout(2*time.Second))
		}
	case "db":
		if o.db == nil {
			return nil, fmt.Errorf("benchproxy: scenario db needs -db")
		}
		lookup := dbLookup(o)
		initial = func(c *tm.Context) {
			async.Await(c, lookup(c.Req.Recipient.User), func(hop string, err error) {
				switch {
				case errors.Is(err, sql.ErrNoRows):
					_ = c.Reply(404, "Not Found")
				case err != nil:
					_ = c.Reply(503, "Routing Unavailable")
				default:
					relayTo(c, "sip:"+hop)
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

// restGet returns the op of the rest scenario: GET restURL?user=U and take
// the body as the next hop. It runs net/http on the async pool.
func restGet(o options) func(user string) async.Op[string] {
	client := &http.Client{Transport: &http.Transport{
		MaxIdleConns: 512, MaxIdleConnsPerHost: 512, IdleConnTimeout: 30 * time.Second,
	}, Timeout: 2 * time.Second}
	sep := "?"
	if strings.Contains(o.restURL, "?") {
		sep = "&"
	}
	return func(user string) async.Op[string] {
		u := o.restURL + sep + "user=" + url.QueryEscape(user)
		return async.Blocking(func(ctx context.Context) (string, error) {
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
			if err != nil {
				return "", fmt.Errorf("rest: %w", err)
			}
			resp, err := client.Do(req)
			if err != nil {
				return "", fmt.Errorf("rest: %w", err)
			}
			defer resp.Body.Close()
			b, err := io.ReadAll(io.LimitReader(resp.Body, 1024))
			if err != nil {
				return "", fmt.Errorf("rest: body: %w", err)
			}
			if resp.StatusCode != http.StatusOK {
				return "", fmt.Errorf("rest: status %d", resp.StatusCode)
			}
			return strings.TrimSpace(string(b)), nil
		}, async.OnPool(o.pool), async.Name("rest"))
	}
}

// dbLookup returns the op of the db scenario: the routes row of the user.
func dbLookup(o options) func(user string) async.Op[string] {
	return func(user string) async.Op[string] {
		return async.Blocking(func(ctx context.Context) (string, error) {
			var hop string
			if err := o.db.QueryRowContext(ctx, o.dbQuery, user).Scan(&hop); err != nil {
				return "", fmt.Errorf("db: %w", err)
			}
			return hop, nil
		}, async.OnPool(o.pool), async.Name("db"))
	}
}
