package main

// Media through rtpengine (-rtpengine): the offer on a new INVITE, the
// answer on its 1xx/2xx, the delete when the call ends. Which calls and
// with which flags is media_rule.go's decision.
//
// When rtpengine fails:
//   - the offer (INVITE): the call is refused 503 with Retry-After. A
//     call that needs anchoring and is relayed without it rings, is
//     answered, is billed — and has no audio in one or both directions (a
//     browser calling a phone has none at all); a 503 lets the caller, or
//     its proxy, try again or elsewhere, and says what happened.
//   - the answer (a 2xx): the response goes upstream unchanged (the callee
//     has answered; refusing its 200 would leave it in a call with nobody),
//     logged at warn; a provisional response is dropped instead, so the
//     caller never sees an SDP that bypasses the relay (the 2xx retries).
//   - the delete: logged; rtpengine ends the session itself after its own
//     media timeout.

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/asyncsip/asyncsip/async"
	"github.com/asyncsip/asyncsip/modules/rtpengine"
	"github.com/asyncsip/asyncsip/tm"
)

// mediaKey holds a new call's mediaPlan in its transaction, for the reply
// and end routes.
const mediaKey = "media.plan"

// maxNATBindings bounds the table of contacts registered from behind a NAT.
const maxNATBindings = 100000

// media anchors calls' media on rtpengine; nil when -rtpengine is not set.
type media struct {
	rtp    *rtpengine.Client
	natted *natBindings
	calls  *anchoredCalls
	log    *slog.Logger
}

// parseRTPEngines reads -rtpengine: "" (off) or instances "udp:IP:port",
// comma-separated, each with an optional "=weight".
func parseRTPEngines(s string) ([]rtpengine.Instance, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	in, err := rtpengine.ParseInstances(s)
	if err != nil {
		return nil, fmt.Errorf("rtpengine %q: want udp:IP:port, comma-separated: %w", s, err)
	}
	return in, nil
}

// newMedia returns the media anchor for cfg (nil, nil without -rtpengine).
func newMedia(cfg Config, log *slog.Logger) (*media, error) {
	in, err := parseRTPEngines(cfg.RTPEngine)
	if err != nil || in == nil {
		return nil, err
	}
	rtp, err := rtpengine.New(rtpengine.Config{Instances: in})
	if err != nil {
		return nil, err
	}
	return &media{rtp: rtp, natted: newNATBindings(maxNATBindings), calls: newAnchoredCalls(maxAnchoredCalls), log: log}, nil
}

// sideFlags are rtpengine's flags towards a side that takes media as s.
// Browser: ICE with rtpengine as the only candidate, DTLS-SRTP with
// rtpengine passive (the browser connects), no SDES keys, RTP and RTCP on
// one port (browsers require rtcp-mux), an a=mid on each m= line. Phone: no ICE, plain RTP/AVP, RTCP
// on its own port.
func sideFlags(s mediaSide) rtpengine.Flags {
	f := rtpengine.Flags{ReplaceOrigin: true, ReplaceSessionConnection: true}
	switch s {
	case browserSide:
		f.ICE, f.DTLS, f.TransportProtocol = rtpengine.ICEForce, rtpengine.DTLSPassive, rtpengine.UDPTLSRTPSAVPF
		f.SDES, f.RTCPMux = []string{"off"}, []string{"require"}
		f.Options = []string{"generate-mid"} // browsers want a=mid on every m= line
	default:
		f.ICE, f.DTLS, f.TransportProtocol = rtpengine.ICERemove, rtpengine.DTLSOff, rtpengine.RTPAVP
		f.RTCPMux = []string{"demux"}
	}
	return f
}

// relay relays c's request to targets, first anchoring its media when the
// call needs it (planMedia); fail runs when it could not be relayed. An
// INVITE without SDP, or one whose offer is already made (serial forking
// to the next gateway), is relayed as it is.
func (p *Proxy) relay(c *tm.Context, targets []string, fail func(error)) {
	m := p.media
	_, offered := tm.Value[mediaPlan](c, mediaKey)
	if m == nil || c.Method() != sip.INVITE || offered || len(c.Req().Body()) == 0 {
		if err := c.Relay(targets...); err != nil {
			fail(err)
		}
		return
	}
	targets, dropped := sameKind(targets)
	if len(dropped) > 0 {
		c.Logger().Info("media: contacts of another kind not rung", "rung", targets, "left", dropped)
	}
	plan := planMedia(c.Req(), c.Source(), targets, m.natted, time.Now())
	if !plan.anchor {
		c.Logger().Debug("media: direct", "why", plan.why)
		if err := c.Relay(targets...); err != nil {
			fail(err)
		}
		return
	}
	f := sideFlags(plan.callee)
	if plan.caller == phoneSide && strings.HasPrefix(plan.why, "caller behind NAT") {
		// Until media arrives (rtpengine then learns the real source), the
		// caller is reached at the address its SIP came from.
		f.ReceivedFrom = c.Source().Addr()
		f.Options = append(f.Options, "SIP-source-address")
	}
	rtpengine.Offer(c, m.rtp, &f, func(err error) {
		if errors.Is(err, rtpengine.ErrNoSDP) { // a body that is not SDP: nothing to anchor
			if err := c.Relay(targets...); err != nil {
				fail(err)
			}
			return
		}
		if err != nil {
			c.Logger().Warn("media: rtpengine offer failed; call refused", "why", plan.why, "err", err)
			_ = c.Reply(503, "Service Unavailable (media relay)", sip.NewHeader("Retry-After", "5"))
			return
		}
		c.Set(mediaKey, plan)
		m.calls.add(c.CallID(), plan, fromTag(c.Req()), time.Now())
		c.Logger().Debug("media: anchored", "why", plan.why)
		if err := c.Relay(targets...); err != nil {
			fail(err)
		}
	})
}

