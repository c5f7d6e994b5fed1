package rest_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"time"

	"github.com/asyncsip/asyncsip/async"
	"github.com/asyncsip/asyncsip/modules/rest"
	"github.com/asyncsip/asyncsip/reactor"
	"github.com/asyncsip/asyncsip/tm"
)

// A request route that asks a routing service where to send a call, and
// relays there. The worker loop serves other traffic during the lookup.
func Example_route() {
	client, err := rest.NewClient(rest.Config{
		BaseURL: "http://127.0.0.1:8080/api/",
		Timeout: time.Second,
	})
	if err != nil {
		panic(err)
	}
	route := func(c *tm.Context) {
		if c.InDialog() {
			c.Relay()
			return
		}
		user := c.Recipient().User
		async.Await(c, client.Get("target?user="+url.QueryEscape(user)), func(r rest.Result, err error) {
			switch {
			case errors.Is(err, async.ErrOverloaded):
				c.Reply(503, "Busy") // MaxConcurrent requests already running
			case err != nil: // refused, timeout, ...: rest.KindOf(err) says which
				c.Reply(503, "Routing unavailable")
			case r.Status == http.StatusNotFound:
				c.Reply(404, "Not Found")
			case !r.OK():
				c.Reply(500, "Routing error")
			default:
				c.Relay("sip:" + user + "@" + r.Text())
			}
		})
	}
	_ = route // srv.Request(route)
}

// JSON in both directions: PostJSON encodes the request, JSON decodes the
// answer into a Go value on the client's worker, off the loop.
func ExampleJSON() {
	type query struct {
		From, To string
	}
	type verdict struct {
		Score int  `json:"score"`
		Block bool `json:"block"`
	}
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `{"score": 87, "block": true}`)
	}))
	defer ts.Close()
	client, _ := rest.NewClient(rest.Config{BaseURL: ts.URL})
	defer client.Close(context.Background())

	op := rest.JSON[verdict](client.PostJSON("/fraud/score", query{From: "alice", To: "+44123"}))
	v, err := runOnLoop(op)
	fmt.Println(v.Score, v.Block, err)
	// Output: 87 true <nil>
}

// Errors are sentinels a route tests with errors.Is, or classifies with
// KindOf for a switch or a metric label.
func ExampleKindOf() {
	ln := httptest.NewServer(http.NotFoundHandler())
	addr := ln.Listener.Addr().String()
	ln.Close() // nothing listens there any more

	client, _ := rest.NewClient(rest.Config{})
	defer client.Close(context.Background())
	_, err := runOnLoop(client.Get("http://" + addr + "/"))
	fmt.Println(errors.Is(err, rest.ErrConnRefused), rest.KindOf(err))
	_, err = runOnLoop(client.Get("ftp://" + addr + "/"))
	fmt.Println(errors.Is(err, rest.ErrBadURL), rest.KindOf(err))
	// Output:
	// true refused
	// true bad_url
}

// runOnLoop runs op on a fresh loop, as a route's Await would, and waits
// for its result (examples have no server; routes never wait like this).
func runOnLoop[T any](op async.Op[T]) (T, error) {
	l, err := reactor.New(reactor.Config{})
	if err != nil {
		var zero T
		return zero, err
	}
	l.Start()
	defer l.Stop(context.Background())
	type result struct {
		v   T
		err error
	}
	ch := make(chan result, 1)
	l.Post(func() { async.Launch(l, op, func(v T, err error) { ch <- result{v, err} }) })
	r := <-ch
	return r.v, r.err
}
