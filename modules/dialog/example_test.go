package dialog_test

import (
	"errors"
	"log/slog"
	"time"

	"github.com/asyncsip/asyncsip"
	"github.com/asyncsip/asyncsip/modules/dialog"
	"github.com/asyncsip/asyncsip/tm"
)

// A proxy that tracks every call it record-routes: at most 30 concurrent
// calls per trunk (486 beyond, decided atomically across loops), at most
// 2 hours per call (then a BYE to each side), an in-dialog OPTIONS every
// 30 s that ends a call whose side stopped answering, and a CDR line per
// call.
func Example() {
	cdr := dialog.ObserverFunc(func(e dialog.Event) {
		if e.Kind == dialog.TerminatedEvent { // runs on a loop: hand off, never block
			slog.Info("cdr", "call_id", e.Record.CallID, "reason", e.Reason,
				"code", e.Code, "duration", e.Duration)
		}
	})
	tracker := dialog.New(dialog.Config{MaxDialogs: 50_000, Observer: cdr})

	srv, err := asyncsip.New(asyncsip.Config{Listen: []string{"udp:0.0.0.0:5060"}})
	if err != nil {
		panic(err)
	}
	route := func(c *tm.Context) {
		if c.InDialog() { // ACK, BYE, re-INVITE: the tracker sees them before this route
			_ = c.Relay()
			return
		}
		const trunk = "gw1"
		err := tracker.Track(c, dialog.Options{
			MaxDuration:  2 * time.Hour,
			PingInterval: 30 * time.Second,
			Profiles: []dialog.ProfileValue{
				{Profile: "trunk", Value: trunk, Limit: 30},
				{Profile: "caller", Value: c.Req().From().Address.User},
			},
		})
		switch {
		case errors.Is(err, dialog.ErrLimit):
			_ = c.Reply(486, "Busy Here") // the trunk is full
		case err != nil:
			_ = c.Reply(503, "Service Unavailable") // over MaxDialogs
		default:
			_ = c.Relay("sip:" + c.Recipient().User + "@192.0.2.10")
		}
	}
	// The tracker's hooks wrap the routes; wrap again on every swap
	// (srv.SetRoutes at run time): the calls live in the tracker.
	srv.SetRoutes(tracker.Routes(tm.Routes{Request: route}))

	// Anywhere, any goroutine: how busy is the trunk?
	_ = tracker.Profile("trunk").Count("gw1")
}
