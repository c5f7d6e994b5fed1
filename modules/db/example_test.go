package db_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/asyncsip/asyncsip/async"
	"github.com/asyncsip/asyncsip/modules/db"
	_ "github.com/asyncsip/asyncsip/modules/db/sqlite" // the driver these examples open
	"github.com/asyncsip/asyncsip/reactor"
)

// onWorker runs fn on a fresh reactor loop, as a route runs on a worker,
// and waits until fn calls finish: a stand-in for the server in these
// examples. In a real route, use async.Await(c, op, resume) with the
// *tm.Context instead of async.Launch.
func onWorker(fn func(l *reactor.Loop, finish func())) {
	l, err := reactor.New(reactor.Config{})
	if err != nil {
		panic(err)
	}
	l.Start()
	defer l.Stop(context.Background())
	done := make(chan struct{})
	_ = l.Post(func() { fn(l, func() { close(done) }) })
	<-done
}

// openRoutes opens an in-memory SQLite database with a small routing table,
// using the synchronous helpers meant for start-up work. The program
// imports the driver's package, modules/db/sqlite, for its side effect.
func openRoutes() *db.Handle {
	h, err := db.Open(db.DriverSQLite, ":memory:", db.Timeout(2*time.Second))
	if err != nil {
		panic(err)
	}
	_, err = h.ExecContext(context.Background(), `
		CREATE TABLE routes (username TEXT PRIMARY KEY, target TEXT NOT NULL, weight INTEGER, note TEXT);
		INSERT INTO routes VALUES ('bob', '127.0.0.1:5070', 10, NULL), ('carol', '127.0.0.1:5080', 20, 'backup');`)
	if err != nil {
		panic(err)
	}
	return h
}

// A route looks the callee up and relays, answers 404 for an unknown user
// (ErrNoRows: an empty result, not a failure) and 503 when the lookup
// fails. The worker serves other traffic while the query runs.
func Example() {
	h := openRoutes()
	defer h.Close()

	route := func(l *reactor.Loop, user string, next func()) {
		async.Launch(l, h.QueryRow(`SELECT target FROM routes WHERE username = ?`, user),
			func(row db.Row, err error) { // the resume: on the same loop
				switch {
				case errors.Is(err, db.ErrNoRows):
					fmt.Println(user, "-> 404 Not Found")
				case err != nil:
					fmt.Println(user, "-> 503:", err)
				default:
					fmt.Println(user, "-> relay to sip:"+user+"@"+row.String(0))
				}
				next()
			}, async.Timeout(time.Second))
	}
	onWorker(func(l *reactor.Loop, finish func()) {
		route(l, "bob", func() { route(l, "mallory", finish) })
	})
	// Output:
	// bob -> relay to sip:bob@127.0.0.1:5070
	// mallory -> 404 Not Found
}

// Query reads every row; columns are reached by index or by name, and NULL
// reads as the zero value (IsNull tells).
func ExampleHandle_Query() {
	h := openRoutes()
	defer h.Close()
	onWorker(func(l *reactor.Loop, finish func()) {
		async.Launch(l, h.Query(`SELECT username, target, weight, note FROM routes ORDER BY weight`),
			func(rows *db.Rows, err error) {
				defer finish()
				if err != nil {
					fmt.Println(err)
					return
				}
				for _, r := range rows.All() {
					fmt.Printf("%s %s weight=%d note=%q null=%v\n",
						r.String(0), r.Named("target").String(), r.Int(2), r.String(3), r.IsNull(3))
				}
			})
	})
	// Output:
	// bob 127.0.0.1:5070 weight=10 note="" null=true
	// carol 127.0.0.1:5080 weight=20 note="backup" null=false
}

// Scan copies a row into Go values; a pointer to a pointer takes NULL as
// nil.
func ExampleRow_Scan() {
	h := openRoutes()
	defer h.Close()
	onWorker(func(l *reactor.Loop, finish func()) {
		async.Launch(l, h.QueryRow(`SELECT target, weight, note FROM routes WHERE username = ?`, "bob"),
			func(row db.Row, err error) {
				defer finish()
				var (
					target string
					weight int
					note   *string
				)
				if err == nil {
					err = row.Scan(&target, &weight, &note)
				}
				fmt.Println(target, weight, note == nil, err)
			})
	})
	// Output: 127.0.0.1:5070 10 true <nil>
}

// Exec changes rows and reports how many.
func ExampleHandle_Exec() {
	h := openRoutes()
	defer h.Close()
	onWorker(func(l *reactor.Loop, finish func()) {
		async.Launch(l, h.Exec(`UPDATE routes SET weight = weight + ? WHERE weight < ?`, 5, 100),
			func(res db.Result, err error) {
				defer finish()
				fmt.Println(res.RowsAffected, err)
			})
	})
	// Output: 2 <nil>
}

// A query that runs past the handle's Timeout is interrupted in the driver
// and the resume gets an error wrapping async.ErrTimeout.
func ExampleTimeout() {
	h, _ := db.Open(db.DriverSQLite, ":memory:", db.Timeout(50*time.Millisecond))
	defer h.Close()
	onWorker(func(l *reactor.Loop, finish func()) {
		slow := `WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x < 1e12) SELECT count(*) FROM c`
		async.Launch(l, h.QueryRow(slow), func(_ db.Row, err error) {
			defer finish()
			fmt.Println(errors.Is(err, async.ErrTimeout))
		})
	})
	// Output: true
}
