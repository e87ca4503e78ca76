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

// tcpSegment is a view of a TCP segment: header, options and payload.
// parseTCP makes one; its accessors read the caller's bytes in place and
// never allocate.
type tcpSegment []byte

// parseTCP checks that b starts with a TCP header whose data offset is at
// least 5 and within b, and returns b as a view. b must end where the
// segment ends (at the IP total length) for payload to be right.
func parseTCP(b []byte) (tcpSegment, error) {
	if len(b) < TCPMinHeaderLen {
		return nil, ErrTruncated
	}
	n := int(b[tcpDataOff]>>4) * 4
	if n < TCPMinHeaderLen || n > len(b) {
		return nil, ErrBadDataOffset
	}
	return tcpSegment(b), nil
}

// srcPort returns the source port.
func (b tcpSegment) srcPort() uint16 { return binary.BigEndian.Uint16(b[tcpSrcPort:]) }

// dstPort returns the destination port.
func (b tcpSegment) dstPort() uint16 { return binary.BigEndian.Uint16(b[tcpDstPort:]) }

// seq returns the sequence number.
func (b tcpSegment) seq() uint32 { return binary.BigEndian.Uint32(b[tcpSeq:]) }

// ack returns the acknowledgment number (meaningful when TCPAck is set).
func (b tcpSegment) ack() uint32 { return binary.BigEndian.Uint32(b[tcpAck:]) }

// headerLen returns the data offset in bytes: header plus options.
func (b tcpSegment) headerLen() int { return int(b[tcpDataOff]>>4) * 4 }

// flags returns the flag byte (TCPFin ... TCPCwr).
func (b tcpSegment) flags() uint8 { return b[tcpFlags] }

// window returns the window field, not scaled.
func (b tcpSegment) window() uint16 { return binary.BigEndian.Uint16(b[tcpWindow:]) }

// checksum returns the checksum field.
func (b tcpSegment) checksum() uint16 { return binary.BigEndian.Uint16(b[tcpChecksum:]) }

// options returns the options, empty when the data offset is 5.
func (b tcpSegment) options() []byte { return b[TCPMinHeaderLen:b.headerLen()] }

// payload returns the segment data after the header.
func (b tcpSegment) payload() []byte { return b[b.headerLen():] }
