package main

import (
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// invite builds an INVITE with the given top Via sent-by and transport,
// Contact and SDP connection address ("" leaves the Contact or the body
// out).
func invite(t *testing.T, transport, sentBy, contact, sdpAddr string) *sip.Request {
	t.Helper()
	raw := "INVITE sip:bob@example.com SIP/2.0\r\n" +
		"Via: SIP/2.0/" + transport + " " + sentBy + ";branch=z9hG4bKmedia1;rport\r\n" +
		"Max-Forwards: 70\r\n" +
		"From: <sip:alice@example.com>;tag=a1\r\n" +
		"To: <sip:bob@example.com>\r\n" +
		"Call-ID: media-rule@test\r\n" +
		"CSeq: 1 INVITE\r\n"
	if contact != "" {
		raw += "Contact: <" + contact + ">\r\n"
	}
	body := ""
	if sdpAddr != "" {
		fam := "IP4"
		if strings.Contains(sdpAddr, ":") {
			fam = "IP6"
		}
		body = "v=0\r\no=- 1 1 IN " + fam + " " + sdpAddr + "\r\ns=-\r\nc=IN " + fam + " " + sdpAddr +
			"\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"
		raw += "Content-Type: application/sdp\r\n"
	}
	raw += "Content-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body
	m, err := sip.ParseMessage([]byte(raw))
	require.NoError(t, err)
	return m.(*sip.Request)
}

// The NAT rule for a caller, one row per case of media_rule.go's comment.
func TestCallerNAT(t *testing.T) {
	pub := netip.MustParseAddrPort("203.0.113.5:40000")
	for name, c := range map[string]struct {
		transport, sentBy, contact, sdp string
		src                             netip.AddrPort
		want                            string
	}{
		"public UA, everything matches": {"UDP", "203.0.113.5:40000", "sip:alice@203.0.113.5:40000", "203.0.113.5", pub, ""},
		"private Via":                   {"UDP", "192.168.1.10:5060", "sip:alice@192.168.1.10:5060", "192.168.1.10", pub, natVia},
		"Via port changed by the NAT":   {"UDP", "203.0.113.5:5060", "sip:alice@203.0.113.5:5060", "203.0.113.5", pub, natVia},
		"Via without port is 5060":      {"UDP", "203.0.113.5", "", "", netip.MustParseAddrPort("203.0.113.5:5060"), ""},
		"TLS Via without port is 5061":  {"TLS", "203.0.113.5", "", "", netip.MustParseAddrPort("203.0.113.5:5061"), ""},
		"private Contact, Via fixed by an ALG": {"UDP", "203.0.113.5:40000", "sip:alice@10.0.0.5:5060", "203.0.113.5", pub,
			natContact},
		"private SDP only":  {"UDP", "203.0.113.5:40000", "sip:alice@203.0.113.5:40000", "192.168.1.10", pub, natSDP},
		"CGNAT SDP":         {"UDP", "203.0.113.5:40000", "", "100.64.7.1", pub, natSDP},
		"link-local SDP":    {"UDP", "203.0.113.5:40000", "", "169.254.3.3", pub, natSDP},
		"unique-local IPv6": {"UDP", "[2001:db8::5]:40000", "", "fd00::10", netip.MustParseAddrPort("[2001:db8::5]:40000"), natSDP},
		"public SDP elsewhere (media server of the UA)": {"UDP", "203.0.113.5:40000", "", "198.51.100.9", pub, ""},
		"public Contact elsewhere (behind another proxy)": {"UDP", "203.0.113.5:40000", "sip:alice@198.51.100.9:5060", "", pub,
			""},
		"on hold (0.0.0.0)": {"UDP", "203.0.113.5:40000", "", "0.0.0.0", pub, ""},
		"LAN phone on the proxy's network": {"UDP", "10.0.0.5:5060", "sip:alice@10.0.0.5:5060", "10.0.0.5",
			netip.MustParseAddrPort("10.0.0.5:5060"), ""},
		"loopback SDP from a loopback source": {"UDP", "127.0.0.1:5090", "sip:alice@127.0.0.1:5090", "127.0.0.1",
			netip.MustParseAddrPort("127.0.0.1:5090"), ""},
		"private SDP from a loopback source (the e2e test)": {"UDP", "127.0.0.1:5090", "sip:alice@127.0.0.1:5090", "192.168.1.10",
			netip.MustParseAddrPort("127.0.0.1:5090"), natSDP},
		"browser: host names are not compared": {"WSS", "df7jal23ls0d.invalid", "sip:alice@df7jal23ls0d.invalid;transport=ws", "",
			pub, ""},
		"IPv4-mapped source": {"UDP", "203.0.113.5:40000", "", "203.0.113.5", netip.MustParseAddrPort("[::ffff:203.0.113.5]:40000"), ""},
	} {
		t.Run(name, func(t *testing.T) {
			assert.Equal(t, c.want, callerNAT(invite(t, c.transport, c.sentBy, c.contact, c.sdp), c.src))
		})
	}
}

// Which calls rtpengine anchors, and how each side takes its media.
func TestPlanMedia(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	nb := newNATBindings(10)
	nb.note("sip:bob@203.0.113.9:41000", true, now.Add(time.Hour), now)
	nb.note("sip:carol@203.0.113.10:42000", true, now.Add(-time.Second), now) // expired: not kept
	src := netip.MustParseAddrPort("203.0.113.5:40000")
	phone := invite(t, "UDP", "203.0.113.5:40000", "sip:alice@203.0.113.5:40000", "203.0.113.5")
	natted := invite(t, "UDP", "192.168.1.10:5060", "sip:alice@192.168.1.10:5060", "192.168.1.10")
	browser := invite(t, "WSS", "x1.invalid", "sip:alice@x1.invalid;transport=ws", "")
	for name, c := range map[string]struct {
		req            *sip.Request
		targets        []string
		anchor         bool
		callee, caller mediaSide
		why            string
	}{
		"phone to phone, no NAT":       {phone, []string{"sip:bob@203.0.113.20:5060"}, false, phoneSide, phoneSide, "no NAT"},
		"caller behind NAT":            {natted, []string{"sip:bob@203.0.113.20:5060"}, true, phoneSide, phoneSide, "caller behind NAT (via)"},
		"callee registered behind NAT": {phone, []string{"sip:bob@203.0.113.20:5060", "sip:bob@203.0.113.9:41000"}, true, phoneSide, phoneSide, "callee behind NAT (binding)"},
		"callee's NAT binding expired": {phone, []string{"sip:carol@203.0.113.10:42000"}, false, phoneSide, phoneSide, "no NAT"},
		"gateway (no binding)":         {phone, []string{"sip:+15551234@198.51.100.1:5060"}, false, phoneSide, phoneSide, "no NAT"},
		"browser calls a phone":        {browser, []string{"sip:bob@203.0.113.20:5060"}, true, phoneSide, browserSide, "bridge browser to phone"},
		"phone calls a browser":        {phone, []string{"sip:bob@198.51.100.7:6000;transport=ws"}, true, browserSide, phoneSide, "bridge phone to browser"},
		"browser calls a browser":      {browser, []string{"sip:bob@198.51.100.7:6000;transport=wss"}, false, browserSide, browserSide, "browser to browser"},
		"NATed phone calls a browser":  {natted, []string{"sip:bob@198.51.100.7:6000;transport=ws"}, true, browserSide, phoneSide, "bridge phone to browser"},
		"browser calls a NATed phone":  {browser, []string{"sip:bob@203.0.113.9:41000"}, true, phoneSide, browserSide, "bridge browser to phone"},
		"browser calls a TCP phone":    {browser, []string{"sip:bob@203.0.113.20:5060;transport=tcp"}, true, phoneSide, browserSide, "bridge browser to phone"},
	} {
		t.Run(name, func(t *testing.T) {
			p := planMedia(c.req, src, c.targets, nb, now)
			assert.Equal(t, mediaPlan{anchor: c.anchor, callee: c.callee, caller: c.caller, why: c.why}, p)
		})
	}
}

// A user registered from a browser and a phone is called on the kind of
// the first binding only.
func TestSameKind(t *testing.T) {
	keep, dropped := sameKind([]string{"sip:a@198.51.100.7:6000;transport=ws", "sip:a@203.0.113.20:5060",
		"sip:a@198.51.100.8:6001;transport=wss"})
	assert.Equal(t, []string{"sip:a@198.51.100.7:6000;transport=ws", "sip:a@198.51.100.8:6001;transport=wss"}, keep)
	assert.Equal(t, []string{"sip:a@203.0.113.20:5060"}, dropped)
	keep, dropped = sameKind([]string{"sip:a@203.0.113.20:5060"})
	assert.Equal(t, []string{"sip:a@203.0.113.20:5060"}, keep)
	assert.Empty(t, dropped)
	keep, _ = sameKind(nil)
	assert.Empty(t, keep)
}

// The NAT bindings table is bounded and forgets de-registered contacts.
func TestNATBindings(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	nb := newNATBindings(2)
	nb.note("sip:a@203.0.113.1:1", true, now.Add(time.Minute), now)
	nb.note("sip:b@203.0.113.1:2", true, now.Add(time.Second), now)
	nb.note("sip:c@203.0.113.1:3", true, now.Add(time.Minute), now)
	assert.False(t, nb.natted("sip:c@203.0.113.1:3", now), "full: not remembered")
	later := now.Add(2 * time.Second) // b expired: its place is taken
	nb.note("sip:c@203.0.113.1:3", true, later.Add(time.Minute), later)
	assert.True(t, nb.natted("sip:c@203.0.113.1:3", later))
	assert.False(t, nb.natted("sip:b@203.0.113.1:2", later))
	nb.note("sip:a@203.0.113.1:1", false, later.Add(time.Minute), later) // refreshed from a public address
	assert.False(t, nb.natted("sip:a@203.0.113.1:1", later))
	nb.note("sip:c@203.0.113.1:3", true, later, later) // Expires: 0
	assert.False(t, nb.natted("sip:c@203.0.113.1:3", later))
}

// sdpAddrs reads session and media c= lines, skipping hold and junk.
func TestSDPAddrs(t *testing.T) {
	body := "v=0\r\nc=IN IP4 192.168.1.10\r\nm=audio 1 RTP/AVP 0\r\nc=IN IP4 224.2.1.1/127\r\n" +
		"m=video 2 RTP/AVP 96\r\nc=IN IP6 ::\r\nc=IN IP4 nonsense\r\nc=IN IP6 fd00::1\nc=IN IP4 0.0.0.0"
	assert.Equal(t, []netip.Addr{netip.MustParseAddr("192.168.1.10"), netip.MustParseAddr("224.2.1.1"),
		netip.MustParseAddr("fd00::1")}, sdpAddrs([]byte(body)))
	assert.Empty(t, sdpAddrs(nil))
}

// The anchored calls table is bounded, expires and forgets deleted calls.
func TestAnchoredCalls(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	a := newAnchoredCalls(2)
	plan := mediaPlan{anchor: true, caller: browserSide, callee: phoneSide, why: "bridge browser to phone"}
	a.add("c1", plan, "t1", now)
	a.add("c2", plan, "t2", now.Add(time.Hour))
	a.add("c3", plan, "t3", now.Add(time.Hour))
	_, ok := a.get("c3", now.Add(time.Hour))
	assert.False(t, ok, "full: not remembered")
	later := now.Add(anchoredCallTTL + time.Minute) // c1 expired: its place is taken
	a.add("c3", plan, "t3", later)
	got, ok := a.get("c3", later)
	require.True(t, ok)
	assert.Equal(t, anchoredCall{plan: plan, callerTag: "t3", expires: later.Add(anchoredCallTTL)}, got)
	_, ok = a.get("c1", later)
	assert.False(t, ok)
	a.remove("c3")
	_, ok = a.get("c3", later)
	assert.False(t, ok)
}

// -rtpengine and its config-file field: instances are checked, several
// with weights are accepted, and it is off by default.
func TestRTPEngineOption(t *testing.T) {
	cfg, _, err := parseConfig([]string{"-data", t.TempDir()})
	require.NoError(t, err)
	assert.Empty(t, cfg.RTPEngine)
	cfg, _, err = parseConfig([]string{"-data", t.TempDir(), "-rtpengine", "udp:127.0.0.1:2223, udp:[::1]:2224=2"})
	require.NoError(t, err)
	in, err := parseRTPEngines(cfg.RTPEngine)
	require.NoError(t, err)
	assert.Len(t, in, 2)
	assert.Equal(t, 2, in[1].Weight)
	for _, bad := range []string{"udp:127.0.0.1", "udp:127.0.0.1:2223=0", "udp:127.0.0.1:2223=x"} {
		_, _, err = parseConfig([]string{"-data", t.TempDir(), "-rtpengine", bad})
		assert.ErrorContains(t, err, "rtpengine", bad)
	}
	file := t.TempDir() + "/proxy.json"
	require.NoError(t, os.WriteFile(file, []byte(`{"rtpengine": "udp:127.0.0.1:2223,udp:127.0.0.1:2224"}`), 0o600))
	cfg, _, err = parseConfig([]string{"-data", t.TempDir(), "-config", file})
	require.NoError(t, err)
	assert.Equal(t, "udp:127.0.0.1:2223,udp:127.0.0.1:2224", cfg.RTPEngine)
}
