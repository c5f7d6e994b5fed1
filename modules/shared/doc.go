// Package shared is the shared-state contract: the small interfaces through
// which features that must agree across proxy instances keep their state —
// concurrent-call counts (modules/dialog profiles), request rates
// (modules/ratelimit), digest nonce counts (modules/auth), destination state
// (modules/dispatcher) and registrar bindings (Location).
//
// Every method returns an async.Op, so a route awaits it (async.Await) and a
// timer job launches it (async.Launch): a store on the network never blocks
// a loop, and every wait is bounded by the caller's timeout. Each interface
// has an in-process implementation here (NewMemoryCounter, NewMemoryRates,
// NewMemoryNonces, NewMemoryBoard, NewMemoryLocation: one instance, ops that
// complete at once) and a Redis one in modules/shared/sharedredis (several
// instances, atomic multi-key steps as Lua scripts). sharedtest holds the
// conformance tests both pass.
//
//	counts := shared.NewMemoryCounter()      // or sharedredis.NewCounter(client, opts)
//	tr := dialog.New(dialog.Config{Counter: counts})
//
// What each user does when its store fails (times out, Redis down) is its
// own documented choice; docs/SCALING.md lists them.
package shared
