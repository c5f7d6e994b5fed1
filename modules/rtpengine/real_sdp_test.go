package rtpengine_test

import (
	"fmt"
	"regexp"
	"strings"
	"testing"

	"github.com/asyncsip/asyncsip/internal/testenv"
	"github.com/asyncsip/asyncsip/modules/rtpengine"
)

var mLine = regexp.MustCompile(`(?m)^m=(\w+) (\d+) (\S+)`)

// sdpCheck is one expectation on a rewritten SDP.
type sdpCheck struct {
	has, hasNot []string
	proto       string // every m= line's protocol
	media       int    // number of m= lines
}

func (c sdpCheck) verify(t *testing.T, in, out []byte) {
	t.Helper()
	s := string(out)
	for _, h := range c.has {
		if !strings.Contains(s, h) {
			t.Errorf("rewritten SDP lacks %q:\n%s", h, s)
		}
	}
	for _, h := range c.hasNot {
		if strings.Contains(s, h) {
			t.Errorf("rewritten SDP still has %q:\n%s", h, s)
		}
	}
	ms, inMs := mLine.FindAllStringSubmatch(s, -1), mLine.FindAllStringSubmatch(string(in), -1)
	if len(ms) != c.media || len(inMs) != c.media {
		t.Fatalf("%d m= lines out, %d in; want %d:\n%s", len(ms), len(inMs), c.media, s)
	}
	for i, m := range ms {
		if m[2] == inMs[i][2] {
			t.Errorf("m=%s port %s unchanged", m[1], m[2])
		}
		if c.proto != "" && m[3] != c.proto {
			t.Errorf("m=%s protocol %s, want %s", m[1], m[3], c.proto)
		}
	}
}

