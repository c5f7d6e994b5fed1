package dns_test

import (
	"errors"
	"github.com/asyncsip/asyncsip/internal/testenv"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/asyncsip/asyncsip/modules/dns"
)

// pathsZone covers every branch of RFC 3263 §4.
var pathsZone = []string{
	// NAPTR: TCP preferred over UDP by order, then preference; an
	// unsupported service (SCTP) and a non-"s" flag are skipped.
	"naptr.test. 60 IN NAPTR 10 50 \"s\" \"SIP+D2U\" \"\" _sip._udp.naptr.test.",
	"naptr.test. 60 IN NAPTR 10 40 \"s\" \"SIP+D2T\" \"\" _sip._tcp.naptr.test.",
	"naptr.test. 60 IN NAPTR 5 10 \"s\" \"SIP+D2S\" \"\" _sip._sctp.naptr.test.",
	"naptr.test. 60 IN NAPTR 5 10 \"a\" \"SIP+D2U\" \"\" other.naptr.test.",
	"naptr.test. 60 IN NAPTR 20 10 \"s\" \"SIPS+D2T\" \"\" _sips._tcp.naptr.test.",
	"_sip._udp.naptr.test. 60 IN SRV 10 1 5070 u.naptr.test.",
	"_sip._tcp.naptr.test. 60 IN SRV 10 1 5080 t.naptr.test.",
	"_sips._tcp.naptr.test. 60 IN SRV 10 1 5090 s.naptr.test.",
	"u.naptr.test. 60 IN A 127.0.0.11",
	"t.naptr.test. 60 IN A 127.0.0.12",
	"s.naptr.test. 60 IN A 127.0.0.13",
	// No NAPTR: SRV for udp, tcp and tls.
	"srv.test. 60 IN A 127.0.0.99",
	"_sip._udp.srv.test. 60 IN SRV 10 1 5062 a.srv.test.",
	"_sips._tcp.srv.test. 60 IN SRV 10 1 5063 b.srv.test.",
	"a.srv.test. 60 IN A 127.0.0.21",
	"b.srv.test. 60 IN A 127.0.0.22",
	"b.srv.test. 60 IN AAAA ::1",
	// No NAPTR, no SRV: A/AAAA.
	"plain.test. 60 IN A 127.0.0.31",
	"plain.test. 60 IN AAAA ::1",
	// SRV "." : no service here, and no fallback to A.
	"_sip._udp.nosvc.test. 60 IN SRV 0 0 0 .",
	"nosvc.test. 60 IN A 127.0.0.41",
	// A name with no address at all.
	"empty.test. 60 IN TXT \"nothing\"",
	// An SRV whose first target does not resolve: the second is used.
	"_sip._udp.half.test. 60 IN SRV 10 1 5064 gone.half.test.",
	"_sip._udp.half.test. 60 IN SRV 20 1 5065 ok.half.test.",
	"ok.half.test. 60 IN A 127.0.0.51",
}

