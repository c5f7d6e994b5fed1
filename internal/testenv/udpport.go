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

// ProcessHoldsUDPPort reports whether process pid holds a socket bound to
// UDP port on 127.0.0.1 (or on every address). ok is false when /proc
// cannot tell (not Linux, or the process is gone).
func ProcessHoldsUDPPort(pid, port int) (held, ok bool) {
	inodes, ok := udpInodes(port)
	if !ok {
		return false, false
	}
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	fds, err := os.ReadDir(dir)
	if err != nil {
		return false, false
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

// udpInodes returns the socket inodes of /proc/net/udp bound to port on
// 127.0.0.1 or 0.0.0.0; ok is false when the file cannot be read.
func udpInodes(port int) (map[string]bool, bool) {
	f, err := os.Open("/proc/net/udp")
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
		if len(fields) < 10 {
			continue
		}
		local := fields[1]
		if (local == "0100007F"+suffix || local == "00000000"+suffix) && fields[9] != "0" {
			inodes[fields[9]] = true
		}
	}
	return inodes, sc.Err() == nil
}
