package rtpengine

import "net/netip"

// ICE values for Flags.ICE.
const (
	ICERemove     = "remove"      // strip ICE attributes
	ICEForce      = "force"       // strip, then offer rtpengine as the only candidate
	ICEForceRelay = "force-relay" // keep candidates, add rtpengine as a relay candidate
	ICEDefault    = "default"     // force if the SDP had ICE, else nothing
)

// DTLS values for Flags.DTLS.
const (
	DTLSOff     = "off"     // no DTLS towards this side
	DTLSPassive = "passive" // rtpengine is the DTLS server
	DTLSActive  = "active"  // rtpengine is the DTLS client
)

// Transport protocols for Flags.TransportProtocol.
const (
	RTPAVP         = "RTP/AVP"           // plain RTP (SIP phones, gateways)
	RTPSAVP        = "RTP/SAVP"          // SRTP with SDES
	RTPAVPF        = "RTP/AVPF"          // RTP with RTCP feedback
	RTPSAVPF       = "RTP/SAVPF"         // SRTP with feedback (WebRTC, SDES or DTLS)
	UDPTLSRTPSAVPF = "UDP/TLS/RTP/SAVPF" // WebRTC's DTLS-SRTP profile
)

// Flags are the options of an offer, answer or delete, typed. The zero
// value asks for nothing: rtpengine's defaults. Each field maps to one key
// of the ng dictionary (in brackets); Extra passes any other key through.
type Flags struct {
	// ICE is what to do with ICE towards the recipient ("ICE"):
	// ICERemove, ICEForce, ICEForceRelay, ICEDefault; "" leaves
	// rtpengine's default (add itself as a candidate).
	ICE string
	// DTLS sets rtpengine's DTLS role towards the recipient ("DTLS").
	DTLS string
	// TransportProtocol converts the media profile for the recipient
	// ("transport-protocol"): RTPAVP towards a SIP phone, RTPSAVPF or
	// UDPTLSRTPSAVPF towards a browser.
	TransportProtocol string
	// ReplaceOrigin and ReplaceSessionConnection rewrite the o= line and
	// the session-level c= line with rtpengine's address ("replace").
	ReplaceOrigin, ReplaceSessionConnection bool
	// Direction names the interfaces media enters and leaves by, for a
	// bridging rtpengine ("direction"): {"external", "internal"}.
	Direction [2]string
	// RecordCall asks rtpengine to record the call ("record call": "yes").
	RecordCall bool
	// SDES are SDES options ("SDES"): "off", "unencrypted_srtp",
	// "no-<suite>", "only-<suite>", "pad"…
	SDES []string
	// RTCPMux are rtcp-mux options ("rtcp-mux"): "offer", "require",
	// "demux", "accept", "reject".
	RTCPMux []string
	// CodecStrip, CodecOffer, CodecTranscode and CodecMask are passed
	// through as the "codec" dictionary's strip, offer, transcode and mask
	// lists (codec names such as "PCMA", "opus", or "all").
	CodecStrip, CodecOffer, CodecTranscode, CodecMask []string
	// ReceivedFrom is the address the signalling came from, for NAT'd
	// phones whose SDP names a private address ("received-from").
	ReceivedFrom netip.Addr
	// Label labels this side of the call ("label").
	Label string
	// DeleteDelay (delete) overrides rtpengine's delete delay, in seconds
	// ("delete-delay"); nil keeps the default, 0 deletes at once.
	DeleteDelay *int
	// Options are flags of the "flags" list: "trust-address",
	// "symmetric", "strict-source", "port-latching", "SIP-source-address",
	// "generate-mid", "trickle-ICE", "fatal"…
	Options []string
	// Extra adds (or overrides) any key of the ng dictionary.
	Extra map[string]any
}

// addTo writes the flags into an ng dictionary.
func (f *Flags) addTo(d map[string]any) {
	if f == nil {
		return
	}
	set := func(k, v string) {
		if v != "" {
			d[k] = v
		}
	}
	set("ICE", f.ICE)
	set("DTLS", f.DTLS)
	set("transport-protocol", f.TransportProtocol)
	set("label", f.Label)
	var replace []string
	if f.ReplaceOrigin {
		replace = append(replace, "origin")
	}
	if f.ReplaceSessionConnection {
		replace = append(replace, "session-connection")
	}
	if replace != nil {
		d["replace"] = replace
	}
	if f.Direction[0] != "" || f.Direction[1] != "" {
		d["direction"] = []string{f.Direction[0], f.Direction[1]}
	}
	if f.RecordCall {
		d["record call"] = "yes"
	}
	if len(f.SDES) > 0 {
		d["SDES"] = f.SDES
	}
	if len(f.RTCPMux) > 0 {
		d["rtcp-mux"] = f.RTCPMux
	}
	codec := map[string]any{}
	for k, v := range map[string][]string{"strip": f.CodecStrip, "offer": f.CodecOffer, "transcode": f.CodecTranscode, "mask": f.CodecMask} {
		if len(v) > 0 {
			codec[k] = v
		}
	}
	if len(codec) > 0 {
		d["codec"] = codec
	}
	if f.ReceivedFrom.IsValid() {
		fam := "IP4"
		if f.ReceivedFrom.Is6() && !f.ReceivedFrom.Is4In6() {
			fam = "IP6"
		}
		d["received-from"] = []string{fam, f.ReceivedFrom.Unmap().String()}
	}
	if f.DeleteDelay != nil {
		d["delete-delay"] = *f.DeleteDelay
	}
	if len(f.Options) > 0 {
		d["flags"] = f.Options
	}
	for k, v := range f.Extra {
		d[k] = v
	}
}
