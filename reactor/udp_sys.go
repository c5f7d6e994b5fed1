package reactor

import (
	"net"
	"net/netip"
	"strconv"
	"unsafe"

	"golang.org/x/sys/unix"
)

// mmsghdr mirrors struct mmsghdr (x/sys has none). Go rounds the struct size
// up to its alignment, which reproduces the C trailing padding on every
// architecture (64 bytes on amd64/arm64, 32 on 32-bit ones).
type mmsghdr struct {
	Hdr unix.Msghdr
	Len uint32
}

// rawSockaddr holds either a sockaddr_in or a sockaddr_in6.
type rawSockaddr = unix.RawSockaddrInet6

const (
	sizeofSockaddrInet4 = unix.SizeofSockaddrInet4
	sizeofSockaddrInet6 = unix.SizeofSockaddrInet6
)

// sendFault, when a test sets it, makes sends fail with EAGAIN while it
// returns true. A real full socket buffer cannot be produced on 127.0.0.1:
// loopback orphans the skb on transmit, so the sender's buffer never fills.
// Set it only while no socket sends (before the loops start, after they stop).
var sendFault func() bool

// recvmmsg reads up to len(hs) datagrams without blocking. The errno is
// returned as is (EAGAIN when another loop took the data first).
func recvmmsg(fd int, hs []mmsghdr) (int, unix.Errno) {
	n, _, e := unix.Syscall6(unix.SYS_RECVMMSG, uintptr(fd),
		uintptr(unsafe.Pointer(&hs[0])), uintptr(len(hs)), unix.MSG_DONTWAIT, 0, 0)
	return int(n), e
}

// sendmmsg writes up to len(hs) datagrams without blocking and returns how
// many were sent; the errno describes the first one that was not.
func sendmmsg(fd int, hs []mmsghdr) (int, unix.Errno) {
	if sendFault != nil && sendFault() {
		return 0, unix.EAGAIN
	}
	n, _, e := unix.Syscall6(unix.SYS_SENDMMSG, uintptr(fd),
		uintptr(unsafe.Pointer(&hs[0])), uintptr(len(hs)), unix.MSG_DONTWAIT, 0, 0)
	return int(n), e
}

// sendto writes one datagram to the raw address sa without allocating.
func sendto(fd int, b []byte, sa *rawSockaddr, salen uint32) unix.Errno {
	if sendFault != nil && sendFault() {
		return unix.EAGAIN
	}
	var p unsafe.Pointer
	if len(b) > 0 {
		p = unsafe.Pointer(&b[0])
	}
	_, _, e := unix.Syscall6(unix.SYS_SENDTO, uintptr(fd), uintptr(p), uintptr(len(b)),
		unix.MSG_DONTWAIT, uintptr(unsafe.Pointer(sa)), uintptr(salen))
	return e
}

// decodeSockaddr turns a sockaddr_in or sockaddr_in6 filled in by the kernel
// into an AddrPort. It allocates only for an IPv6 address with a scope id
// (link-local), whose zone becomes the decimal interface index.
func decodeSockaddr(sa *rawSockaddr) netip.AddrPort {
	switch sa.Family {
	case unix.AF_INET:
		sa4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		p := (*[2]byte)(unsafe.Pointer(&sa4.Port))
		return netip.AddrPortFrom(netip.AddrFrom4(sa4.Addr), uint16(p[0])<<8|uint16(p[1]))
	case unix.AF_INET6:
		p := (*[2]byte)(unsafe.Pointer(&sa.Port))
		a := netip.AddrFrom16(sa.Addr)
		if sa.Scope_id != 0 {
			a = a.WithZone(strconv.FormatUint(uint64(sa.Scope_id), 10))
		}
		return netip.AddrPortFrom(a, uint16(p[0])<<8|uint16(p[1]))
	}
	return netip.AddrPort{}
}

// encodeSockaddr writes to into sa for a socket of family fam and returns
// the address length. It fails (without allocating) for an address of the
// other family or an invalid one.
func encodeSockaddr(sa *rawSockaddr, fam int, to netip.AddrPort) (uint32, error) {
	a := to.Addr()
	port := to.Port()
	switch fam {
	case unix.AF_INET:
		if a.Is4In6() {
			a = a.Unmap()
		}
		if !a.Is4() {
			return 0, errAddrFamily
		}
		sa4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		*sa4 = unix.RawSockaddrInet4{Family: unix.AF_INET, Addr: a.As4()}
		p := (*[2]byte)(unsafe.Pointer(&sa4.Port))
		p[0], p[1] = byte(port>>8), byte(port)
		return sizeofSockaddrInet4, nil
	case unix.AF_INET6:
		if !a.Is6() {
			return 0, errAddrFamily
		}
		*sa = rawSockaddr{Family: unix.AF_INET6, Addr: a.As16(), Scope_id: zoneIndex(a.Zone())}
		p := (*[2]byte)(unsafe.Pointer(&sa.Port))
		p[0], p[1] = byte(port>>8), byte(port)
		return sizeofSockaddrInet6, nil
	}
	return 0, errAddrFamily
}

// zoneIndex maps an IPv6 zone (an interface index or name) to a scope id.
func zoneIndex(zone string) uint32 {
	if zone == "" {
		return 0
	}
	if n, err := strconv.ParseUint(zone, 10, 32); err == nil {
		return uint32(n)
	}
	if ifi, err := net.InterfaceByName(zone); err == nil {
		return uint32(ifi.Index)
	}
	return 0
}

// sockaddrFor converts a bind address.
func sockaddrFor(ap netip.AddrPort) (unix.Sockaddr, int) {
	a := ap.Addr()
	if a.Is4() || a.Is4In6() {
		return &unix.SockaddrInet4{Port: int(ap.Port()), Addr: a.Unmap().As4()}, unix.AF_INET
	}
	return &unix.SockaddrInet6{Port: int(ap.Port()), Addr: a.As16(), ZoneId: zoneIndex(a.Zone())}, unix.AF_INET6
}

// addrPortOf converts what getsockname returns.
func addrPortOf(sa unix.Sockaddr) netip.AddrPort {
	switch sa := sa.(type) {
	case *unix.SockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), uint16(sa.Port))
	case *unix.SockaddrInet6:
		a := netip.AddrFrom16(sa.Addr)
		if sa.ZoneId != 0 {
			a = a.WithZone(strconv.FormatUint(uint64(sa.ZoneId), 10))
		}
		return netip.AddrPortFrom(a, uint16(sa.Port))
	}
	return netip.AddrPort{}
}
