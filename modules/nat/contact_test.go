package nat_test

import (
	"net/netip"
	"testing"

	"github.com/emiago/sipgo/sip"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/asyncsip/asyncsip/modules/nat"
	"github.com/asyncsip/asyncsip/siptest"
)

// register builds a REGISTER sent over transport with the Contact header
// value contact ("" for none).
func register(t *testing.T, transport, contact string) *sip.Request {
	t.Helper()
	raw := "REGISTER sip:example.com SIP/2.0\r\n" +
		"Via: SIP/2.0/" + transport + " 192.168.1.10:5060;branch=z9hG4bKnat1;rport\r\n" +
		"Max-Forwards: 70\r\n" +
		"From: <sip:alice@example.com>;tag=a1\r\n" +
		"To: <sip:alice@example.com>\r\n" +
		"Call-ID: nat-fix@test\r\n" +
		"CSeq: 1 REGISTER\r\n"
	raw += "Content-Length: 0\r\n\r\n"
	msg, err := sip.ParseMessage([]byte(raw))
	require.NoError(t, err)
	req, ok := msg.(*sip.Request)
	require.True(t, ok)
	if contact != "" {
		// Unparsed, as a route may see a header added or changed after
		// parsing; sipgo's parser would refuse a malformed one.
		req.AppendHeader(sip.NewHeader("Contact", contact))
	}
	return req
}

func TestFixContact(t *testing.T) {
	v4 := netip.MustParseAddrPort("203.0.113.5:40000")
	v6 := netip.MustParseAddrPort("[2001:db8::5]:40000")
	for name, c := range map[string]struct {
		transport, contact string
		src                netip.AddrPort
		want               string
		behind, err        bool
	}{
		"public contact is the source": {"UDP", "<sip:alice@203.0.113.5:40000>", v4,
			"sip:alice@203.0.113.5:40000", false, false},
		"private contact behind NAT": {"UDP", "<sip:alice@192.168.1.10:5060>;expires=300", v4,
			"sip:alice@203.0.113.5:40000", true, false},
		"CGNAT contact, default port": {"UDP", "<sip:alice@100.64.1.2>", v4,
			"sip:alice@203.0.113.5:40000", true, false},
		"public contact, port changed by the NAT": {"UDP", "<sip:alice@203.0.113.5:5060>", v4,
			"sip:alice@203.0.113.5:40000", true, false},
		"private contact on the proxy's own network": {"UDP", "<sip:alice@10.0.0.5:5060>",
			netip.MustParseAddrPort("10.0.0.5:5060"), "sip:alice@10.0.0.5:5060", false, false},
		"host name is left alone": {"UDP", "<sip:alice@pc.example.com:5060>", v4,
			"sip:alice@pc.example.com:5060", false, false},
		"browser over WebSocket (.invalid host, RFC 7118)": {"WS", "<sip:k3v9@df7jal23ls0d.invalid;transport=ws>;+sip.ice", v4,
			"sip:k3v9@203.0.113.5:40000;transport=ws", true, false},
		"browser over secure WebSocket, upper case": {"WSS", "<sip:k3v9@DF7JAL23LS0D.INVALID;transport=ws>", v4,
			"sip:k3v9@203.0.113.5:40000;transport=ws", true, false},
		"params and headers kept": {"UDP", `"Alice" <sip:alice:pw@192.168.1.10:5062;ob;transport=udp;user=phone?X-A=1>;+sip.instance="<urn:uuid:1>"`, v4,
			"sip:alice:pw@203.0.113.5:40000;ob;transport=udp;user=phone?X-A=1", true, false},
		"IPv6 source": {"UDP", "<sip:alice@[fd00::10]:5060>", v6,
			"sip:alice@[2001:db8::5]:40000", true, false},
		"IPv6 contact is the source": {"UDP", "<sip:alice@[2001:db8::5]:40000>", v6,
			"sip:alice@[2001:db8::5]:40000", false, false},
		"IPv4-mapped source": {"UDP", "<sip:alice@192.168.1.10:5060>", netip.MustParseAddrPort("[::ffff:203.0.113.5]:40000"),
			"sip:alice@203.0.113.5:40000", true, false},
		"TCP source gets transport=tcp": {"TCP", "<sip:alice@192.168.1.10:5060>", v4,
			"sip:alice@203.0.113.5:40000;transport=tcp", true, false},
		"TLS keeps its own transport": {"TLS", "<sip:alice@192.168.1.10;transport=tls>", v4,
			"sip:alice@203.0.113.5:40000;transport=tls", true, false},
		"sips default port 5061 matches": {"TLS", "<sips:alice@203.0.113.5>", netip.MustParseAddrPort("203.0.113.5:5061"),
			"sips:alice@203.0.113.5", false, false},
		"first of several contacts": {"UDP", "<sip:alice@192.168.1.10:5060>, <sip:alice@192.168.1.11:5060>", v4,
			"sip:alice@203.0.113.5:40000", true, false},
		"wildcard":   {"UDP", "*", v4, "*", false, false},
		"no contact": {"UDP", "", v4, "", false, false},
		"not SIP":    {"UDP", "<tel:+15551234>", v4, "", false, true},
		"malformed":  {"UDP", "<sip:alice@192.168.1.10:5060", v4, "", false, true},
	} {
		t.Run(name, func(t *testing.T) {
			got, behind, err := nat.FixContact(register(t, c.transport, c.contact), c.src)
			if c.err {
				assert.Error(t, err)
				assert.False(t, behind)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, c.want, got)
			assert.Equal(t, c.behind, behind)
			if c.contact != "" {
				assert.Equal(t, behind, nat.Behind(register(t, c.transport, c.contact), c.src), "Behind agrees")
			}
		})
	}
}

// A Contact sipgo parsed with the message is fixed the same way.
func TestFixContactOfParsedRequest(t *testing.T) {
	req := siptest.NewRegister("sip:alice@example.com", "sip:alice@10.0.0.5:5060;ob", 300,
		siptest.WithSource("127.0.0.5:33000"))
	src := netip.MustParseAddrPort("127.0.0.5:33000")
	got, behind, err := nat.FixContact(req, src)
	require.NoError(t, err)
	assert.True(t, behind)
	assert.Equal(t, "sip:alice@127.0.0.5:33000;ob", got)
	assert.True(t, nat.Behind(req, src))
}

// FixURI fixes one URI (a registrar's loop over the Contacts): a copy when
// behind, u itself when not.
func TestFixURI(t *testing.T) {
	var u sip.Uri
	require.NoError(t, sip.ParseUri("sip:alice@10.0.0.5:5060;ob", &u))
	src := netip.MustParseAddrPort("198.51.100.7:6000")
	f, behind := nat.FixURI(&u, src, "WS")
	assert.True(t, behind)
	assert.Equal(t, "sip:alice@198.51.100.7:6000;ob;transport=ws", f.String())
	assert.Equal(t, "sip:alice@10.0.0.5:5060;ob", u.String(), "u untouched")
	same, behind := nat.FixURI(&u, netip.MustParseAddrPort("10.0.0.5:5060"), "UDP")
	assert.False(t, behind)
	assert.Same(t, &u, same)
}