func TestResolvePaths(t *testing.T) {
	testenv.CheckFDs(t)
	z := newZone(t, pathsZone...)
	r := newResolver(t, dns.Config{Servers: []string{serve(t, z)}})
	l := testenv.StartLoop(t)
	cases := []struct {
		name, uri string
		want      []string
		err       error
	}{
		{"numeric host", "sip:bob@127.0.0.7", []string{"127.0.0.7:5060/udp"}, nil},
		{"numeric host and port", "sip:127.0.0.7:5099;transport=tcp", []string{"127.0.0.7:5099/tcp"}, nil},
		{"numeric IPv6 SIPS", "sips:[::1]", []string{"[::1]:5061/tls"}, nil},
		{"bare host:port", "127.0.0.8:5070", []string{"127.0.0.8:5070/udp"}, nil},
		{"explicit port: A/AAAA only", "sip:naptr.test:5099", nil, dns.ErrNoRecords},
		{"explicit port with addresses", "sip:plain.test:5099", []string{"127.0.0.31:5099/udp", "[::1]:5099/udp"}, nil},
		{"explicit transport: SRV", "sip:naptr.test;transport=tcp", []string{"127.0.0.12:5080/tcp"}, nil},
		{"explicit transport, no SRV: A", "sip:plain.test;transport=tcp", []string{"127.0.0.31:5060/tcp", "[::1]:5060/tcp"}, nil},
		{"SIPS with transport=tcp is TLS", "sips:srv.test;transport=tcp", []string{"127.0.0.22:5063/tls", "[::1]:5063/tls"}, nil},
		{"NAPTR order and preference", "sip:naptr.test", []string{"127.0.0.12:5080/tcp", "127.0.0.11:5070/udp", "127.0.0.13:5090/tls"}, nil},
		{"NAPTR for SIPS: SIPS+D2T only", "sips:naptr.test", []string{"127.0.0.13:5090/tls"}, nil},
		{"no NAPTR: SRV per transport", "sip:srv.test", []string{"127.0.0.21:5062/udp", "127.0.0.22:5063/tls", "[::1]:5063/tls"}, nil},
		{"no NAPTR, no SRV: A/AAAA on 5060", "sip:alice@plain.test", []string{"127.0.0.31:5060/udp", "[::1]:5060/udp"}, nil},
		{"SIPS without SRV: 5061 over TLS", "sips:plain.test", []string{"127.0.0.31:5061/tls", "[::1]:5061/tls"}, nil},
		{"maddr is the target", "sip:bob@elsewhere.test;maddr=plain.test;transport=udp", []string{"127.0.0.31:5060/udp", "[::1]:5060/udp"}, nil},
		{"trailing dot", "sip:plain.test.:5070", []string{"127.0.0.31:5070/udp", "[::1]:5070/udp"}, nil},
		{"SRV says no service", "sip:nosvc.test;transport=udp", nil, dns.ErrNoRecords},
		{"SRV target without address skipped", "sip:half.test;transport=udp", []string{"127.0.0.51:5065/udp"}, nil},
		{"NXDOMAIN", "sip:nowhere.test", nil, dns.ErrNXDomain},
		{"no address records", "sip:empty.test", nil, dns.ErrNoRecords},
		{"bad URI", "sip:", nil, dns.ErrBadURI},
		{"unsupported transport", "sip:plain.test;transport=sctp", nil, dns.ErrBadURI},
		{"SIPS over UDP", "sips:plain.test;transport=udp", nil, dns.ErrBadURI},
		{"not SIP", "http://plain.test/", nil, dns.ErrBadURI},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			res := resolve(t, l, r, tc.uri)
			if tc.err != nil {
				require.ErrorIs(t, res.err, tc.err)
				require.Empty(t, res.ts)
				return
			}
			require.NoError(t, res.err)
			require.Equal(t, tc.want, targets(res.ts))
			for _, tg := range res.ts {
				require.NotEmpty(t, tg.Host)
			}
		})
	}
	// Second round: every answer is cached now, so every case completes
	// synchronously, with the same result, and asks the server nothing.
	before := z.total.Load()
	for _, tc := range cases {
		res := resolve(t, l, r, tc.uri)
		require.True(t, res.sync, "%s: not synchronous", tc.name)
		if tc.err != nil {
			require.ErrorIs(t, res.err, tc.err, tc.name)
		} else {
			require.Equal(t, tc.want, targets(res.ts), tc.name)
		}
	}
	require.Equal(t, before, z.total.Load(), "queries sent for cached answers")
	st := r.Stats()
	require.Positive(t, st.CacheHits)
	require.Positive(t, st.Queries)
	require.Equal(t, uint64(2*len(cases)), st.Resolutions)
}

