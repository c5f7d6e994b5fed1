package exec_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/asyncsip/asyncsip"
	"github.com/asyncsip/asyncsip/async"
	"github.com/asyncsip/asyncsip/modules/exec"
	"github.com/asyncsip/asyncsip/reactor"
	"github.com/asyncsip/asyncsip/tm"
)

// The OpenSIPS exec use case: a routing script decides where a call goes.
// The route suspends while the script runs; the worker serves other
// traffic meanwhile.
func Example_route() {
	srv, err := asyncsip.New(asyncsip.Config{Listen: []string{"udp:127.0.0.1:5060"}})
	if err != nil {
		panic(err)
	}
	scripts := exec.NewRunner(exec.Config{MaxCommands: 64})
	srv.Request(func(c *tm.Context) {
		if c.InDialog() {
			_ = c.Relay()
			return
		}
		cmd := scripts.Command("/etc/asyncsip/route.sh", c.Recipient().User)
		cmd.Timeout = time.Second
		async.Await(c, cmd, func(r exec.Result, err error) {
			switch {
			case errors.Is(err, async.ErrOverloaded):
				_ = c.Reply(503, "Busy")
			case err != nil || len(r.Lines()) == 0:
				c.Logger().Warn("route.sh failed", "err", err, "stderr", string(r.Stderr))
				_ = c.Reply(404, "Not Found")
			default:
				_ = c.Relay(r.Lines()[0])
			}
		}, async.Timeout(2*time.Second))
	})
	_ = srv.Serve(context.Background())
}

// Running a command on a loop outside any transaction, with Launch.
func ExampleCommand() {
	l, err := reactor.New(reactor.Config{})
	if err != nil {
		panic(err)
	}
	l.Start()
	defer l.Stop(context.Background())

	done := make(chan struct{})
	_ = l.Post(func() {
		cmd := exec.Command("/bin/sh", "-c", `echo gw1.example.com; echo gw2.example.com; echo "looked up $1" >&2`, "sh", "bob")
		async.Launch(l, cmd, func(r exec.Result, err error) {
			fmt.Println(r.Lines(), err)
			fmt.Print(string(r.Stderr))
			close(done)
		})
	})
	<-done
	// Output:
	// [gw1.example.com gw2.example.com] <nil>
	// looked up bob
}

// Stdin, a failing command and a kill timeout: the Result comes with the
// error, so a route sees what the command printed before it failed.
func ExampleCmd() {
	l, err := reactor.New(reactor.Config{})
	if err != nil {
		panic(err)
	}
	l.Start()
	defer l.Stop(context.Background())
	r := exec.NewRunner(exec.Config{})

	run := func(cmd *exec.Cmd) {
		done := make(chan struct{})
		_ = l.Post(func() {
			async.Launch(l, cmd, func(res exec.Result, err error) {
				fmt.Printf("%q exit=%d kind=%v", res.Stdout, res.ExitCode, exec.KindOf(err))
				if res.Signal != 0 {
					fmt.Printf(" signal=%q", res.Signal)
				}
				fmt.Println()
				close(done)
			})
		})
		<-done
	}

	upper := r.Command("tr", "a-z", "A-Z")
	upper.Stdin = []byte("sip:bob@example.com\n")
	run(upper)

	run(r.Command("/bin/sh", "-c", "echo partial; exit 3"))

	slow := r.Command("/bin/sh", "-c", "echo started; sleep 10")
	slow.Timeout = 100 * time.Millisecond
	run(slow)
	// Output:
	// "SIP:BOB@EXAMPLE.COM\n" exit=0 kind=ok
	// "partial\n" exit=3 kind=exit
	// "started\n" exit=-1 kind=timeout signal="terminated"
}
