package packet

import (
	"encoding/binary"
	"net/netip"
)

// HopLimit returns the IPv4 Time to Live or the IPv6 Hop Limit of the packet b
// that Decode described in p, or 0 if p does not describe an IP header in b.
func HopLimit(b []byte, p *Info) uint8 {
	switch {
	case p.Version == 4 && len(b) >= IPv4MinHeaderLen:
		return b[ipv4TTL]
	case p.Version == 6 && len(b) >= IPv6HeaderLen:
		return b[ipv6HopLimit]
	}
	return 0
}

// DecrementHopLimit lowers the IPv4 TTL or the IPv6 Hop Limit of the packet b
// (decoded into p) by one, as a router forwarding it must (RFC 1812 5.3.1,
// RFC 8200 3), patching the IPv4 header checksum incrementally (RFC 1624; the
// TTL shares a 16-bit word with the protocol). It returns false and changes
// nothing when the limit is 0 or 1: the packet must not be forwarded, and the
// router answers ICMP time exceeded (BuildTimeExceeded). A checksum that was
// right stays right; one that was wrong stays wrong by the same amount.
func DecrementHopLimit(b []byte, p *Info) bool {
	if p.Version == 4 && len(b) >= IPv4MinHeaderLen && b[ipv4TTL] > 1 {
		// The TTL is the high byte of the word at ipv4TTL, shared with the
		// protocol.
		old := binary.BigEndian.Uint16(b[ipv4TTL:])
		b[ipv4TTL]--
		binary.BigEndian.PutUint16(b[ipv4Checksum:], updateChecksum16(binary.BigEndian.Uint16(b[ipv4Checksum:]), old, old-0x100))
		return true
	}
	return decrementHopLimit6(b, p)
}

func decrementHopLimit6(b []byte, p *Info) bool {
	if p.Version == 6 && len(b) >= IPv6HeaderLen && b[ipv6HopLimit] > 1 {
		b[ipv6HopLimit]--
		return true
	}
	return false
}

// BuildTimeExceeded writes into dst the ICMP error a router sends for a
// packet whose TTL or Hop Limit ran out in transit: ICMPv4 time exceeded code
// 0 (RFC 792, RFC 1812 5.3.1) or ICMPv6 time exceeded code 0 (hop limit
// exceeded in transit, RFC 4443 3.3), from `from` (the router's address on
// the side the packet came from) to offending's source, quoting offending.
// Quote, sizes, refusals and errors are BuildUnreachable's.
func BuildTimeExceeded(dst []byte, offending []byte, from netip.Addr) ([]byte, error) {
	return buildICMPError(dst, offending, from, ICMPv4TimeExceeded, icmpCodeTTLExceeded, ICMPv6TimeExceeded, icmpCodeTTLExceeded)
}

// icmpCodeTTLExceeded is code 0 of time exceeded in both versions: "time to
// live exceeded in transit" (RFC 792), "hop limit exceeded in transit" (RFC
// 4443 3.3).
const icmpCodeTTLExceeded = 0
