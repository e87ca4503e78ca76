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

// UDP is a view of a UDP datagram. Only ParseUDP makes one; its accessors read
// the caller's bytes in place and never allocate.
type UDP []byte

// ParseUDP checks that b holds a UDP header whose Length is at least 8 and
// within b, and returns the view b[:Length]. The first fragment of a
// fragmented datagram fails this check; Decode reads its ports without it.
func ParseUDP(b []byte) (UDP, error) {
	if len(b) < UDPHeaderLen {
		return nil, ErrTruncated
	}
	n := int(binary.BigEndian.Uint16(b[udpLength:]))
	if n < UDPHeaderLen || n > len(b) {
		return nil, ErrBadUDPLen
	}
	return UDP(b[:n]), nil
}

// SrcPort returns the source port.
func (b UDP) SrcPort() uint16 { return binary.BigEndian.Uint16(b[udpSrcPort:]) }

// DstPort returns the destination port.
func (b UDP) DstPort() uint16 { return binary.BigEndian.Uint16(b[udpDstPort:]) }

// Length returns the Length field: header plus payload in bytes.
func (b UDP) Length() int { return int(binary.BigEndian.Uint16(b[udpLength:])) }

// Checksum returns the checksum field; 0 over IPv4 means none was computed.
func (b UDP) Checksum() uint16 { return binary.BigEndian.Uint16(b[udpChecksum:]) }

// Payload returns the datagram data after the header.
func (b UDP) Payload() []byte { return b[UDPHeaderLen:] }

// SetChecksum sets the checksum field.
func (b UDP) SetChecksum(c uint16) { binary.BigEndian.PutUint16(b[udpChecksum:], c) }
