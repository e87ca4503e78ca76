package packet

import "encoding/binary"

// TCP header layout (RFC 9293 3.1).
//
//	 0                   1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|          Source Port          |       Destination Port        |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                        Sequence Number                        |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                    Acknowledgment Number                      |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|  Data |       |C|E|U|A|P|R|S|F|                               |
//	| Offset| Rsrvd |W|C|R|C|S|S|Y|I|            Window             |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|           Checksum            |         Urgent Pointer        |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
const (
	tcpSrcPort  = 0
	tcpDstPort  = 2
	tcpSeq      = 4
	tcpAck      = 8
	tcpDataOff  = 12
	tcpFlags    = 13
	tcpWindow   = 14
	tcpChecksum = 16
	tcpUrgent   = 18

	// TCPMinHeaderLen is the length of a TCP header without options.
	TCPMinHeaderLen = 20
)

// TCP is a view of a TCP segment: header, options and payload. Only ParseTCP
// makes one; its accessors read the caller's bytes in place and never
// allocate.
type TCP []byte

// ParseTCP checks that b starts with a TCP header whose data offset is at
// least 5 and within b, and returns b as a TCP view. b must end where the
// segment ends (at the IP total length) for Payload to be right.
func ParseTCP(b []byte) (TCP, error) {
	if len(b) < TCPMinHeaderLen {
		return nil, ErrTruncated
	}
	n := int(b[tcpDataOff]>>4) * 4
	if n < TCPMinHeaderLen || n > len(b) {
		return nil, ErrBadDataOffset
	}
	return TCP(b), nil
}

// SrcPort returns the source port.
func (b TCP) SrcPort() uint16 { return binary.BigEndian.Uint16(b[tcpSrcPort:]) }

// DstPort returns the destination port.
func (b TCP) DstPort() uint16 { return binary.BigEndian.Uint16(b[tcpDstPort:]) }

// Seq returns the sequence number.
func (b TCP) Seq() uint32 { return binary.BigEndian.Uint32(b[tcpSeq:]) }

// Ack returns the acknowledgment number (meaningful when TCPAck is set).
func (b TCP) Ack() uint32 { return binary.BigEndian.Uint32(b[tcpAck:]) }

// HeaderLen returns the data offset in bytes: header plus options.
func (b TCP) HeaderLen() int { return int(b[tcpDataOff]>>4) * 4 }

// Flags returns the flag byte (TCPFin ... TCPCwr).
func (b TCP) Flags() uint8 { return b[tcpFlags] }

// Window returns the window field, not scaled.
func (b TCP) Window() uint16 { return binary.BigEndian.Uint16(b[tcpWindow:]) }

// Checksum returns the checksum field.
func (b TCP) Checksum() uint16 { return binary.BigEndian.Uint16(b[tcpChecksum:]) }

// UrgentPtr returns the urgent pointer.
func (b TCP) UrgentPtr() uint16 { return binary.BigEndian.Uint16(b[tcpUrgent:]) }

// Options returns the options, empty when the data offset is 5.
func (b TCP) Options() []byte { return b[TCPMinHeaderLen:b.HeaderLen()] }

// Payload returns the segment data after the header.
func (b TCP) Payload() []byte { return b[b.HeaderLen():] }

// SetChecksum sets the checksum field.
func (b TCP) SetChecksum(c uint16) { binary.BigEndian.PutUint16(b[tcpChecksum:], c) }
