// Package dialog tracks the calls an asyncsip proxy record-routes — what
// the dialog modules of OpenSIPS and Kamailio do: call state, a maximum
// call duration that ends both sides with BYE, in-dialog OPTIONS pings
// that detect dead calls, profiles that count concurrent calls per value
// (per trunk, user, tenant) for limits, and events for CDRs.
//
//	tracker := dialog.New(dialog.Config{Observer: cdrs})
//	srv.SetRoutes(tracker.Routes(tm.Routes{Request: route}))
//
//	route := func(c *tm.Context) {
//		if c.InDialog() {
//			_ = c.Relay()
//			return
//		}
//		err := tracker.Track(c, dialog.Options{MaxDuration: 2 * time.Hour,
//			Profiles: []dialog.ProfileValue{{Profile: "trunk", Value: "gw1", Limit: 30}}})
//		if errors.Is(err, dialog.ErrLimit) {
//			_ = c.Reply(486, "Busy Here")
//			return
//		}
//		…
//	}
//
// # Hooks
//
// Tracking is opt-in per call: Track, from the request route of an initial
// INVITE that the proxy relays and record-routes (tm's default). The
// tracker follows the call through the routes that Tracker.Routes wraps
// around the user's: the reply route (provisional answers with a To tag
// create early dialogs, one per fork; the first 2xx confirms the call and
// gives the dialog state of both sides, tm.Server.CallDialogs), the end
// hook (an INVITE transaction that ends without a 2xx ends the call:
// Rejected, Cancelled, NotConfirmed), and the request route of in-dialog
// requests (matched by Call-ID and tags in either direction, and only
// those that came along our signed Record-Route: tm.Context.InDialog; a
// BYE from either side ends the call; the highest CSeq of each side is
// kept for the tracker's own requests; a 2xx to a re-INVITE or UPDATE
// refreshes the remote targets). The tracker's hooks run before the
// user's. Routes replaced at run time are wrapped again; the calls live in
// the tracker and survive the swap.
//
// # Ending calls
//
// Options.MaxDuration and Options.PingInterval arm timers on the loop that
// owns the call (reactor timers; no goroutine per call). When one fires,
// or Tracker.End is called, the tracker sends a BYE to each side with
// tm.Server.Originate — through our Via, along each side's route set, with
// a CSeq above any that side sent — and the call ends at once; the BYEs'
// outcomes are counted in Stats and logged. Before the caller acknowledged
// the 2xx, the BYEs wait for its ACK (RFC 3261 §15), at most 64*T1 (32 s)
// after the 2xx.
//
// # Profiles
//
// A call counts in the profile values of Options.Profiles from Track until
// it ends, and is released exactly once (the Store's Delete is true for
// one caller only). A value's Limit is checked and counted in one atomic
// step of the Store, so concurrent calls on several loops never overshoot
// it. Profile(name).Count(value) reads a count from any goroutine.
//
// # Limits
//
// Config.MaxDialogs bounds the calls tracked at once (ErrOverloaded beyond,
// which wraps async.ErrOverloaded); a call not confirmed within
// Config.SetupBound of its last provisional answer is dropped even if tm
// never ended its transaction. See README.md for the figures.
//
// # Store
//
// Records and profile counts live behind the Store interface;
// NewMemoryStore is the in-process one, the default. A shared
// implementation lets several instances count the same profiles.
package dialog
