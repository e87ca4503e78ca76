package packet

import "encoding/binary"

// UDP header layout (RFC 768): source port, destination port, length,
// checksum, 16 bits each.
const (
	udpSrcPort  = 0
	udpDstPort  = 2
	udpLength   = 4
	udpChecksum = 6

	// UDPHeaderLen is the length of the UDP header.
	UDPHeaderLen = 8
)

// udpDatagram is a view of a UDP datagram. parseUDP makes one; its
// accessors read the caller's bytes in place and never allocate.
type udpDatagram []byte

// parseUDP checks that b holds a UDP header whose Length is at least 8 and
// within b, and returns the view b[:Length]. The first fragment of a
// fragmented datagram fails this check; Decode reads its ports without it.
func parseUDP(b []byte) (udpDatagram, error) {
	if len(b) < UDPHeaderLen {
		return nil, ErrTruncated
	}
	n := int(binary.BigEndian.Uint16(b[udpLength:]))
	if n < UDPHeaderLen || n > len(b) {
		return nil, ErrBadUDPLen
	}
	return udpDatagram(b[:n]), nil
}

// srcPort returns the source port.
func (b udpDatagram) srcPort() uint16 { return binary.BigEndian.Uint16(b[udpSrcPort:]) }

// dstPort returns the destination port.
func (b udpDatagram) dstPort() uint16 { return binary.BigEndian.Uint16(b[udpDstPort:]) }

// length returns the Length field: header plus payload in bytes.
func (b udpDatagram) length() int { return int(binary.BigEndian.Uint16(b[udpLength:])) }

// checksum returns the checksum field; 0 over IPv4 means none was computed.
func (b udpDatagram) checksum() uint16 { return binary.BigEndian.Uint16(b[udpChecksum:]) }

// setLength sets the Length field.
func (b udpDatagram) setLength(n int) { binary.BigEndian.PutUint16(b[udpLength:], uint16(n)) }

// setChecksum sets the checksum field.
func (b udpDatagram) setChecksum(c uint16) { binary.BigEndian.PutUint16(b[udpChecksum:], c) }

// payload returns the datagram data after the header.
func (b udpDatagram) payload() []byte { return b[UDPHeaderLen:] }
