package main

// When a call's media goes through rtpengine (-rtpengine): the NAT rule
// for each side of a call, and the bridge between WebRTC browsers (SIP
// over WebSocket) and plain SIP phones. media.go drives rtpengine with
// these decisions.

import (
	"bytes"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
)

// cgnat is RFC 6598's shared address space, used by carrier-grade NATs.
var cgnat = netip.MustParsePrefix("100.64.0.0/10")

// nonRoutable reports whether a is an address a peer elsewhere on the
// Internet cannot send to: RFC 1918 and unique-local (RFC 4193), RFC 6598
// shared space, link-local and loopback.
func nonRoutable(a netip.Addr) bool {
	a = a.Unmap()
	return a.IsPrivate() || cgnat.Contains(a) || a.IsLinkLocalUnicast() || a.IsLoopback()
}

// NAT reasons, logged with the media decision.
const (
	natVia     = "via"     // the top Via's sent-by is not where the request came from
	natContact = "contact" // the Contact names a non-routable address that is not the source
	natSDP     = "sdp"     // the SDP's c= names a non-routable address that is not the source
	natBinding = "binding" // the callee's binding was registered from behind a NAT
)

// callerNAT applies the NAT rule to the side that sent req from src and
// returns why it is taken to be behind a NAT ("" when it is not):
//
//   - via: the top Via's sent-by is an IP address, and it or its port
//     (5060 when absent, 5061 for TLS) is not the source address and port —
//     what a Via received/rport parameter would record. A request relayed
//     by another proxy carries that proxy's Via, which matches.
//   - contact: the Contact's host is a non-routable IP address (RFC 1918,
//     RFC 6598, unique-local, link-local, loopback) other than the source
//     address. A public Contact other than the source is left alone: it is
//     what a UA behind another proxy or an SBC sends.
//   - sdp: a c= line names a non-routable IP address other than the source
//     address (0.0.0.0, a call on hold, is ignored). A public media address
//     other than the source is a media server or gateway of the UA's own,
//     not a NAT.
//
// Host names (a browser's "….invalid") are never compared.
func callerNAT(req *sip.Request, src netip.AddrPort) string {
	srcIP := src.Addr().Unmap()
	if v := req.Via(); v != nil && viaMismatch(v, src) {
		return natVia
	}
	if h := req.Contact(); h != nil {
		if a, err := netip.ParseAddr(trimBrackets(h.Address.Host)); err == nil && nonRoutable(a) && a.Unmap() != srcIP {
			return natContact
		}
	}
	for _, a := range sdpAddrs(req.Body()) {
		if nonRoutable(a) && a != srcIP {
			return natSDP
		}
	}
	return ""
}

// viaMismatch reports whether the Via's sent-by is an IP address and port
// other than src.
func viaMismatch(v *sip.ViaHeader, src netip.AddrPort) bool {
	a, err := netip.ParseAddr(trimBrackets(v.Host))
	if err != nil {
		return false
	}
	port := v.Port
	if port == 0 {
		port = 5060
		if strings.EqualFold(v.Transport, "TLS") || strings.EqualFold(v.Transport, "WSS") {
			port = 5061
		}
	}
	return a.Unmap() != src.Addr().Unmap() || port != int(src.Port())
}

func trimBrackets(h string) string { return strings.TrimSuffix(strings.TrimPrefix(h, "["), "]") }

// sdpAddrs returns the addresses of the c= lines of an SDP body (session
// and media level), without 0.0.0.0 and :: (hold). Lines that do not parse
// are skipped.
func sdpAddrs(body []byte) []netip.Addr {
	var out []netip.Addr
	for len(body) > 0 {
		line := body
		if i := bytes.IndexByte(body, '\n'); i >= 0 {
			line, body = body[:i], body[i+1:]
		} else {
			body = nil
		}
		f := strings.Fields(string(bytes.TrimRight(line, "\r")))
		if len(f) != 3 || f[0] != "c=IN" || (f[1] != "IP4" && f[1] != "IP6") {
			continue
		}
		host, _, _ := strings.Cut(f[2], "/") // multicast TTL
		if a, err := netip.ParseAddr(host); err == nil && !a.IsUnspecified() {
			out = append(out, a.Unmap())
		}
	}
	return out
}

// webSocket reports whether a transport name (Via transport or URI
// transport parameter) is SIP over WebSocket: the side is a browser.
func webSocket(transport string) bool {
	return strings.EqualFold(transport, "WS") || strings.EqualFold(transport, "WSS")
}

// callerIsBrowser reports whether req came over WebSocket.
func callerIsBrowser(req *sip.Request) bool {
	v := req.Via()
	return v != nil && webSocket(v.Transport)
}

// targetIsBrowser reports whether a target URI is reached over WebSocket.
func targetIsBrowser(target string) bool {
	var u sip.Uri
	if sip.ParseUri(target, &u) != nil {
		return false
	}
	tp, _ := u.UriParams.Get("transport")
	return webSocket(tp)
}

// sameKind keeps the targets reached the way targets[0] is (over
// WebSocket or not): one offer from rtpengine suits either browsers or
// plain phones, never both, so a user registered from a browser and a
// phone is called on the kind of its most recent binding first in the
// list. It returns the targets left out, for the log.
func sameKind(targets []string) (keep, dropped []string) {
	if len(targets) == 0 {
		return targets, nil
	}
	want := targetIsBrowser(targets[0])
	for _, t := range targets {
		if targetIsBrowser(t) == want {
			keep = append(keep, t)
		} else {
			dropped = append(dropped, t)
		}
	}
	return keep, dropped
}

