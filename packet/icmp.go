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

	// icmpHeaderLen is the length of the ICMP header, rest-of-header included.
	// (Every ICMPv6 message of RFC 4443 and RFC 4861 is at least this long.)
	icmpHeaderLen = 8
)

// icmpMessage is a view of an ICMPv4 or ICMPv6 message. parseICMP makes one;
// its accessors read the caller's bytes in place and never allocate. The
// header is laid out alike in both versions, the type numbers are not: the
// accessors that interpret the type take the IP version.
type icmpMessage []byte

// parseICMP checks that b holds the 8-byte ICMP header and returns b as a
// view. b must end where the message ends for body to be right.
func parseICMP(b []byte) (icmpMessage, error) {
	if len(b) < icmpHeaderLen {
		return nil, ErrTruncated
	}
	return icmpMessage(b), nil
}

// typ returns the message type.
func (b icmpMessage) typ() uint8 { return b[icmpType] }

// code returns the message code.
func (b icmpMessage) code() uint8 { return b[icmpCode] }

// checksum returns the checksum field (over the message; for ICMPv6 also
// over the pseudo header).
func (b icmpMessage) checksum() uint16 { return binary.BigEndian.Uint16(b[icmpChecksum:]) }

// id returns the echo identifier (bytes 4-5; meaningful when isEcho).
func (b icmpMessage) id() uint16 { return binary.BigEndian.Uint16(b[icmpID:]) }

// seq returns the echo sequence number (bytes 6-7; meaningful when isEcho).
func (b icmpMessage) seq() uint16 { return binary.BigEndian.Uint16(b[icmpSeq:]) }

// body returns the bytes after the 8-byte header: echo data, or the quoted
// packet of an error (its IP header first, usually truncated).
func (b icmpMessage) body() []byte { return b[icmpHeaderLen:] }

// isEcho reports an echo request or echo reply of ICMP for IP version v.
func (b icmpMessage) isEcho(v uint8) bool {
	echo, _, _ := icmpClass(v, b[icmpType])
	return echo
}

// isEchoReply reports an echo reply of ICMP for IP version v.
func (b icmpMessage) isEchoReply(v uint8) bool {
	_, reply, _ := icmpClass(v, b[icmpType])
	return reply
}

// isError reports an error of ICMP for IP version v whose quoted packet
// this package reads.
func (b icmpMessage) isError(v uint8) bool {
	_, _, isErr := icmpClass(v, b[icmpType])
	return isErr
}

// icmpClass classifies type t of ICMP for IP version v: echo request or
// reply (v4 8 and 0, v6 128 and 129), echo reply, or an error whose quoted
// packet this package reads. The errors are, for IPv4, destination
// unreachable, time exceeded and parameter problem (not source quench or
// redirect); for IPv6, destination unreachable, packet too big, time exceeded
// and parameter problem (RFC 4443 reserves types 0-127 for errors; the others
// are not interpreted).
func icmpClass(v, t uint8) (echo, echoReply, isErr bool) {
	if v == 4 {
		return t == ICMPv4EchoRequest || t == ICMPv4EchoReply, t == ICMPv4EchoReply,
			t == ICMPv4Unreachable || t == ICMPv4TimeExceeded || t == ICMPv4ParamProblem
	}
	return t == ICMPv6EchoRequest || t == ICMPv6EchoReply, t == ICMPv6EchoReply,
		t >= ICMPv6Unreachable && t <= ICMPv6ParamProblem
}
