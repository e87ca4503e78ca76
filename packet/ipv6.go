package packet

import (
	"encoding/binary"
	"net/netip"
)

// IPv6 header layout (RFC 8200 3).
//
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|Version| Traffic Class |           Flow Label                  |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|         Payload Length        |  Next Header  |   Hop Limit   |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                 Source Address (128 bits)                     |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|              Destination Address (128 bits)                   |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
const (
	ipv6PayloadLen = 4
	ipv6NextHeader = 6
	ipv6HopLimit   = 7
	ipv6Src        = 8
	ipv6Dst        = 24

	// IPv6HeaderLen is the length of the fixed IPv6 header.
	IPv6HeaderLen = 40
)

// ipv6Packet is a view of an IPv6 packet: fixed header, extension headers
// and upper-layer data, ending at 40 + Payload Length. parseIPv6 makes one;
// its accessors read the caller's bytes in place and never allocate.
// Jumbograms (RFC 2675) are not supported: a zero Payload Length means an
// empty payload.
type ipv6Packet []byte

// parseIPv6 checks that b starts with an IPv6 header (version 6, 40 bytes,
// 40 + Payload Length <= len(b)) and returns the view b[:40+Payload Length].
// The extension header chain is checked by chain.
func parseIPv6(b []byte) (ipv6Packet, error) {
	if len(b) < IPv6HeaderLen {
		return nil, ErrTruncated
	}
	h := ipv6Packet(b)
	if IPVersion(b) != 6 {
		return nil, ErrBadVersion
	}
	tl := IPv6HeaderLen + h.payloadLen()
	if tl > len(b) {
		return nil, ErrBadTotalLen
	}
	return h[:tl], nil
}

// payloadLen returns the Payload Length: bytes after the fixed header,
// extension headers included.
func (b ipv6Packet) payloadLen() int { return int(binary.BigEndian.Uint16(b[ipv6PayloadLen:])) }

// setPayloadLen sets the Payload Length field.
func (b ipv6Packet) setPayloadLen(n int) { binary.BigEndian.PutUint16(b[ipv6PayloadLen:], uint16(n)) }

// nextHeader returns the Next Header field of the fixed header.
func (b ipv6Packet) nextHeader() uint8 { return b[ipv6NextHeader] }

// hopLimit returns the Hop Limit.
func (b ipv6Packet) hopLimit() uint8 { return b[ipv6HopLimit] }

// src returns the source address.
func (b ipv6Packet) src() netip.Addr { return netip.AddrFrom16([16]byte(b[ipv6Src : ipv6Src+16])) }

// dst returns the destination address.
func (b ipv6Packet) dst() netip.Addr { return netip.AddrFrom16([16]byte(b[ipv6Dst : ipv6Dst+16])) }

// payload returns the bytes after the fixed header, extension headers included.
func (b ipv6Packet) payload() []byte { return b[IPv6HeaderLen:] }

// ipv6Chain is where an IPv6 extension header chain leads.
type ipv6Chain struct {
	// Proto is the protocol of the header at Off: a transport protocol,
	// ProtoESP or ProtoNoNext (the walk stops there), or for a non-first
	// fragment the Fragment header's Next Header.
	Proto uint8
	// Off is the offset of that header from the start of the IPv6 header.
	Off int
	// HasFrag reports a Fragment header at FragHdrOff; the fields below it
	// come from that header.
	HasFrag    bool
	FragHdrOff int
	FragOffset uint16 // in 8-byte units
	MoreFrags  bool
	FragID     uint32
}

// chain walks the extension headers (Hop-by-Hop, Routing, Fragment,
// Destination Options, AH, and the RFC 6564 uniform-format Mobility, HIP and
// Shim6 headers) to the first other header. The walk also stops after the
// Fragment header of a non-first fragment, whose later headers are elsewhere.
// It returns ErrBadExtHeader if a header runs past the packet, if Hop-by-Hop
// is not first, or if there are two Fragment headers.
func (b ipv6Packet) chain() (ipv6Chain, error) { return walkIPv6(b, b[ipv6NextHeader]) }

// RFC 6564 uniform-format extension headers other than those this package names.
const (
	protoMobility = 135
	protoHIP      = 139
	protoShim6    = 140
)

// walkIPv6 walks the chain in b, starting with header nh at offset 40.
func walkIPv6(b []byte, nh uint8) (ipv6Chain, error) {
	var c ipv6Chain
	off := IPv6HeaderLen
	for {
		switch nh {
		case ProtoHopByHop, ProtoRouting, ProtoDstOpts, protoMobility, protoHIP, protoShim6:
			if nh == ProtoHopByHop && off != IPv6HeaderLen {
				return c, ErrBadExtHeader
			}
			if len(b)-off < 8 {
				return c, ErrBadExtHeader
			}
			n := (int(b[off+1]) + 1) * 8
			if n > len(b)-off {
				return c, ErrBadExtHeader
			}
			nh = b[off]
			off += n
		case ProtoAH:
			if len(b)-off < 8 {
				return c, ErrBadExtHeader
			}
			n := (int(b[off+1]) + 2) * 4 // RFC 4302 2.2
			if n > len(b)-off {
				return c, ErrBadExtHeader
			}
			nh = b[off]
			off += n
		case ProtoFragment:
			if len(b)-off < 8 || c.HasFrag {
				return c, ErrBadExtHeader
			}
			fo := binary.BigEndian.Uint16(b[off+2:])
			c.HasFrag = true
			c.FragHdrOff = off
			c.FragOffset = fo >> 3
			c.MoreFrags = fo&1 != 0
			c.FragID = binary.BigEndian.Uint32(b[off+4:])
			nh = b[off]
			off += 8
			if c.FragOffset != 0 {
				c.Proto, c.Off = nh, off
				return c, nil
			}
		default:
			c.Proto, c.Off = nh, off
			return c, nil
		}
	}
}

// putIPv6Header writes a 40-byte IPv6 header into b. b must hold 40 bytes.
func putIPv6Header(b []byte, payloadLen int, nextHeader, hopLimit uint8, src, dst netip.Addr) {
	binary.BigEndian.PutUint32(b, 6<<28)
	binary.BigEndian.PutUint16(b[ipv6PayloadLen:], uint16(payloadLen))
	b[ipv6NextHeader] = nextHeader
	b[ipv6HopLimit] = hopLimit
	s, d := src.As16(), dst.As16()
	copy(b[ipv6Src:], s[:])
	copy(b[ipv6Dst:], d[:])
}
