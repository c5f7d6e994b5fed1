package rtpengine

import (
	"math/bits"
	"time"

	"github.com/asyncsip/asyncsip/reactor"
)

// The life of a command on its loop: a try per instance, retransmissions
// with back-off inside a try, the answer matched by cookie, the affinity
// table kept in step.

// request is a command in flight on one loop.
type request struct {
	lc   *loopConn
	cmd  *command
	body []byte
	done func(*Response, error)

	inst       int // instance of the current try
	cookie     string
	msg        []byte
	tried      uint64 // instances tried, by index
	first      int    // the first instance tried (failover accounting)
	sentAt     time.Time
	attemptEnd time.Time
	end        time.Time
	interval   time.Duration
	timer      *reactor.Timer
	over       bool
}

func (r *request) start() {
	now := r.lc.l.Now()
	r.end = now.Add(r.lc.c.cfg.Timeout)
	r.first = -1
	r.next(now)
}

// next starts a try on the next instance, or fails the request.
func (r *request) next(now time.Time) {
	c := r.lc.c
	i := c.choose(r, now)
	if i < 0 || !now.Before(r.end) {
		r.finish(nil, timeoutError(r.cmd.name, c.cfg.Timeout, bits.OnesCount64(r.tried)))
		return
	}
	if r.first < 0 {
		r.first = i
	} else {
		c.inst[r.inst].stats.failovers.Add(1)
	}
	r.inst = i
	r.tried |= 1 << i
	r.cookie = r.lc.nextCookie()
	r.msg = append(append(append(r.msg[:0], r.cookie...), ' '), r.body...)
	r.lc.pending[r.cookie] = r
	in := c.inst[i]
	in.stats.requests.Add(1)
	r.sentAt = time.Now()
	r.lc.send(in, r.msg)
	r.attemptEnd = minTime(now.Add(c.cfg.TryTimeout), r.end)
	r.interval = c.cfg.Retransmit
	r.arm(now)
}

func (r *request) arm(now time.Time) {
	at := minTime(now.Add(r.interval), r.attemptEnd)
	if r.timer == nil {
		r.timer = r.lc.l.AfterFunc(at.Sub(now), r.tick)
		return
	}
	r.timer.Reset(at.Sub(now))
}

// tick retransmits, or gives up on the current instance.
func (r *request) tick() {
	if r.over {
		return
	}
	c := r.lc.c
	now := r.lc.l.Now()
	in := c.inst[r.inst]
	if !now.Before(r.attemptEnd) {
		delete(r.lc.pending, r.cookie)
		in.stats.timeouts.Add(1)
		c.markDown(in, now)
		if o := c.cfg.Observer; o != nil {
			o.CommandFinished(in.name, r.cmd.name, KindTimeout, time.Since(r.sentAt))
		}
		if r.cmd.failover() && now.Before(r.end) {
			r.next(now)
			return
		}
		r.finish(nil, timeoutError(r.cmd.name, c.cfg.Timeout, bits.OnesCount64(r.tried)))
		return
	}
	in.stats.retransmits.Add(1)
	if o := c.cfg.Observer; o != nil {
		o.Retransmitted(in.name, r.cmd.name)
	}
	r.lc.send(in, r.msg)
	r.interval *= 2
	r.arm(now)
}

// reply completes the request with an instance's answer.
func (r *request) reply(dict map[string]any) {
	c := r.lc.c
	in := c.inst[r.inst]
	lat := time.Since(r.sentAt)
	c.markUp(in)
	resp, err := response(r.cmd.name, in.name, dict)
	kind := KindOK
	switch {
	case err == nil:
		resp.Latency = lat
		in.stats.ok.Add(1)
		in.stats.latency.observe(lat)
	case isRefusal(err):
		kind = KindRefused
		in.stats.refused.Add(1)
	default:
		kind = KindBadReply
		in.stats.badReplies.Add(1)
	}
	if o := c.cfg.Observer; o != nil {
		o.CommandFinished(in.name, r.cmd.name, kind, lat)
	}
	r.bind(err)
	r.finish(resp, err)
}

// bind keeps the affinity table in step with the command's outcome.
func (r *request) bind(err error) {
	c, call := r.lc.c, r.cmd.call
	if call.CallID == "" || r.cmd.pin >= 0 {
		return
	}
	now := r.lc.l.Now()
	switch {
	case r.cmd.name == "delete" && call.ToTag == "" && call.ViaBranch == "":
		c.aff.remove(call.CallID) // the whole call is gone (or was unknown)
	case err != nil:
	case r.cmd.name == "offer":
		c.aff.set(call.CallID, r.inst, now)
	}
}

func (r *request) finish(resp *Response, err error) {
	if r.over {
		return
	}
	r.over = true
	r.lc.c.inFlight.Add(-1)
	r.timer.Stop()
	if r.cookie != "" {
		delete(r.lc.pending, r.cookie)
	}
	r.done(resp, err)
}

// cancel abandons the request (the await timed out or its context ended).
// A late reply finds no pending cookie and is dropped.
func (r *request) cancel() {
	if r.over {
		return
	}
	r.over = true
	r.lc.c.inFlight.Add(-1)
	r.timer.Stop()
	delete(r.lc.pending, r.cookie)
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}
