package packet

import "encoding/binary"

// ICMP header layout, the same for ICMPv4 (RFC 792) and ICMPv6 (RFC 4443 2.1):
// type, code, checksum, then 4 bytes whose meaning depends on the type (echo
// identifier and sequence number; unused, MTU or pointer for errors), then
// the body (echo data, or the quoted packet of an error).
const (
	icmpType     = 0
	icmpCode     = 1
	icmpChecksum = 2
	icmpID       = 4
	icmpSeq      = 6

	// ICMPHeaderLen is the length of the ICMP header, rest-of-header included.
	ICMPHeaderLen = 8
)

// ICMPv4 is a view of an ICMPv4 message. Only ParseICMPv4 makes one; its
// accessors read the caller's bytes in place and never allocate.
type ICMPv4 []byte

// ParseICMPv4 checks that b holds the 8-byte ICMP header and returns b as a
// view. b must end where the message ends for Body to be right.
func ParseICMPv4(b []byte) (ICMPv4, error) {
	if len(b) < ICMPHeaderLen {
		return nil, ErrTruncated
	}
	return ICMPv4(b), nil
}

// Type returns the message type.
func (b ICMPv4) Type() uint8 { return b[icmpType] }

// Code returns the message code.
func (b ICMPv4) Code() uint8 { return b[icmpCode] }

// Checksum returns the checksum field (over the message, no pseudo header).
func (b ICMPv4) Checksum() uint16 { return binary.BigEndian.Uint16(b[icmpChecksum:]) }

// ID returns the echo identifier (bytes 4-5; meaningful when IsEcho).
func (b ICMPv4) ID() uint16 { return binary.BigEndian.Uint16(b[icmpID:]) }

// Seq returns the echo sequence number (bytes 6-7; meaningful when IsEcho).
func (b ICMPv4) Seq() uint16 { return binary.BigEndian.Uint16(b[icmpSeq:]) }

// IsEcho reports an echo request or echo reply.
func (b ICMPv4) IsEcho() bool {
	return b[icmpType] == ICMPv4EchoRequest || b[icmpType] == ICMPv4EchoReply
}

// IsEchoReply reports an echo reply.
func (b ICMPv4) IsEchoReply() bool { return b[icmpType] == ICMPv4EchoReply }

// IsError reports a destination unreachable, time exceeded or parameter
// problem message: the errors whose quoted packet this package reads.
func (b ICMPv4) IsError() bool { return icmpv4IsError(b[icmpType]) }

// Body returns the bytes after the 8-byte header.
func (b ICMPv4) Body() []byte { return b[ICMPHeaderLen:] }

// Quoted returns the quoted packet of an error message (its IP header first,
// usually truncated), or nil if the message is not an error.
func (b ICMPv4) Quoted() []byte {
	if !b.IsError() {
		return nil
	}
	return b[ICMPHeaderLen:]
}

// SetChecksum sets the checksum field.
func (b ICMPv4) SetChecksum(c uint16) { binary.BigEndian.PutUint16(b[icmpChecksum:], c) }

// ICMPv6 is a view of an ICMPv6 message. Only ParseICMPv6 makes one; its
// accessors read the caller's bytes in place and never allocate.
type ICMPv6 []byte

// ParseICMPv6 checks that b holds the 8-byte ICMPv6 header and returns b as a
// view. b must end where the message ends for Body to be right. (Every
// ICMPv6 message of RFC 4443 and RFC 4861 is at least 8 bytes.)
func ParseICMPv6(b []byte) (ICMPv6, error) {
	if len(b) < ICMPHeaderLen {
		return nil, ErrTruncated
	}
	return ICMPv6(b), nil
}

// Type returns the message type.
func (b ICMPv6) Type() uint8 { return b[icmpType] }

// Code returns the message code.
func (b ICMPv6) Code() uint8 { return b[icmpCode] }

// Checksum returns the checksum field (over the pseudo header and message).
func (b ICMPv6) Checksum() uint16 { return binary.BigEndian.Uint16(b[icmpChecksum:]) }

// ID returns the echo identifier (bytes 4-5; meaningful when IsEcho).
func (b ICMPv6) ID() uint16 { return binary.BigEndian.Uint16(b[icmpID:]) }

// Seq returns the echo sequence number (bytes 6-7; meaningful when IsEcho).
func (b ICMPv6) Seq() uint16 { return binary.BigEndian.Uint16(b[icmpSeq:]) }

// MTU returns the MTU of a Packet Too Big message (bytes 4-7).
func (b ICMPv6) MTU() uint32 { return binary.BigEndian.Uint32(b[icmpID:]) }

// IsEcho reports an echo request or echo reply.
func (b ICMPv6) IsEcho() bool {
	return b[icmpType] == ICMPv6EchoRequest || b[icmpType] == ICMPv6EchoReply
}

// IsEchoReply reports an echo reply.
func (b ICMPv6) IsEchoReply() bool { return b[icmpType] == ICMPv6EchoReply }

// IsError reports a destination unreachable, packet too big, time exceeded or
// parameter problem message: the errors whose quoted packet this package
// reads. (RFC 4443 reserves types 0-127 for errors; the others are not
// interpreted.)
func (b ICMPv6) IsError() bool { return icmpv6IsError(b[icmpType]) }

// Body returns the bytes after the 8-byte header.
func (b ICMPv6) Body() []byte { return b[ICMPHeaderLen:] }

// Quoted returns the quoted packet of an error message (its IPv6 header
// first, usually truncated), or nil if the message is not an error.
func (b ICMPv6) Quoted() []byte {
	if !b.IsError() {
		return nil
	}
	return b[ICMPHeaderLen:]
}

// SetChecksum sets the checksum field.
func (b ICMPv6) SetChecksum(c uint16) { binary.BigEndian.PutUint16(b[icmpChecksum:], c) }

func icmpv4IsError(t uint8) bool {
	return t == ICMPv4Unreachable || t == ICMPv4TimeExceeded || t == ICMPv4ParamProblem
}

func icmpv6IsError(t uint8) bool { return t >= ICMPv6Unreachable && t <= ICMPv6ParamProblem }
