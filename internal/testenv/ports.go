package testenv

import (
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
)

// StaticPorts returns n distinct ports on 127.0.0.1 that were free for
// both UDP and TCP a moment ago, picked at random below the kernel's
// ephemeral range. Use it for programs started with a port on their
// command line some time after the port is chosen (a README line run
// after a build): a port from FreeUDPPort comes from the ephemeral range,
// where any socket bound to port 0 meanwhile, in this process or another,
// may get it. Below that range only explicit binds compete.
func StaticPorts(t testing.TB, n int) []int {
	t.Helper()
	hi := ephemeralLow()
	lo := max(hi-12000, 10000)
	if hi-lo < 1000 {
		t.Fatalf("testenv: no room below the ephemeral port range (starts at %d)", hi)
	}
	seen := map[int]bool{}
	var ports []int
	for tries := 0; len(ports) < n; tries++ {
		if tries > 1000 {
			t.Fatalf("testenv: no free port in %d..%d after %d tries", lo, hi-1, tries)
		}
		p := lo + rand.IntN(hi-lo)
		if seen[p] || !portFree(p) {
			continue
		}
		seen[p] = true
		ports = append(ports, p)
	}
	return ports
}

// ephemeralLow returns the first port of the kernel's ephemeral range
// (32768 when it cannot be read).
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 32768
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 32768
	}
	v, err := strconv.Atoi(f[0])
	if err != nil || v <= 10000 {
		return 32768
	}
	return v
}

// portFree reports whether port can be bound on 127.0.0.1 for UDP and TCP.
func portFree(port int) bool {
	addr := "127.0.0.1:" + strconv.Itoa(port)
	u, err := net.ListenPacket("udp4", addr)
	if err != nil {
		return false
	}
	defer u.Close()
	l, err := net.Listen("tcp4", addr)
	if err != nil {
		return false
	}
	return l.Close() == nil
}
