package sipdns

import (
	"testing"

	mdns "github.com/miekg/dns"
)

// FuzzParseSIPURI: any Request-URI from the network parses or fails with
// ErrBadURI, never panics, and a parsed host is never empty.
func FuzzParseSIPURI(f *testing.F) {
	for _, s := range []string{"sip:bob@example.com", "sips:[::1]:5061;transport=tcp", "example.com:5070",
		"sip:a@b;transport=ws", "sip:", "sip:@", "sips:h;transport=udp", "sip:h:99999", "sip:[::1", "tel:+123"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		u, err := parseSIPURI(s)
		if err != nil {
			return
		}
		if u.host == "" {
			t.Fatalf("%q: empty host", s)
		}
		if u.transport != "" {
			if _, ok := transports[u.transport]; !ok {
				t.Fatalf("%q: transport %q", s, u.transport)
			}
		}
		if u.sips && u.transport != "" && !secure(u.transport) {
			t.Fatalf("%q: SIPS over %s", s, u.transport)
		}
	})
}

// FuzzOrderSRV: any set of SRV records from a server comes out as the same
// records, by non-decreasing priority.
func FuzzOrderSRV(f *testing.F) {
	f.Add([]byte{10, 60, 10, 30, 20, 0, 10, 0}, uint8(3))
	f.Fuzz(func(t *testing.T, b []byte, seed uint8) {
		var srvs []*mdns.SRV
		for i := 0; i+1 < len(b) && len(srvs) < 64; i += 2 {
			srvs = append(srvs, &mdns.SRV{Priority: uint16(b[i] % 4), Weight: uint16(b[i+1]) * 257})
		}
		n := int(seed)
		out := orderSRV(append([]*mdns.SRV(nil), srvs...), func(k int) int { n = n*31 + 7; return (n & 0xffff) % k })
		if len(out) != len(srvs) {
			t.Fatalf("%d records in, %d out", len(srvs), len(out))
		}
		seen := map[*mdns.SRV]bool{}
		for i, s := range out {
			if seen[s] {
				t.Fatal("record twice")
			}
			seen[s] = true
			if i > 0 && out[i-1].Priority > s.Priority {
				t.Fatal("priorities out of order")
			}
		}
	})
}