// TestRealSDPRewrites sends real SDPs through a real rtpengine as offers
// and answers, with the flags a proxy uses, and checks the rewritten SDP.
func TestRealSDPRewrites(t *testing.T) {
	p := testenv.StartRTPEngine(t)
	g := newGroup(t, 1)
	c := newClient(t, rtpengine.Config{Instances: []rtpengine.Instance{{Addr: p.Addr}}})
	l := g.Loop(0)
	plain := []string{"a=candidate", "a=fingerprint", "a=ice-ufrag", "a=setup"}
	cases := []struct {
		name           string
		offer, answer  string
		oflags, aflags *rtpengine.Flags
		ocheck, acheck sdpCheck
	}{
		{
			name: "audio, addresses replaced", offer: "audio.sdp", answer: "answer.sdp",
			oflags: &rtpengine.Flags{ReplaceOrigin: true, ReplaceSessionConnection: true, ICE: rtpengine.ICERemove},
			aflags: &rtpengine.Flags{ReplaceOrigin: true, ReplaceSessionConnection: true, ICE: rtpengine.ICERemove},
			ocheck: sdpCheck{has: []string{"c=IN IP4 127.0.0.1", "o=alice 2890844526 2890844526 IN IP4 127.0.0.1", "PCMU/8000"}, hasNot: append([]string{"192.0.2.10"}, plain...), proto: "RTP/AVP", media: 1},
			acheck: sdpCheck{has: []string{"c=IN IP4 127.0.0.1"}, hasNot: append([]string{"198.51.100.20"}, plain...), proto: "RTP/AVP", media: 1},
		},
		{
			name: "audio and video", offer: "audio_video.sdp", answer: "audio_video.sdp",
			oflags: &rtpengine.Flags{ReplaceOrigin: true, ICE: rtpengine.ICERemove},
			ocheck: sdpCheck{has: []string{"m=video", "H264/90000", "c=IN IP4 127.0.0.1"}, hasNot: []string{"192.0.2.10"}, proto: "RTP/AVP", media: 2},
			acheck: sdpCheck{has: []string{"m=video", "c=IN IP4 127.0.0.1"}, proto: "RTP/AVP", media: 2},
		},
		{
			name: "ICE forced on plain audio", offer: "audio.sdp", answer: "answer.sdp",
			oflags: &rtpengine.Flags{ICE: rtpengine.ICEForce},
			ocheck: sdpCheck{has: []string{"a=ice-ufrag:", "a=ice-pwd:", "a=candidate:", "127.0.0.1"}, proto: "RTP/AVP", media: 1},
			acheck: sdpCheck{media: 1},
		},
		{
			name: "codec stripped", offer: "audio.sdp", answer: "answer.sdp",
			oflags: &rtpengine.Flags{CodecStrip: []string{"PCMA"}},
			ocheck: sdpCheck{has: []string{"PCMU/8000"}, hasNot: []string{"PCMA"}, media: 1},
			acheck: sdpCheck{media: 1},
		},
		{
			name: "WebRTC to a SIP phone: UDP/TLS/RTP/SAVPF to RTP/AVP and back", offer: "webrtc.sdp", answer: "answer.sdp",
			oflags: &rtpengine.Flags{TransportProtocol: rtpengine.RTPAVP, ICE: rtpengine.ICERemove, DTLS: rtpengine.DTLSOff, RTCPMux: []string{"demux"}, ReplaceOrigin: true},
			aflags: &rtpengine.Flags{TransportProtocol: rtpengine.UDPTLSRTPSAVPF, ICE: rtpengine.ICEForce, RTCPMux: []string{"require"}, ReplaceOrigin: true},
			ocheck: sdpCheck{has: []string{"c=IN IP4 127.0.0.1", "opus/48000"}, hasNot: append([]string{"192.0.2.55", "198.51.100.7"}, plain...), proto: "RTP/AVP", media: 1},
			acheck: sdpCheck{has: []string{"a=fingerprint:", "a=ice-ufrag:", "a=candidate:", "a=setup:", "a=rtcp-mux"}, hasNot: []string{"198.51.100.20"}, proto: "UDP/TLS/RTP/SAVPF", media: 1},
		},
		{
			name: "SIP phone to WebRTC: RTP/AVP to UDP/TLS/RTP/SAVPF", offer: "audio.sdp", answer: "webrtc.sdp",
			oflags: &rtpengine.Flags{TransportProtocol: rtpengine.UDPTLSRTPSAVPF, ICE: rtpengine.ICEForce, RTCPMux: []string{"offer"}, ReplaceOrigin: true},
			aflags: &rtpengine.Flags{TransportProtocol: rtpengine.RTPAVP, ICE: rtpengine.ICERemove, DTLS: rtpengine.DTLSOff, RTCPMux: []string{"demux"}},
			ocheck: sdpCheck{has: []string{"a=fingerprint:", "a=ice-ufrag:", "a=candidate:", "a=setup:actpass"}, hasNot: []string{"192.0.2.10"}, proto: "UDP/TLS/RTP/SAVPF", media: 1},
			acheck: sdpCheck{has: []string{"c=IN IP4 127.0.0.1"}, hasNot: append([]string{"192.0.2.55"}, plain...), proto: "RTP/AVP", media: 1},
		},
		{
			name: "SDES towards RTP/SAVP", offer: "audio.sdp", answer: "answer.sdp",
			oflags: &rtpengine.Flags{TransportProtocol: rtpengine.RTPSAVP, ICE: rtpengine.ICERemove, DTLS: rtpengine.DTLSOff, SDES: []string{"no-AES_CM_128_HMAC_SHA1_32", "no-F8_128_HMAC_SHA1_32"}},
			ocheck: sdpCheck{has: []string{"a=crypto:", "AES_CM_128_HMAC_SHA1_80"}, hasNot: []string{" AES_CM_128_HMAC_SHA1_32", "F8_128_HMAC_SHA1_32", "a=fingerprint"}, proto: "RTP/SAVP", media: 1},
			acheck: sdpCheck{media: 1},
		},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			call := rtpengine.Call{CallID: fmt.Sprintf("sdp-%d@test", i), FromTag: "caller"}
			in := readSDP(t, tc.offer)
			r, err := run(t, l, c.Offer(call, in, tc.oflags))
			if err != nil {
				t.Fatal(err)
			}
			tc.ocheck.verify(t, in, r.SDP)
			call.ToTag = "callee"
			in = readSDP(t, tc.answer)
			a, err := run(t, l, c.Answer(call, in, tc.aflags))
			if err != nil {
				t.Fatal(err)
			}
			tc.acheck.verify(t, in, a.SDP)
			q, err := run(t, l, c.Query(rtpengine.Call{CallID: call.CallID}))
			if err != nil || len(q.Tags) != 2 {
				t.Fatalf("query: %+v, %v", q, err)
			}
			if _, err := run(t, l, c.Delete(rtpengine.Call{CallID: call.CallID}, nil)); err != nil {
				t.Fatal(err)
			}
		})
	}
}
