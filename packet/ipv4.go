package packet

import (
	"encoding/binary"
	"net/netip"
)

// IPv4 header layout (RFC 791 3.1).
//
//	 0                   1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|Version|  IHL  |Type of Service|          Total Length         |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|         Identification        |Flags|      Fragment Offset    |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|  Time to Live |    Protocol   |         Header Checksum       |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                       Source Address                          |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                    Destination Address                        |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                    Options                    |    Padding    |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
const (
	ipv4VersIHL   = 0
	ipv4TOS       = 1
	ipv4TotalLen  = 2
	ipv4ID        = 4
	ipv4FlagsFrag = 6
	ipv4TTL       = 8
	ipv4Proto     = 9
	ipv4Checksum  = 10
	ipv4Src       = 12
	ipv4Dst       = 16

	// IPv4MinHeaderLen is the length of an IPv4 header without options.
	IPv4MinHeaderLen = 20
	// IPv4MaxHeaderLen is the largest IHL (15) in bytes.
	IPv4MaxHeaderLen = 60

	ipv4FlagDF       = 0x4000
	ipv4FlagMF       = 0x2000
	ipv4FragOffMask  = 0x1fff
	maxDatagramBytes = 65535
)

// IPv4 is a view of an IPv4 packet: header, options and payload, ending at
// the header's total length. Only ParseIPv4 makes one; its accessors read the
// caller's bytes in place and never allocate. Setters do not update the
// header checksum unless they say so.
type IPv4 []byte

// ParseIPv4 checks that b starts with an IPv4 header (version 4, IHL >= 5,
// header within b, header length <= total length <= len(b)) and returns the
// view b[:total length].
func ParseIPv4(b []byte) (IPv4, error) {
	if len(b) < IPv4MinHeaderLen {
		return nil, ErrTruncated
	}
	if b[ipv4VersIHL]>>4 != 4 {
		return nil, ErrBadVersion
	}
	hl := int(b[ipv4VersIHL]&0x0f) * 4
	if hl < IPv4MinHeaderLen || hl > len(b) {
		return nil, ErrBadHeaderLen
	}
	tl := int(binary.BigEndian.Uint16(b[ipv4TotalLen:]))
	if tl < hl || tl > len(b) {
		return nil, ErrBadTotalLen
	}
	return IPv4(b[:tl]), nil
}

// HeaderLen returns the header length in bytes, options included (IHL*4).
func (b IPv4) HeaderLen() int { return int(b[ipv4VersIHL]&0x0f) * 4 }

// TOS returns the Type of Service (DSCP and ECN) byte.
func (b IPv4) TOS() uint8 { return b[ipv4TOS] }

// TotalLen returns the Total Length field: header plus payload in bytes.
func (b IPv4) TotalLen() int { return int(binary.BigEndian.Uint16(b[ipv4TotalLen:])) }

// ID returns the Identification field.
func (b IPv4) ID() uint16 { return binary.BigEndian.Uint16(b[ipv4ID:]) }

// DontFragment reports the DF flag.
func (b IPv4) DontFragment() bool {
	return binary.BigEndian.Uint16(b[ipv4FlagsFrag:])&ipv4FlagDF != 0
}

// MoreFragments reports the MF flag.
func (b IPv4) MoreFragments() bool {
	return binary.BigEndian.Uint16(b[ipv4FlagsFrag:])&ipv4FlagMF != 0
}

// FragOffset returns the Fragment Offset in 8-byte units.
func (b IPv4) FragOffset() uint16 {
	return binary.BigEndian.Uint16(b[ipv4FlagsFrag:]) & ipv4FragOffMask
}

// IsFragment reports whether the packet is a fragment: MF set or offset != 0.
func (b IPv4) IsFragment() bool {
	return binary.BigEndian.Uint16(b[ipv4FlagsFrag:])&(ipv4FlagMF|ipv4FragOffMask) != 0
}

// TTL returns the Time to Live.
func (b IPv4) TTL() uint8 { return b[ipv4TTL] }

// Protocol returns the Protocol field, the transport protocol number.
func (b IPv4) Protocol() uint8 { return b[ipv4Proto] }

// Checksum returns the Header Checksum field.
func (b IPv4) Checksum() uint16 { return binary.BigEndian.Uint16(b[ipv4Checksum:]) }

// Src returns the source address.
func (b IPv4) Src() netip.Addr { return netip.AddrFrom4([4]byte(b[ipv4Src : ipv4Src+4])) }

// Dst returns the destination address.
func (b IPv4) Dst() netip.Addr { return netip.AddrFrom4([4]byte(b[ipv4Dst : ipv4Dst+4])) }

// Options returns the options and padding, empty when IHL is 5.
func (b IPv4) Options() []byte { return b[IPv4MinHeaderLen:b.HeaderLen()] }

// Payload returns the bytes after the header up to the total length.
func (b IPv4) Payload() []byte { return b[b.HeaderLen():] }

// CalculateChecksum returns the header checksum computed with the Header
// Checksum field read as zero.
func (b IPv4) CalculateChecksum() uint16 {
	h := b[:b.HeaderLen()]
	return Checksum(h[ipv4Checksum+2:], Sum(h[:ipv4Checksum], 0))
}

// ChecksumValid reports whether the header checksum is correct.
func (b IPv4) ChecksumValid() bool { return Checksum(b[:b.HeaderLen()], 0) == 0 }

// SetChecksum sets the Header Checksum field.
func (b IPv4) SetChecksum(c uint16) { binary.BigEndian.PutUint16(b[ipv4Checksum:], c) }

// SetTTL sets the Time to Live and updates the header checksum.
func (b IPv4) SetTTL(ttl uint8) {
	old := binary.BigEndian.Uint16(b[ipv4TTL:])
	b[ipv4TTL] = ttl
	b.SetChecksum(UpdateChecksum16(b.Checksum(), old, binary.BigEndian.Uint16(b[ipv4TTL:])))
}

// putIPv4Header writes a 20-byte IPv4 header without options into b and
// computes its checksum. b must hold 20 bytes.
func putIPv4Header(b []byte, tos uint8, totalLen int, flagsFrag uint16, ttl, proto uint8, src, dst netip.Addr) {
	b[ipv4VersIHL] = 0x45
	b[ipv4TOS] = tos
	binary.BigEndian.PutUint16(b[ipv4TotalLen:], uint16(totalLen))
	binary.BigEndian.PutUint16(b[ipv4ID:], 0)
	binary.BigEndian.PutUint16(b[ipv4FlagsFrag:], flagsFrag)
	b[ipv4TTL] = ttl
	b[ipv4Proto] = proto
	binary.BigEndian.PutUint16(b[ipv4Checksum:], 0)
	s, d := src.As4(), dst.As4()
	copy(b[ipv4Src:], s[:])
	copy(b[ipv4Dst:], d[:])
	binary.BigEndian.PutUint16(b[ipv4Checksum:], Checksum(b[:IPv4MinHeaderLen], 0))
}