// reply is the reply route: a provisional or 2xx response with SDP to an
// INVITE whose media is anchored goes upstream with rtpengine's answer.
func (p *Proxy) reply(c *tm.Context) {
	plan, ok := tm.Value[mediaPlan](c, mediaKey)
	code := c.Resp.StatusCode
	if !ok || p.media == nil || code <= 100 || code >= 300 || len(c.Resp.Body()) == 0 {
		return
	}
	if cs := c.Resp.CSeq(); cs == nil || cs.MethodName != sip.INVITE {
		return
	}
	f := sideFlags(plan.caller)
	rtpengine.Answer(c, p.media.rtp, &f, func(err error) {
		switch {
		case err == nil:
		case code < 200:
			c.Logger().Warn("media: rtpengine answer failed; provisional response dropped", "code", code, "err", err)
			c.Drop()
		default:
			c.Logger().Warn("media: rtpengine answer failed; response relayed unchanged", "code", code, "err", err)
		}
	})
}

// inDialog relays an in-dialog request; a re-INVITE or UPDATE with SDP of
// an anchored call is offered to rtpengine first, with the flags of the
// side it goes to (its answer, in the reply route, gets the sender's), so a
// hold or a codec change keeps the media on rtpengine. If the offer fails
// the request is refused 503: the call goes on as it was (RFC 3261
// §14.1).
func (p *Proxy) inDialog(c *tm.Context) {
	m := p.media
	req := c.Req()
	if m == nil || (req.Method != sip.INVITE && req.Method != sip.UPDATE) || len(req.Body()) == 0 {
		_ = c.Relay()
		return
	}
	a, ok := m.calls.get(string(*req.CallID()), time.Now())
	if !ok {
		_ = c.Relay()
		return
	}
	plan := a.plan // towards the callee: sender is the caller
	if fromTag(req) != a.callerTag {
		plan.caller, plan.callee = plan.callee, plan.caller
	}
	f := sideFlags(plan.callee)
	rtpengine.Offer(c, m.rtp, &f, func(err error) {
		if errors.Is(err, rtpengine.ErrNoSDP) {
			_ = c.Relay()
			return
		}
		if err != nil {
			c.Logger().Warn("media: rtpengine re-offer failed; request refused", "err", err)
			_ = c.Reply(503, "Service Unavailable (media relay)", sip.NewHeader("Retry-After", "5"))
			return
		}
		c.Set(mediaKey, plan)
		_ = c.Relay()
	})
}

func fromTag(req *sip.Request) string {
	if f := req.From(); f != nil {
		t, _ := f.Params.Get("tag")
		return t
	}
	return ""
}

// bye deletes an anchored call's media session when its BYE is relayed.
// The delete is launched beside the BYE, not awaited: ending a call never
// waits for rtpengine. Only calls this process offered (the client
// remembers them) are deleted.
func (p *Proxy) bye(c *tm.Context) {
	if p.media == nil || c.Method() != sip.BYE {
		return
	}
	p.media.deleteCall(c, c.CallID(), "bye")
}

// mediaEnd deletes the media session of a new call that ended without
// being answered (rejected, cancelled, timed out): End route. A failed
// re-INVITE leaves the call as it was.
func (p *Proxy) mediaEnd(c *tm.Context) {
	if _, ok := tm.Value[mediaPlan](c, mediaKey); !ok || p.media == nil || c.Method() != sip.INVITE || c.InDialog() {
		return
	}
	if code := c.FinalCode(); code < 200 || code >= 300 {
		p.media.deleteCall(c, c.CallID(), "failed")
	}
}

func (m *media) deleteCall(c *tm.Context, callID, why string) {
	m.calls.remove(callID)
	if _, known := m.rtp.InstanceOf(callID); !known {
		return
	}
	log := c.Logger()
	async.Launch(c.Loop(), m.rtp.Delete(rtpengine.Call{CallID: callID}, nil), func(_ *rtpengine.Response, err error) {
		if err != nil && !errors.Is(err, rtpengine.ErrUnknownCall) {
			log.Warn("media: rtpengine delete failed; rtpengine times the session out", "why", why, "err", err)
		}
	}, async.Timeout(rtpengine.DefaultTimeout+time.Second), async.Name("rtpengine.delete"))
}

// noteBindings remembers which of a saved REGISTER's contacts are behind a
// NAT (registrar.go), so calls to them are anchored.
func (p *Proxy) noteBindings(binds []binding) {
	if p.media == nil {
		return
	}
	now := time.Now()
	for _, b := range binds {
		p.media.natted.note(b.contact, b.natted, now.Add(time.Duration(b.expires)*time.Second), now)
	}
}

func (m *media) close() {
	if m != nil {
		_ = m.rtp.Close()
	}
}
