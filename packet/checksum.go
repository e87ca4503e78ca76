package packet

import (
	"encoding/binary"
	"net/netip"
)

// sum returns initial plus the sum of b read as big-endian 16-bit words, an
// odd last byte padded with a zero byte on its right (RFC 1071). The result is
// not folded; it is congruent modulo 0xffff to the ones' complement sum.
// Sums of consecutive pieces of a buffer may be chained through initial as
// long as every piece but the last has an even length.
func sum(b []byte, initial uint32) uint32 {
	// 2^16 ≡ 1 (mod 0xffff), so 32-bit words add to the same folded sum as
	// their two 16-bit halves.
	acc := uint64(initial)
	for len(b) >= 8 {
		v := binary.BigEndian.Uint64(b)
		acc += v>>32 + v&0xffffffff
		b = b[8:]
	}
	if len(b) >= 4 {
		acc += uint64(binary.BigEndian.Uint32(b))
		b = b[4:]
	}
	if len(b) >= 2 {
		acc += uint64(binary.BigEndian.Uint16(b))
		b = b[2:]
	}
	if len(b) == 1 {
		acc += uint64(b[0]) << 8
	}
	for acc>>32 != 0 {
		acc = acc&0xffffffff + acc>>32
	}
	return uint32(acc)
}

// fold reduces a partial sum to 16 bits with end-around carry. It returns 0
// only for a zero sum.
func fold(s uint32) uint16 {
	s = s&0xffff + s>>16
	s = s&0xffff + s>>16
	return uint16(s)
}

// Checksum returns the Internet checksum of b with initial added in: the ones'
// complement of the folded ones' complement sum. Computed over a header whose
// checksum field holds the right value, it returns 0.
func Checksum(b []byte, initial uint32) uint16 {
	return ^fold(sum(b, initial))
}

// PseudoHeaderSum returns the partial sum of the TCP/UDP/ICMPv6 pseudo header:
// RFC 793 for IPv4 (src, dst, zero, proto, length) when both addresses are
// IPv4, RFC 8200 8.1 otherwise (src and dst as 16 bytes, 32-bit length,
// next header). length is the transport header plus payload in bytes.
func PseudoHeaderSum(src, dst netip.Addr, proto uint8, length int) uint32 {
	s := uint32(proto) + uint32(length)&0xffff + uint32(length)>>16
	if src.Is4() && dst.Is4() {
		a, b := src.As4(), dst.As4()
		return sum(a[:], sum(b[:], s))
	}
	a, b := src.As16(), dst.As16()
	return sum(a[:], sum(b[:], s))
}

// updateChecksum16 returns checksum csum after one 16-bit word it covers
// changes from old to new (RFC 1624 eqn. 3, HC' = ~(~HC + ~m + m')). When
// csum was computed in full, the result equals a full recomputation.
func updateChecksum16(csum, old, new uint16) uint16 {
	return ^fold(uint32(^csum) + uint32(^old) + uint32(new))
}

// sumDelta returns what a change of data from partial sum oldSum to partial
// sum newSum adds to the complement of a checksum covering it: ~m + m' of
// RFC 1624 eqn. 3, m and m' folded. updateDelta applies it.
func sumDelta(oldSum, newSum uint32) uint32 {
	return uint32(^fold(oldSum)) + uint32(fold(newSum))
}

// updateDelta returns checksum csum after the change delta from sumDelta
// (RFC 1624 eqn. 3, HC' = ~(~HC + ~m + m')).
func updateDelta(csum uint16, delta uint32) uint16 {
	return ^fold(uint32(^csum) + delta)
}

// udpCsum returns the UDP checksum c as sent: one that computes to zero is
// sent as all ones, since zero in the field means none (RFC 768).
func udpCsum(c uint16) uint16 {
	if c == 0 {
		return 0xffff
	}
	return c
}
