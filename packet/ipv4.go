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

	ipv4FlagDF       = 0x4000
	ipv4FlagMF       = 0x2000
	ipv4FragOffMask  = 0x1fff
	maxDatagramBytes = 65535
)

// ipv4Packet is a view of an IPv4 packet: header, options and payload,
// ending at the header's total length. parseIPv4 makes one; its accessors
// read the caller's bytes in place and never allocate.
type ipv4Packet []byte

// ipv4HeaderLen checks that b starts with a whole IPv4 header (version 4,
// IHL >= 5, header within b) and returns its length in bytes. Unlike
// parseIPv4 it does not look at the total length, for the readers that may
// not: a quote in an ICMP error is usually cut short, and Segment rewrites
// the total length of a super-packet.
func ipv4HeaderLen(b []byte) (int, error) {
	if len(b) < IPv4MinHeaderLen {
		return 0, ErrTruncated
	}
	if IPVersion(b) != 4 {
		return 0, ErrBadVersion
	}
	hl := ipv4Packet(b).headerLen()
	if hl < IPv4MinHeaderLen || hl > len(b) {
		return 0, ErrBadHeaderLen
	}
	return hl, nil
}

// parseIPv4 checks that b starts with an IPv4 header (the checks of
// ipv4HeaderLen, and header length <= total length <= len(b)) and returns the
// view b[:total length]. It spells out ipv4HeaderLen instead of calling it:
// through the call it would no longer be inlined into Decode, which costs
// Decode some 20% (BenchmarkDecodeTCP4). FuzzParseIPv4 checks that the two
// agree.
func parseIPv4(b []byte) (ipv4Packet, error) {
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
	return ipv4Packet(b[:tl]), nil
}

// headerLen returns the header length in bytes, options included (IHL*4).
func (b ipv4Packet) headerLen() int { return int(b[ipv4VersIHL]&0x0f) * 4 }

// totalLen returns the Total Length field: header plus payload in bytes.
func (b ipv4Packet) totalLen() int { return int(binary.BigEndian.Uint16(b[ipv4TotalLen:])) }

// id returns the Identification field.
func (b ipv4Packet) id() uint16 { return binary.BigEndian.Uint16(b[ipv4ID:]) }

// flagsFrag returns the flags and Fragment Offset, the 16 bits at byte 6.
func (b ipv4Packet) flagsFrag() uint16 { return binary.BigEndian.Uint16(b[ipv4FlagsFrag:]) }

// dontFragment reports the DF flag.
func (b ipv4Packet) dontFragment() bool {
	return binary.BigEndian.Uint16(b[ipv4FlagsFrag:])&ipv4FlagDF != 0
}

// moreFragments reports the MF flag.
func (b ipv4Packet) moreFragments() bool {
	return binary.BigEndian.Uint16(b[ipv4FlagsFrag:])&ipv4FlagMF != 0
}

// fragOffset returns the Fragment Offset in 8-byte units.
func (b ipv4Packet) fragOffset() uint16 {
	return binary.BigEndian.Uint16(b[ipv4FlagsFrag:]) & ipv4FragOffMask
}

// isFragment reports whether the packet is a fragment: MF set or offset != 0.
func (b ipv4Packet) isFragment() bool {
	return binary.BigEndian.Uint16(b[ipv4FlagsFrag:])&(ipv4FlagMF|ipv4FragOffMask) != 0
}

// ttl returns the Time to Live.
func (b ipv4Packet) ttl() uint8 { return b[ipv4TTL] }

// protocol returns the Protocol field, the transport protocol number.
func (b ipv4Packet) protocol() uint8 { return b[ipv4Proto] }

// checksum returns the Header Checksum field.
func (b ipv4Packet) checksum() uint16 { return binary.BigEndian.Uint16(b[ipv4Checksum:]) }

// src returns the source address.
func (b ipv4Packet) src() netip.Addr { return netip.AddrFrom4([4]byte(b[ipv4Src : ipv4Src+4])) }

// dst returns the destination address.
func (b ipv4Packet) dst() netip.Addr { return netip.AddrFrom4([4]byte(b[ipv4Dst : ipv4Dst+4])) }

// options returns the options and padding, empty when IHL is 5.
func (b ipv4Packet) options() []byte { return b[IPv4MinHeaderLen:b.headerLen()] }

// payload returns the bytes after the header up to the total length.
func (b ipv4Packet) payload() []byte { return b[b.headerLen():] }

// checksumValid reports whether the header checksum is correct.
func (b ipv4Packet) checksumValid() bool { return Checksum(b[:b.headerLen()], 0) == 0 }

// setChecksum sets the Header Checksum field.
func (b ipv4Packet) setChecksum(c uint16) { binary.BigEndian.PutUint16(b[ipv4Checksum:], c) }

// setTotalLen sets the Total Length field.
func (b ipv4Packet) setTotalLen(n int) { binary.BigEndian.PutUint16(b[ipv4TotalLen:], uint16(n)) }

// setID sets the Identification field.
func (b ipv4Packet) setID(id uint16) { binary.BigEndian.PutUint16(b[ipv4ID:], id) }

// fixChecksum computes the header checksum afresh and stores it.
func (b ipv4Packet) fixChecksum() {
	b.setChecksum(0)
	b.setChecksum(Checksum(b[:b.headerLen()], 0))
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
