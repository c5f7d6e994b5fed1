package tm

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/asyncsip/asyncsip/async"
	"github.com/asyncsip/asyncsip/reactor"
)

// fakeLookup records the URIs looked up and completes them when told.
type fakeLookup struct {
	asked     []string
	done      func(NextHop, error)
	cancelled int
}

func (f *fakeLookup) lookup(uri string) async.Op[NextHop] {
	f.asked = append(f.asked, uri)
	return async.OpFunc[NextHop](func(_ *reactor.Loop, done func(NextHop, error)) func() {
		f.done = done
		return func() { f.cancelled++ }
	})
}

// A relay to a host name suspends the route on the lookup, then sends to
// the address and transport it found.
func TestRelaySuspendsOnLookup(t *testing.T) {
	f := &fakeLookup{}
	r := newRig(t, Config{Lookup: f.lookup}, Routes{Request: func(c *Context) {
		require.NoError(t, c.Relay("sip:bob@gw.example"))
	}})
	r.recv(uacAddr, invite("lk-1", "z9hG4bK-lk1"))
	r.expect("127.0.0.1:5061 100")
	assert.Equal(t, []string{"sip:gw.example"}, f.asked)
	assert.EqualValues(t, 1, r.s.Stats().Suspended, "the route waits for the lookup")
	f.done(NextHop{Addr: netip.MustParseAddrPort("127.0.0.1:5063"), Transport: "UDP"}, nil)
	r.run()
	out := r.expect("127.0.0.1:5063 INVITE")
	r.recvMsg(uas2Addr, respond(out[0].msg, 200, "b1"))
	r.expect("127.0.0.1:5061 200")
}

// A lookup answered at once (a cache hit) relays inline, without suspending.
func TestRelayLookupHitIsInline(t *testing.T) {
	hop := NextHop{Addr: netip.MustParseAddrPort("127.0.0.1:5062")}
	r := newRig(t, Config{Lookup: func(string) async.Op[NextHop] { return async.Done(hop, nil) }},
		Routes{Request: func(c *Context) { require.NoError(t, c.Relay("sip:bob@gw.example:5070")) }})
	r.recv(uacAddr, request("MESSAGE", "sip:bob@127.0.0.1:5062", "lk-2", "z9hG4bK-lk2", 1, ""))
	r.expect("127.0.0.1:5062 MESSAGE")
	assert.EqualValues(t, 0, r.s.Stats().Suspended)
}

// A name that does not exist: 404 with a reason; any other failure 503.
func TestRelayLookupFailure(t *testing.T) {
	for _, tc := range []struct {
		err    error
		status string
		reason string
	}{
		{fmt.Errorf("dns: gw.example: %w", ErrUnresolvable), "127.0.0.1:5061 404", "Not Found (next-hop host does not resolve)"},
		{fmt.Errorf("dns: timeout: %w", async.ErrTimeout), "127.0.0.1:5061 503", "Service Unavailable (no route to the next hop)"},
	} {
		r := newRig(t, Config{Lookup: func(string) async.Op[NextHop] { return async.Done(NextHop{}, tc.err) }},
			Routes{Request: func(c *Context) { _ = c.Relay("sip:bob@gw.example") }})
		r.recv(uacAddr, request("MESSAGE", "sip:bob@127.0.0.1:5062", "lk-3", "z9hG4bK-lk3", 1, ""))
		out := r.expect(tc.status)
		res, ok := out[0].msg.(interface{ StartLine() string })
		require.True(t, ok)
		assert.Contains(t, res.StartLine(), tc.reason)
	}
}

// A CANCEL during the lookup answers 487 at once and cancels the lookup.
func TestCancelDuringLookup(t *testing.T) {
	f := &fakeLookup{}
	r := newRig(t, Config{Lookup: f.lookup}, Routes{Request: func(c *Context) { _ = c.Relay("sip:bob@gw.example") }})
	r.recv(uacAddr, invite("lk-4", "z9hG4bK-lk4"))
	r.expect("127.0.0.1:5061 100")
	r.recv(uacAddr, request("CANCEL", "sip:bob@127.0.0.1:5062", "lk-4", "z9hG4bK-lk4", 1, ""))
	r.expect("127.0.0.1:5061 200", "127.0.0.1:5061 487")
	assert.Equal(t, 1, f.cancelled)
	f.done(NextHop{Addr: netip.MustParseAddrPort("127.0.0.1:5063")}, nil)
	r.run()
	r.expect()
}
