package tm

// 100 Trying for INVITE (RFC 3261 §16.2, §17.2.1).
//
// tm does not answer 100 the moment an INVITE arrives: the route has not
// run yet, and a route that drops the request (a scanner) must leave the
// sender with nothing, while a route that answers at once (401, 404) needs
// no 100 in front of its final response. The 100 goes out when the route
// relays (the next hop may take long) or suspends (an async op may). The
// request route itself runs synchronously on the loop and ends in a reply,
// a relay, a suspension or a drop, so §17.2.1's bound ("if the TU will not
// generate a provisional or final response within 200 ms") is met without
// a timer: the only ways to take longer are the two that send the 100.

// sendTrying sends 100 Trying for an INVITE that has sent nothing yet.
func (t *serverTx) sendTrying() {
	if !t.invite || t.state != stProceeding || t.last != nil {
		return
	}
	if c := t.ctx; t.req == nil && c != nil && c.lazy() {
		// Not materialised (lazy.go): the 100 from the index.
		if wire, ok := appendIndexedResponse(t.ls.out[:0], c.index(), c.src, 100, "Trying", ""); ok {
			t.ls.out = wire
			t.respondWire(100, wire)
			return
		}
		c.materialise()
	}
	if t.req == nil {
		return
	}
	t.respond(t.s.makeResponse(t.req, 100, "Trying", ""))
}
