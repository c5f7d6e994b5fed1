package hep

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"time"
)

// Chunk types of the generic vendor (0x0000) used by this encoder, from the
// HEPv3 specification.
const (
	ChunkIPFamily      = 0x0001 // uint8: AF_INET (2) or AF_INET6 (10)
	ChunkIPProto       = 0x0002 // uint8: IPPROTO_UDP (17), IPPROTO_TCP (6)
	ChunkIPv4Src       = 0x0003 // 4 bytes
	ChunkIPv4Dst       = 0x0004 // 4 bytes
	ChunkIPv6Src       = 0x0005 // 16 bytes
	ChunkIPv6Dst       = 0x0006 // 16 bytes
	ChunkSrcPort       = 0x0007 // uint16
	ChunkDstPort       = 0x0008 // uint16
	ChunkTimeSec       = 0x0009 // uint32, seconds since the Unix epoch
	ChunkTimeUsec      = 0x000a // uint32, microseconds within the second
	ChunkProtoType     = 0x000b // uint8: 1 = SIP
	ChunkAgentID       = 0x000c // uint32: capture agent (node) ID
	ChunkAuthKey       = 0x000e // octets: collector password
	ChunkPayload       = 0x000f // octets: the captured message
	ChunkCorrelationID = 0x0011 // octets: correlates packets (Call-ID)
)

// Values of the family, protocol and type chunks.
const (
	FamilyIPv4 = 2
	FamilyIPv6 = 10
	ProtoUDP   = 17
	ProtoTCP   = 6
	TypeSIP    = 1
)

// chunkHeader is vendor (2), type (2) and length (2), the length counting
// the header itself.
const chunkHeader = 6

// MaxPacket is the largest HEP packet: its length field has 16 bits.
const MaxPacket = 65535

// ErrTooLarge is returned by Encode when the packet would not fit in the
// 16-bit length of HEPv3.
var ErrTooLarge = errors.New("hep: packet larger than 65535 bytes")

// ErrFamily is returned by Encode when an address is missing.
var ErrFamily = errors.New("hep: invalid source or destination address")

// Packet is what one HEPv3 packet carries.
type Packet struct {
	// Src and Dst are the addresses of the captured message; an IPv4 and
	// an IPv6 address are both sent as IPv6.
	Src, Dst netip.AddrPort
	// Time is when the message was seen.
	Time time.Time
	// Proto is the IP protocol (ProtoUDP, ProtoTCP).
	Proto uint8
	// Type is the payload protocol (TypeSIP).
	Type uint8
	// AgentID identifies the capturing node to the collector.
	AgentID uint32
	// AuthKey is the collector's password; empty leaves the chunk out.
	AuthKey string
	// CorrelationID, when set, is sent as the correlation chunk.
	CorrelationID string
	// Payload is the captured message.
	Payload []byte
}

// Size returns the length of p's encoding.
func (p *Packet) Size() int {
	n := 6 + 3*(chunkHeader+1) + 2*(chunkHeader+2) + 3*(chunkHeader+4) + chunkHeader + len(p.Payload)
	if p.v6() {
		n += 2 * (chunkHeader + 16)
	} else {
		n += 2 * (chunkHeader + 4)
	}
	if p.AuthKey != "" {
		n += chunkHeader + len(p.AuthKey)
	}
	if p.CorrelationID != "" {
		n += chunkHeader + len(p.CorrelationID)
	}
	return n
}

func (p *Packet) v6() bool {
	return !p.Src.Addr().Unmap().Is4() || !p.Dst.Addr().Unmap().Is4()
}

// Encode appends the HEPv3 encoding of p to dst and returns the result.
func Encode(dst []byte, p *Packet) ([]byte, error) {
	if !p.Src.Addr().IsValid() || !p.Dst.Addr().IsValid() {
		return dst, ErrFamily
	}
	size := p.Size()
	if size > MaxPacket {
		return dst, fmt.Errorf("%w: %d bytes", ErrTooLarge, size)
	}
	b := append(dst, "HEP3"...)
	b = binary.BigEndian.AppendUint16(b, uint16(size))
	src, dstA := p.Src.Addr().Unmap(), p.Dst.Addr().Unmap()
	if p.v6() {
		b = u8(b, ChunkIPFamily, FamilyIPv6)
		b = u8(b, ChunkIPProto, p.Proto)
		s16, d16 := src.As16(), dstA.As16()
		b = octets(b, ChunkIPv6Src, s16[:])
		b = octets(b, ChunkIPv6Dst, d16[:])
	} else {
		b = u8(b, ChunkIPFamily, FamilyIPv4)
		b = u8(b, ChunkIPProto, p.Proto)
		s4, d4 := src.As4(), dstA.As4()
		b = octets(b, ChunkIPv4Src, s4[:])
		b = octets(b, ChunkIPv4Dst, d4[:])
	}
	b = u16(b, ChunkSrcPort, p.Src.Port())
	b = u16(b, ChunkDstPort, p.Dst.Port())
	b = u32(b, ChunkTimeSec, uint32(p.Time.Unix()))
	b = u32(b, ChunkTimeUsec, uint32(p.Time.Nanosecond()/1000))
	b = u8(b, ChunkProtoType, p.Type)
	b = u32(b, ChunkAgentID, p.AgentID)
	if p.AuthKey != "" {
		b = octets(b, ChunkAuthKey, []byte(p.AuthKey))
	}
	if p.CorrelationID != "" {
		b = octets(b, ChunkCorrelationID, []byte(p.CorrelationID))
	}
	b = octets(b, ChunkPayload, p.Payload)
	return b, nil
}

func header(b []byte, typ uint16, n int) []byte {
	b = binary.BigEndian.AppendUint16(b, 0) // generic vendor
	b = binary.BigEndian.AppendUint16(b, typ)
	return binary.BigEndian.AppendUint16(b, uint16(chunkHeader+n))
}

func u8(b []byte, typ uint16, v uint8) []byte { return append(header(b, typ, 1), v) }

func u16(b []byte, typ uint16, v uint16) []byte {
	return binary.BigEndian.AppendUint16(header(b, typ, 2), v)
}

func u32(b []byte, typ uint16, v uint32) []byte {
	return binary.BigEndian.AppendUint32(header(b, typ, 4), v)
}

func octets(b []byte, typ uint16, v []byte) []byte { return append(header(b, typ, len(v)), v...) }