// natBindings remembers which stored contacts were registered from behind
// a NAT (the registrar's rule, nat.FixURI), so that a call to one anchors
// its media: with nat_fix the stored contact is the NAT's public side and
// no longer shows it. It lives in memory, like the NAT keep-alives: after a
// restart a binding is known again from its next REGISTER. Bounded: when
// full, expired entries are dropped, and a new one is not remembered if
// none expired.
type natBindings struct {
	mu  sync.Mutex
	m   map[string]time.Time // contact → expiry
	max int
}

func newNATBindings(max int) *natBindings {
	return &natBindings{m: map[string]time.Time{}, max: max}
}

// note records (or forgets, when natted is false or expires is 0) contact.
func (n *natBindings) note(contact string, natted bool, expires time.Time, now time.Time) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if !natted || !expires.After(now) {
		delete(n.m, contact)
		return
	}
	if _, ok := n.m[contact]; !ok && len(n.m) >= n.max {
		for c, exp := range n.m {
			if !exp.After(now) {
				delete(n.m, c)
			}
		}
		if len(n.m) >= n.max {
			return
		}
	}
	n.m[contact] = expires
}

// natted reports whether contact was registered from behind a NAT and has
// not expired.
func (n *natBindings) natted(contact string, now time.Time) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	exp, ok := n.m[contact]
	return ok && exp.After(now)
}

// mediaSide is how a side of a call takes its media.
type mediaSide int

const (
	phoneSide   mediaSide = iota // plain RTP/AVP, no ICE: SIP phones and gateways
	browserSide                  // WebRTC: ICE, DTLS-SRTP (UDP/TLS/RTP/SAVPF)
)

// mediaPlan is what a new call's media needs: whether rtpengine anchors it,
// how the callee (the offer's recipient) and the caller (the answer's)
// take media, and why (for the log).
type mediaPlan struct {
	anchor         bool
	callee, caller mediaSide
	why            string
}

// planMedia decides for an INVITE from src going to targets (all of one
// kind, see sameKind):
//
//   - a browser calling a phone, or a phone calling a browser, is always
//     anchored: rtpengine bridges ICE and DTLS-SRTP on the browser's side
//     to plain RTP on the phone's;
//   - browser to browser is not: both do ICE and DTLS-SRTP end to end;
//   - phone to phone is anchored when either side is behind a NAT: the
//     caller by callerNAT, a callee when any target's binding was
//     registered from behind a NAT (natBindings).
func planMedia(req *sip.Request, src netip.AddrPort, targets []string, nb *natBindings, now time.Time) mediaPlan {
	p := mediaPlan{}
	if callerIsBrowser(req) {
		p.caller = browserSide
	}
	if len(targets) > 0 && targetIsBrowser(targets[0]) {
		p.callee = browserSide
	}
	switch {
	case p.caller == browserSide && p.callee == browserSide:
		p.why = "browser to browser"
	case p.caller == browserSide:
		p.anchor, p.why = true, "bridge browser to phone"
	case p.callee == browserSide:
		p.anchor, p.why = true, "bridge phone to browser"
	default:
		if r := callerNAT(req, src); r != "" {
			p.anchor, p.why = true, "caller behind NAT ("+r+")"
			break
		}
		for _, t := range targets {
			if nb != nil && nb.natted(t, now) {
				p.anchor, p.why = true, "callee behind NAT ("+natBinding+")"
				break
			}
		}
		if !p.anchor {
			p.why = "no NAT"
		}
	}
	return p
}

// anchoredCall is what a re-INVITE of an anchored call needs: how each
// side takes media, and which From tag is the caller's.
type anchoredCall struct {
	plan      mediaPlan
	callerTag string
	expires   time.Time
}

// anchoredCallTTL bounds how long a call is remembered without a BYE (as
// the rtpengine client's call affinity does).
const anchoredCallTTL = 12 * time.Hour

// maxAnchoredCalls bounds the calls remembered.
const maxAnchoredCalls = 200000

// anchoredCalls are the calls this process anchored, by Call-ID, until
// their BYE, failure or expiry. Bounded: when full, expired calls are
// dropped, and a new call is not remembered if none expired (its
// re-INVITEs then go through as they are).
type anchoredCalls struct {
	mu  sync.Mutex
	m   map[string]anchoredCall
	max int
}

func newAnchoredCalls(max int) *anchoredCalls {
	return &anchoredCalls{m: map[string]anchoredCall{}, max: max}
}

func (a *anchoredCalls) add(callID string, plan mediaPlan, callerTag string, now time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, ok := a.m[callID]; !ok && len(a.m) >= a.max {
		for id, c := range a.m {
			if !c.expires.After(now) {
				delete(a.m, id)
			}
		}
		if len(a.m) >= a.max {
			return
		}
	}
	a.m[callID] = anchoredCall{plan: plan, callerTag: callerTag, expires: now.Add(anchoredCallTTL)}
}

func (a *anchoredCalls) get(callID string, now time.Time) (anchoredCall, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	c, ok := a.m[callID]
	return c, ok && c.expires.After(now)
}

func (a *anchoredCalls) remove(callID string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.m, callID)
}