func TestResolveTTLAndURI(t *testing.T) {
	z := newZone(t, pathsZone...)
	r := newResolver(t, dns.Config{Servers: []string{serve(t, z)}, IPv4Only: true})
	l := testenv.StartLoop(t)
	res := resolve(t, l, r, "sip:srv.test")
	require.NoError(t, res.err)
	require.Equal(t, []string{"127.0.0.21:5062/udp", "127.0.0.22:5063/tls"}, targets(res.ts))
	require.Zero(t, z.count("b.srv.test", "AAAA"), "IPv4Only asked for AAAA")
	tg := res.ts[1]
	require.Equal(t, "b.srv.test", tg.Host)
	require.Equal(t, "sip:127.0.0.22:5063;transport=tls", tg.URI())
	require.Equal(t, "sip:127.0.0.21:5062", res.ts[0].URI())
	require.InDelta(t, 60, tg.TTL.Seconds(), 1)
}

func TestNewResolverBadConfig(t *testing.T) {
	for _, cfg := range []dns.Config{
		{Servers: []string{"not-an-address"}},
		{Servers: []string{"127.0.0.1"}},
		{Servers: []string{"127.0.0.1:53"}, Transports: []string{"sctp"}},
		{Servers: []string{"127.0.0.1:53"}, MinTTL: 2 * 3600e9, MaxTTL: 3600e9},
	} {
		_, err := dns.NewResolver(cfg)
		require.ErrorIs(t, err, dns.ErrBadConfig, "%+v", cfg)
	}
}

func TestResolveAfterClose(t *testing.T) {
	r := newResolver(t, dns.Config{Servers: []string{"127.0.0.1:53"}})
	l := testenv.StartLoop(t)
	require.NoError(t, r.Close(t.Context()))
	res := resolve(t, l, r, "sip:example.test")
	require.ErrorIs(t, res.err, dns.ErrClosed)
	require.True(t, res.sync)
}

func TestKindOf(t *testing.T) {
	require.Equal(t, dns.KindOK, dns.KindOf(nil))
	for k, err := range map[dns.Kind]error{
		dns.KindNXDomain: dns.ErrNXDomain, dns.KindNoRecords: dns.ErrNoRecords, dns.KindServFail: dns.ErrServFail,
		dns.KindTimeout: dns.ErrTimeout, dns.KindBadURI: dns.ErrBadURI, dns.KindNotCached: dns.ErrNotCached,
		dns.KindOther: errors.New("x"),
	} {
		require.Equal(t, k, dns.KindOf(err))
	}
	require.True(t, slices.Contains([]dns.Kind{dns.KindTimeout}, dns.KindOf(errors.Join(dns.ErrTimeout))))
}

// A truncated UDP answer is asked again over TCP.
func TestTruncatedAnswerRetriedOverTCP(t *testing.T) {
	testenv.CheckFDs(t)
	z := newZone(t, "big.test. 60 IN A 127.0.0.96")
	z.truncateUDP = true
	r := newResolver(t, dns.Config{Servers: []string{serveUDPAndTCP(t, z)}, IPv4Only: true})
	l := testenv.StartLoop(t)
	res := resolve(t, l, r, "sip:big.test:5060")
	require.NoError(t, res.err)
	require.Equal(t, []string{"127.0.0.96:5060/udp"}, targets(res.ts))
	require.Equal(t, 2, z.count("big.test", "A"), "one query over UDP, one over TCP")
}

// A CNAME chain in the answer ends in the records asked for.
func TestCNAME(t *testing.T) {
	z := newZone(t,
		"_sip._udp.alias.test. 60 IN SRV 10 1 5066 sip.alias.test.",
		"sip.alias.test. 60 IN CNAME real.alias.test.",
		"real.alias.test. 30 IN A 127.0.0.97",
	)
	r := newResolver(t, dns.Config{Servers: []string{serve(t, z)}, IPv4Only: true})
	l := testenv.StartLoop(t)
	res := resolve(t, l, r, "sip:alias.test;transport=udp")
	require.NoError(t, res.err)
	require.Equal(t, []string{"127.0.0.97:5066/udp"}, targets(res.ts))
	require.Equal(t, "sip.alias.test", res.ts[0].Host)
	require.Equal(t, 30*time.Second, res.ts[0].TTL)
}
