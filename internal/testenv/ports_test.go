package testenv

import (
	"net"
	"strconv"
	"testing"
)

// StaticPorts gives distinct ports, free for UDP and TCP, below the
// ephemeral range.
func TestStaticPorts(t *testing.T) {
	ps := StaticPorts(t, 5)
	if len(ps) != 5 {
		t.Fatalf("got %d ports", len(ps))
	}
	seen := map[int]bool{}
	for _, p := range ps {
		if seen[p] || p >= ephemeralLow() || p < 10000 {
			t.Fatalf("port %d: duplicate or outside 10000..%d: %v", p, ephemeralLow()-1, ps)
		}
		seen[p] = true
		c, err := net.ListenPacket("udp4", "127.0.0.1:"+strconv.Itoa(p))
		if err != nil {
			t.Fatalf("port %d not bindable: %v", p, err)
		}
		c.Close()
	}
}
