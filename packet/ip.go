package packet

// IPVersion returns the Version field of the IP header at the start of b, the
// high nibble of its first byte (4 or 6 for the packets this package reads),
// or 0 when b is empty. It checks nothing else.
func IPVersion(b []byte) uint8 {
	if len(b) == 0 {
		return 0
	}
	return b[0] >> 4
}

// IPLen returns the length in bytes that the IP header at the start of b
// states for its packet: the IPv4 Total Length, or 40 plus the IPv6 Payload
// Length (extension headers included). It returns 0 when b is shorter than
// the fixed header of its version (20 or 40 bytes) or the version is neither
// 4 nor 6. It checks nothing else: the length may exceed len(b) (a packet
// captured short, a super-packet cut short), and an IPv4 header with a bad IHL
// still states one; Decode checks both.
func IPLen(b []byte) int {
	switch IPVersion(b) {
	case 4:
		if len(b) >= IPv4MinHeaderLen {
			return ipv4Packet(b).totalLen()
		}
	case 6:
		if len(b) >= IPv6HeaderLen {
			return IPv6HeaderLen + ipv6Packet(b).payloadLen()
		}
	}
	return 0
}
