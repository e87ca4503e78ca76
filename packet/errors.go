package packet

import "errors"

// Errors returned by the parsers. Decode and the parsers return them
// unwrapped so that the failure path does not allocate either.
var (
	// ErrTruncated: the buffer ends before a header does.
	ErrTruncated = errors.New("packet: truncated")
	// ErrBadVersion: the IP version is neither 4 nor 6, or not the one expected.
	ErrBadVersion = errors.New("packet: bad IP version")
	// ErrBadHeaderLen: IPv4 IHL below 5 or past the buffer.
	ErrBadHeaderLen = errors.New("packet: bad IPv4 header length")
	// ErrBadTotalLen: IPv4 total length (or IPv6 payload length) past the
	// buffer, or smaller than the header.
	ErrBadTotalLen = errors.New("packet: bad IP total length")
	// ErrBadExtHeader: an IPv6 extension header chain that runs past the
	// packet, or a Hop-by-Hop Options header that is not first.
	ErrBadExtHeader = errors.New("packet: bad IPv6 extension header chain")
	// ErrBadFragment: a fragment that would end past 65535 bytes of datagram.
	ErrBadFragment = errors.New("packet: bad fragment offset")
	// ErrBadDataOffset: TCP data offset below 5 or past the segment.
	ErrBadDataOffset = errors.New("packet: bad TCP data offset")
	// ErrBadUDPLen: UDP length below 8 or past the IP payload.
	ErrBadUDPLen = errors.New("packet: bad UDP length")
)

// Errors returned by the builders.
var (
	// ErrShortBuffer: dst has too little capacity for the packet.
	ErrShortBuffer = errors.New("packet: destination buffer too small")
	// ErrNotTCP: the offending packet is not a TCP segment with its header.
	ErrNotTCP = errors.New("packet: not a TCP segment")
	// ErrIsReset: the offending segment is itself a RST; RFC 793 never answers one.
	ErrIsReset = errors.New("packet: segment is a RST")
	// ErrFragment: the offending packet is a fragment; its length or header
	// is not known whole.
	ErrFragment = errors.New("packet: packet is a fragment")
	// ErrICMPError: the offending packet is an ICMP error (or an ICMP message
	// whose type cannot be read); RFC 1122 3.2.2 and RFC 4443 2.4 forbid
	// answering it with an ICMP error.
	ErrICMPError = errors.New("packet: packet is an ICMP error")
	// ErrNotUnicast: the offending packet's source is not a single host, or
	// its destination is multicast or broadcast (RFC 1122 3.2.2, RFC 4443 2.4).
	ErrNotUnicast = errors.New("packet: packet not between unicast hosts")
	// ErrAddrFamily: an address is invalid or of the other IP version.
	ErrAddrFamily = errors.New("packet: address family mismatch")
	// ErrTooLong: the packet to build would not fit its IP length field.
	ErrTooLong = errors.New("packet: packet too long")
)
