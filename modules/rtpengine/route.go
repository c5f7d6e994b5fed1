package rtpengine

import (
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/asyncsip/asyncsip/async"
	"github.com/asyncsip/asyncsip/modules/dialog"
	"github.com/asyncsip/asyncsip/reactor"
	"github.com/asyncsip/asyncsip/tm"
)

// Route helpers: the usual places of a media relay in a proxy's routes,
// each an await on the transaction's Context, so the loop serves other
// calls during the round trip to rtpengine.
//
//	request route, INVITE with SDP   Offer  (then relay in next)
//	reply route, 183/200 with SDP    Answer (the response goes on after next)
//	BYE (request route)               Delete
//	failure route (rejected, CANCEL)  Delete
//	dialog end (modules/dialog)       Client.DeleteOnEnd
//
// A reply route may suspend in tm: the response it runs for is held (later
// responses of the transaction queue behind it) and relayed once the
// route's last resume returns, with the edits made to c.Resp — which is
// how Answer rewrites the SDP of a 183 or 200 before it goes upstream. If
// the await outlives tm's suspension bound (Timers.SuspendBound), tm
// relays the held response unchanged (fail open); keep Config.Timeout
// well below that bound.

// awaitTimeout is the await bound of the route helpers: the client's own
// Timeout, plus a margin so the client's timeout error (which says which
// instances were tried) arrives first.
func (c *Client) awaitTimeout() async.Option { return async.Timeout(c.cfg.Timeout + time.Second) }

// Offer sends the SDP offer of the request c.Req() (an INVITE or re-INVITE,
// an UPDATE) to rtpengine and awaits the answer; on resume it replaces the
// request's body with rtpengine's SDP (Content-Length follows) and calls
// next(nil) — next then relays. On failure the body is left as it was and
// next gets the error (ErrNoSDP when the request has no SDP body, an
// *Error when rtpengine refused, an error wrapping ErrTimeout when no
// instance answered): the route decides whether to relay anyway or to
// reply 503.
func Offer(c *tm.Context, cl *Client, f *Flags, next func(err error)) {
	req := c.Req()
	sdp, ok := sdpBody(req)
	if !ok {
		next(ErrNoSDP)
		return
	}
	call := Call{CallID: callID(req), FromTag: tag(req.From())}
	async.Await(c, cl.Offer(call, sdp, f), func(r *Response, err error) {
		if err == nil {
			req.SetBody(r.SDP)
		}
		next(err)
	}, cl.awaitTimeout())
}

// Answer sends the SDP answer of the response c.Resp (in a reply route:
// a 183 or 200 to an INVITE that Offer handled) to rtpengine and awaits
// it; on resume the response's body is rtpengine's SDP, and next runs.
// After the route returns, tm relays the response with the new body.
// Errors are as for Offer; the body is then left as it was.
func Answer(c *tm.Context, cl *Client, f *Flags, next func(err error)) {
	resp := c.Resp
	if resp == nil {
		next(ErrNoSDP)
		return
	}
	sdp, ok := sdpBody(resp)
	if !ok {
		next(ErrNoSDP)
		return
	}
	call := Call{CallID: callID(resp), FromTag: tag(resp.From()), ToTag: toTag(resp.To())}
	async.Await(c, cl.Answer(call, sdp, f), func(r *Response, err error) {
		if err == nil {
			resp.SetBody(r.SDP)
		}
		next(err)
	}, cl.awaitTimeout())
}

// Delete deletes the whole call of c.Req() (by Call-ID) on its instance —
// for a BYE in the request route, or in the INVITE's failure route once no
// branch is left (a rejection, or a CANCEL: tm answers the CANCEL itself
// and the INVITE ends 487) — and awaits it; next gets the outcome (a call
// rtpengine does not know is an error wrapping ErrUnknownCall, which a
// route may ignore).
func Delete(c *tm.Context, cl *Client, f *Flags, next func(err error)) {
	async.Await(c, cl.Delete(Call{CallID: callID(c.Req())}, f), func(_ *Response, err error) {
		next(err)
	}, cl.awaitTimeout())
}

// DeleteOnEnd returns a dialog.Observer that deletes a call on rtpengine
// when modules/dialog reports its end (any TerminatedEvent: BYE, timeout,
// rejection, cancel), then passes every event on to then (nil: none). The
// delete is launched on the least busy loop of g, not awaited; report (nil:
// none) gets its outcome there. Give it as dialog.Config.Observer.
func (c *Client) DeleteOnEnd(g *reactor.Group, then dialog.Observer, report func(callID string, err error)) dialog.Observer {
	return dialog.ObserverFunc(func(e dialog.Event) {
		if e.Kind == dialog.TerminatedEvent && e.Record.CallID != "" {
			id := e.Record.CallID
			_ = async.LaunchGroup(g, c.Delete(Call{CallID: id}, nil), func(_ *Response, err error) {
				if report != nil {
					report(id, err)
				}
			}, c.awaitTimeout())
		}
		if then != nil {
			then.DialogEvent(e)
		}
	})
}

// sdpBody returns the SDP body of m: a non-empty body whose Content-Type
// is application/sdp (or absent, as some phones send).
func sdpBody(m interface {
	Body() []byte
	GetHeader(string) sip.Header
}) ([]byte, bool) {
	body := m.Body()
	if len(body) == 0 {
		return nil, false
	}
	if ct := m.GetHeader("Content-Type"); ct != nil {
		v := strings.ToLower(strings.TrimSpace(ct.Value()))
		if !strings.HasPrefix(v, "application/sdp") {
			return nil, false
		}
	}
	return body, true
}

func callID(m interface{ CallID() *sip.CallIDHeader }) string {
	if h := m.CallID(); h != nil {
		return h.Value()
	}
	return ""
}

func tag(h *sip.FromHeader) string {
	if h == nil {
		return ""
	}
	v, _ := h.Params.Get("tag")
	return v
}

func toTag(h *sip.ToHeader) string {
	if h == nil {
		return ""
	}
	v, _ := h.Params.Get("tag")
	return v
}
