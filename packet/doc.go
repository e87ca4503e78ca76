// Package packet decodes, checks, builds and rewrites IPv4 and IPv6 packets
// in place: Decode, Internet checksums (full and RFC 1624 incremental), TCP,
// UDP, RST and ICMP unreachable builders, NAT rewrites, and the offload
// arithmetic (partial checksums, segmentation, UDP coalescing) that a device
// with a virtio_net_hdr needs.
//
// IPVersion and IPLen read the fixed IP header of any bytes for callers that
// must not decode (a packet captured short, a super-packet); everything else
// a caller needs from a header comes from Decode's Info or the offload
// functions, so no other package reads a header at a raw offset.
//
// # Buffers
//
// Every function works on a byte slice the caller owns, and nothing here
// keeps a slice after returning. Decode fills an Info value that holds
// addresses, ports and offsets into b: an Info describes b only while b is
// unchanged. SetSource, SetDestination, SetInnerSource and
// SetInnerDestination change b and the Info together; after any other change
// to b, decode it again. Builders write into the caller's dst (up to cap(dst))
// and return dst[:n].
//
// No function allocates on its success path, keeps state between calls,
// reads a clock or panics, whatever the bytes (or Info) it is given. Errors
// are the Err* sentinel values, returned unwrapped so that even failing costs
// no allocation; compare them with errors.Is.
//
// # What Decode checks
//
// Decode checks structure only: version, IPv4 IHL and total length, IPv6
// payload length, the IPv6 extension header chain, TCP data offset, UDP length,
// the ICMP header, and that a fragment does not end past 65535 bytes. It does
// not verify checksums; ChecksumsValid does that for a caller that wants it.
// Bytes past the length the IP header states (TotalLen) are ignored.
//
// # Fragments
//
// The package does not reassemble. A first fragment (offset 0, more fragments
// set) is decoded like a whole packet except that a transport header that does
// not fit in it is not an error: HasL4 is then false. A later fragment (offset
// != 0) has HasL4 false, no ports and Proto naming the transport protocol of
// the datagram; it can be matched to its flow only by (Src, Dst, Proto,
// FragID), and the policy decides whether to pass or drop it. An IPv6 atomic
// fragment (Fragment header with offset 0 and M clear, RFC 6946) is not a
// fragment.
//
// # ICMP
//
// ICMP echo request and reply carry their identifier in ICMPID and in both
// SrcPort and DstPort, as the connection tracker keys them. ICMP errors
// (IPv4 destination unreachable, time exceeded, parameter problem; ICMPv6
// destination unreachable, packet too big, time exceeded, parameter problem)
// expose the quoted packet in Info.Inner. A quote that cannot be read leaves
// Inner.Valid false without failing Decode. IPv4 source quench and redirect
// are not read as errors.
//
// # NAT rewrites
//
// SetSource, SetDestination, SetInnerSource and SetInnerDestination change
// one end of a packet in place and patch every checksum that covers what
// changed with RFC 1624 incremental updates: a packet whose checksums were
// right before is right after, and one whose checksums were wrong stays wrong
// by the same amount. A zero UDP checksum (none) stays zero; a UDP checksum
// that computes to zero is sent as 0xffff (RFC 768).
//
// Each takes the Info that Decode filled for b and updates it to match. addr
// must be of the packet's IP version; an IPv4-mapped IPv6 address counts as
// IPv4, since it never appears in an IPv6 header on the wire (RFC 4291
// 2.5.5.2). port is the TCP/UDP port or the ICMP echo identifier, and is
// ignored when the packet carries neither (a non-first fragment, an ICMP
// message other than echo, another protocol). A rewrite returns false, and
// leaves b and the Info untouched, when the Info does not describe b, when
// addr is of the wrong family, or when a checksum could not be kept right (a
// first fragment too short to hold its transport header).
//
// # IPv6 routing headers
//
// Checksums over an IPv6 pseudo header use the Destination field of the IPv6
// header. A packet whose Routing header still has segments left is checksummed
// by its sender against the final destination; such packets are rare
// (RFC 5095 deprecates type 0) and this package does not special-case them.
package packet
