package rtpengine

import (
	"math"
	mrand "math/rand/v2"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/asyncsip/asyncsip/async"
	"github.com/asyncsip/asyncsip/reactor"
)

// Instances: their health, and the choice of an instance for a command.

// instance is one rtpengine and its health and counters.
type instance struct {
	idx    int
	addr   netip.AddrPort
	name   string
	weight int

	downUntil atomic.Int64 // unix nanoseconds; 0: up
	stats     instanceStats
}

func (in *instance) usable(now time.Time) bool {
	d := in.downUntil.Load()
	return d == 0 || now.UnixNano() >= d
}

// markDown takes in out of the choice for DisableFor; it counts (and tells
// the Observer) when in was in the choice: up, or back after DisableFor.
func (c *Client) markDown(in *instance, now time.Time) {
	if old := in.downUntil.Swap(now.Add(c.cfg.DisableFor).UnixNano()); old == 0 || old <= now.UnixNano() {
		in.stats.downs.Add(1)
		if o := c.cfg.Observer; o != nil {
			o.InstanceState(in.name, false)
		}
	}
}

func (c *Client) markUp(in *instance) {
	if in.downUntil.Swap(0) != 0 {
		if o := c.cfg.Observer; o != nil {
			o.InstanceState(in.name, true)
		}
	}
}

// choose picks the instance for the next try of r: its pinned one; the
// call's remembered instance; else a usable untried one by weight
// (rendezvous hashing of the Call-ID, random for commands without one);
// else, when none is usable, any untried one (a dead cluster is retried
// rather than refused). -1: nothing left to try.
func (c *Client) choose(r *request, now time.Time) int {
	cmd := r.cmd
	if cmd.pin >= 0 {
		if r.tried != 0 {
			return -1
		}
		return cmd.pin
	}
	if r.tried == 0 && cmd.call.CallID != "" {
		if i, ok := c.aff.get(cmd.call.CallID, now); ok && i < len(c.inst) {
			if !cmd.failover() || c.inst[i].usable(now) {
				return i
			}
			c.inst[i].stats.failovers.Add(1) // the call moves off a down instance
		}
	}
	if i := c.weighted(cmd.call.CallID, r.tried, now, true); i >= 0 {
		return i
	}
	return c.weighted(cmd.call.CallID, r.tried, now, false)
}

func (c *Client) weighted(callID string, tried uint64, now time.Time, healthy bool) int {
	eligible := func(in *instance) bool {
		return tried&(1<<in.idx) == 0 && (!healthy || in.usable(now))
	}
	if callID != "" {
		return c.rendezvous(callID, eligible)
	}
	total := 0
	for _, in := range c.inst {
		if eligible(in) {
			total += in.weight
		}
	}
	if total == 0 {
		return -1
	}
	n := mrand.IntN(total)
	for _, in := range c.inst {
		if eligible(in) {
			if n < in.weight {
				return in.idx
			}
			n -= in.weight
		}
	}
	return -1
}

// rendezvous picks an instance for a call by weighted rendezvous hashing
// of its Call-ID: each instance scores weight / -ln(u), u a hash of the
// Call-ID and the instance's address in (0,1), and the highest wins. The
// choice follows the weights, and it is the same in every process that
// has the same instances and sees the same ones healthy: a proxy that did
// not see the offer (another instance of a cluster, or this one after a
// restart) still finds the call's rtpengine. Losing an instance moves only
// its calls.
func (c *Client) rendezvous(callID string, eligible func(*instance) bool) int {
	best, bestScore := -1, 0.0
	for _, in := range c.inst {
		if !eligible(in) {
			continue
		}
		h := fnv64a(fnv64a(fnvOffset, callID)*fnvPrime, in.name) // the 0 byte between: a multiply
		u := (float64(h>>11) + 0.5) / (1 << 53)
		score := float64(in.weight) / -math.Log(u)
		if best < 0 || score > bestScore {
			best, bestScore = in.idx, score
		}
	}
	return best
}

const (
	fnvOffset = 14695981039346656037
	fnvPrime  = 1099511628211
)

// fnv64a continues an FNV-1a hash over s: stable across processes (unlike
// hash/maphash) and free of allocations (unlike hash/fnv's interface).
func fnv64a(h uint64, s string) uint64 {
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= fnvPrime
	}
	return h
}

// StartHealth pings every instance every Config.PingInterval from the
// loops of g, marking each up or down by its answer; a down instance comes
// back into the choice as soon as it answers. Stop the returned job to end
// it.
func (c *Client) StartHealth(g *reactor.Group) (*reactor.Job, error) {
	return g.Every(c.cfg.PingInterval, func(l *reactor.Loop) {
		for i := range c.inst {
			async.Launch(l, c.Ping(i), func(time.Duration, error) {}, async.Timeout(c.cfg.TryTimeout+time.Second))
		}
	}, reactor.Skip)
}
