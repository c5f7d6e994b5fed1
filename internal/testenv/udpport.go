package testenv

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
)

// UDP ports held by other processes, read from /proc (Linux) so that a
// check never binds the port itself: a probe bind would make the peer
// being started fail to bind it at that very moment.

// UDPPortBound reports whether something on this machine holds UDP port on
// 127.0.0.1 (so a test can wait for a peer process to be ready). It reads
// /proc/net/udp; where that cannot be read it tries to bind the port.
func UDPPortBound(port int) bool {
	if inodes, ok := udpInodes(port); ok {
		return len(inodes) > 0
	}
	c, err := net.ListenPacket("udp", "127.0.0.1:"+strconv.Itoa(port))
	if err != nil {
		return true
	}
	c.Close()
	return false
}

// ProcessHoldsPort reports whether process pid holds a socket bound to
// port on 127.0.0.1 (or on every address): a UDP socket for network
// "udp", a listening TCP socket for "tcp". A process that is gone (or a
// zombie) holds nothing. ok is false when /proc cannot tell (not Linux).
func ProcessHoldsPort(pid int, network string, port int) (held, ok bool) {
	var inodes map[string]bool
	switch network {
	case "udp":
		inodes, ok = sockInodes("/proc/net/udp", port, "")
	case "tcp":
		inodes, ok = sockInodes("/proc/net/tcp", port, tcpListen)
	}
	if !ok {
		return false, false
	}
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	fds, err := os.ReadDir(dir)
	if err != nil {
		return false, true
	}
	for _, fd := range fds {
		link, err := os.Readlink(dir + "/" + fd.Name())
		if err != nil || !strings.HasPrefix(link, "socket:[") {
			continue
		}
		if inodes[strings.TrimSuffix(strings.TrimPrefix(link, "socket:["), "]")] {
			return true, true
		}
	}
	return false, true
}

// tcpListen is the LISTEN state in /proc/net/tcp.
const tcpListen = "0A"

// udpInodes returns the inodes of the UDP sockets bound to port on
// 127.0.0.1 or 0.0.0.0; ok is false when /proc/net/udp cannot be read.
func udpInodes(port int) (map[string]bool, bool) { return sockInodes("/proc/net/udp", port, "") }

// sockInodes returns the socket inodes of a /proc/net table (udp, tcp)
// bound to port on 127.0.0.1 or 0.0.0.0, in state when it is not empty;
// ok is false when the file cannot be read.
func sockInodes(table string, port int, state string) (map[string]bool, bool) {
	f, err := os.Open(table)
	if err != nil {
		return nil, false
	}
	defer f.Close()
	suffix := fmt.Sprintf(":%04X", port)
	inodes := map[string]bool{}
	sc := bufio.NewScanner(f)
	sc.Scan() // header
	for sc.Scan() {
		// sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode …
		fields := strings.Fields(sc.Text())
		if len(fields) < 10 || (state != "" && fields[3] != state) {
			continue
		}
		local := fields[1]
		if (local == "0100007F"+suffix || local == "00000000"+suffix) && fields[9] != "0" {
			inodes[fields[9]] = true
		}
	}
	return inodes, sc.Err() == nil
}
