package rtpengine_test

import (
	"log/slog"
	"net/netip"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/asyncsip/asyncsip"
	"github.com/asyncsip/asyncsip/async"
	"github.com/asyncsip/asyncsip/modules/dialog"
	"github.com/asyncsip/asyncsip/modules/rtpengine"
	"github.com/asyncsip/asyncsip/tm"
)

// A proxy that anchors every call's media on rtpengine: the INVITE's offer
// and the 183/200's answer are rewritten (each an await: the loop serves
// other calls meanwhile), and the call is deleted on rtpengine at BYE.
func Example() {
	rtp, err := rtpengine.New(rtpengine.Config{Instances: []rtpengine.Instance{
		{Addr: "udp:127.0.0.1:2223", Weight: 2},
		{Addr: "udp:127.0.0.1:2224", Weight: 1},
	}})
	if err != nil {
		panic(err)
	}
	media := &rtpengine.Flags{ReplaceOrigin: true, ReplaceSessionConnection: true}
	srv, err := asyncsip.New(asyncsip.Config{Listen: []string{"udp:0.0.0.0:5060"}})
	if err != nil {
		panic(err)
	}
	srv.SetRoutes(tm.Routes{
		Request: func(c *tm.Context) {
			switch {
			case c.InDialog() && (c.Method() == sip.BYE || c.Method() == sip.CANCEL):
				rtpengine.Delete(c, rtp, nil, func(error) { _ = c.Relay() })
			case c.InDialog():
				_ = c.Relay()
			case c.Method() == sip.INVITE:
				rtpengine.Offer(c, rtp, media, func(err error) {
					if err != nil { // refused (*rtpengine.Error) or no instance answered
						_ = c.Reply(503, "Media relay unavailable")
						return
					}
					_ = c.Relay("sip:gw@192.0.2.10")
				})
			default:
				_ = c.Relay("sip:gw@192.0.2.10")
			}
		},
		Reply: func(c *tm.Context) {
			if c.Method() == sip.INVITE && (c.Resp.StatusCode == 183 || c.Resp.StatusCode == 200) {
				rtpengine.Answer(c, rtp, media, func(err error) {
					if err != nil {
						c.Logger().Warn("rtpengine answer", "err", err) // the response goes on unchanged
					}
				})
			}
		},
	})
	if err := srv.Start(); err != nil {
		panic(err)
	}
	health, _ := rtp.StartHealth(srv.Group()) // pings bring dead instances back
	defer health.Stop()
}

// Flags for a gateway between browsers (WebRTC: ICE, DTLS-SRTP, rtcp-mux)
// and SIP phones (plain RTP/AVP): the offer from a browser is converted for
// the phone, the phone's answer back for the browser.
func ExampleFlags() {
	toPhone := &rtpengine.Flags{
		TransportProtocol: rtpengine.RTPAVP,
		ICE:               rtpengine.ICERemove,
		DTLS:              rtpengine.DTLSOff,
		RTCPMux:           []string{"demux"},
		ReplaceOrigin:     true,
	}
	toBrowser := &rtpengine.Flags{
		TransportProtocol: rtpengine.UDPTLSRTPSAVPF,
		ICE:               rtpengine.ICEForce,
		RTCPMux:           []string{"offer", "require"},
		ReplaceOrigin:     true,
	}
	_, _ = toPhone, toBrowser
}

// A phone behind NAT puts its private address in its SDP: tell rtpengine
// where the signalling really came from, and to learn the media address
// from the first packets.
func ExampleFlags_nat() {
	var c *tm.Context // in a request route
	var rtp *rtpengine.Client
	src := netip.MustParseAddrPort("198.51.100.7:40112") // c.Source()
	rtpengine.Offer(c, rtp, &rtpengine.Flags{
		ReceivedFrom:             src.Addr(),
		Options:                  []string{"SIP-source-address", "port-latching"},
		ReplaceOrigin:            true,
		ReplaceSessionConnection: true,
	}, func(err error) { _ = c.Relay() })
}

// Commands as ops, outside a route: a query launched from a timer job on
// a loop.
func ExampleClient_Query() {
	var rtp *rtpengine.Client
	srv, _ := asyncsip.New(asyncsip.Config{Listen: []string{"udp:127.0.0.1:5060"}})
	l := srv.Group().Loop(0)
	_ = l.Post(func() {
		async.Launch(l, rtp.Query(rtpengine.Call{CallID: "a84b4c76e66710@pc33"}), func(q *rtpengine.QueryResult, err error) {
			if err != nil {
				slog.Warn("query", "err", err)
				return
			}
			slog.Info("call", "created", q.Created, "rtp_packets", q.RTP.Packets, "parties", len(q.Tags))
		}, async.Timeout(5*time.Second))
	})
}

// Calls tracked by modules/dialog are deleted on rtpengine however they
// end: BYE, dialog timeout, failed in-dialog pings, rejection.
func ExampleClient_DeleteOnEnd() {
	var rtp *rtpengine.Client
	srv, _ := asyncsip.New(asyncsip.Config{Listen: []string{"udp:127.0.0.1:5060"}})
	tracker := dialog.New(dialog.Config{
		Observer: rtp.DeleteOnEnd(srv.Group(), nil, func(callID string, err error) {
			if err != nil {
				slog.Warn("rtpengine delete", "call_id", callID, "err", err)
			}
		}),
	})
	_ = tracker
}
