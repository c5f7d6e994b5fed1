package tm

import (
	"errors"
	"fmt"
)

// How a failed Relay is answered.
//
// Relay never answers the request itself when it returns an error: nothing
// was sent, and the route decides (try another target, reply its own code,
// or do nothing). A request route that does nothing after the failure —
// it neither replies, relays again, forwards nor drops — gets the answer
// that fits the last failure (relayAnswer), not the generic AbandonCode.
// So `_ = c.Relay()` is correct user code, and so is a loop over gateways
// that stops at the first Relay that returns nil. A failure route that
// does nothing sends the best response upstream, as always.

// errToSelf: the request carries no Route and its Request-URI (and no
// destination) names this proxy — typically an ACK or BYE that a UA sent
// to the proxy's own address instead of along the Record-Route.
var errToSelf = errors.New("request addressed to this proxy, no Route")

// relayFailed notes err as the outcome of a Relay that sent nothing and
// returns it.
func (c *Context) relayFailed(err error) error {
	c.relayErr = err
	return err
}

// relayAnswer returns the status and reason that answer a request whose
// last Relay failed with err. The reason says why, so that a caller (or an
// operator reading a trace) can tell a self-addressed request from an
// unresolvable host or a bug in a route.
func (c *Context) relayAnswer(err error) (int, string) {
	switch {
	case errors.Is(err, ErrCancelled):
		return 487, "Request Terminated"
	case errors.Is(err, ErrRouteNotAllowed):
		return 403, "Route Not Allowed"
	case errors.Is(err, ErrMaxBreadth):
		return 440, "Max-Breadth Exceeded"
	case errors.Is(err, errToSelf):
		if c.toTagged() {
			return 481, "Call/Transaction Does Not Exist (request addressed to this proxy, no Route)"
		}
		return 404, "Not Found (request addressed to this proxy, no Route)"
	case errors.Is(err, ErrLoop):
		return 482, "Loop Detected (next hop is this proxy)"
	case errors.Is(err, ErrUnresolvable):
		return 404, "Not Found (next-hop host does not resolve)"
	case errors.Is(err, ErrNoRoute):
		return 503, "Service Unavailable (no route to the next hop)"
	case errors.Is(err, ErrBadTarget), errors.Is(err, ErrInjection), errors.Is(err, errBranchDropped):
		return 500, "Server Internal Error (route produced an unusable request)"
	}
	return 503, "Service Unavailable"
}

// errBranchDropped: the branch route dropped every branch.
var errBranchDropped = errors.New("tm: branch dropped by the branch route")

// loopError is the error for a next hop that is this proxy: errToSelf when
// the Request-URI named us and nothing else chose the hop.
func loopError(addr fmt.Stringer, fromRURI bool) error {
	if fromRURI {
		return fmt.Errorf("%w: %w (%s)", ErrLoop, errToSelf, addr)
	}
	return fmt.Errorf("%w: next hop %s is this proxy", ErrLoop, addr)
}
