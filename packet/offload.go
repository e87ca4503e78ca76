package packet

import (
	"encoding/binary"
	"errors"
	"net/netip"
)

// ErrBadGSO: a segmentation-offload description that does not fit its packet
// (segment size zero, transport header not where it says, an unknown
// protocol) or a segment index out of range.
var ErrBadGSO = errors.New("packet: bad segmentation offload")

// Offload helpers: packets that a Linux stack hands over with checksum or
// segmentation offload (CHECKSUM_PARTIAL, GSO; on a TUN device they arrive
// behind a virtio_net_hdr), their conversion to packets anyone can read, and
// the reverse: datagrams coalesced into a super-packet for a device to hand to
// the kernel. A device keeps the virtio_net_hdr and the system calls; every
// header and length computation is here.
//
// A partial checksum is what the sending stack leaves for the hardware to
// finish: the transport checksum field holds the folded, uncomplemented sum
// of the pseudo header, and whoever completes it adds the sum of the
// transport header and payload from csumStart to the end and stores the
// complement (Linux skb_checksum_help). A GSO super-packet is one IP packet
// carrying the payload of many segments of at most its segment size; its
// headers are those of the first segment, its IP length that of the whole.

// CompleteChecksum finishes a partial checksum as Linux skb_checksum_help
// does: it sums b[start:] (the field at start+off included, holding the
// pseudo-header sum) and stores the complement in that field. It returns
// false, changing nothing, unless the field lies within b.
func CompleteChecksum(b []byte, start, off int) bool {
	at := start + off
	if start < 0 || off < 0 || at+2 > len(b) {
		return false
	}
	c := Checksum(b[start:], 0)
	if off == udpChecksum {
		// csumOffset 6 is UDP's field; TCP's is 16.
		c = udpCsum(c)
	}
	binary.BigEndian.PutUint16(b[at:], c)
	return true
}

// HidePartialChecksum puts the partial checksum of the TCP or UDP header at
// b[start:] (field at start+off) in a form that the NAT rewrites, which patch
// a complete checksum incrementally (RFC 1624), keep right: the complement of
// the pseudo-header sum plus the two port words. A rewrite then moves the
// pseudo-header part by exactly the address change, as it must, and the port
// part by the port change, which RevealPartialChecksum takes out again: the
// finished checksum sums the ports from the header itself. The form is never
// zero, so a UDP rewrite does not mistake it for "no checksum".
//
// It returns false, changing nothing, unless the ports and the field lie
// within b.
func HidePartialChecksum(b []byte, start, off int) bool {
	at := start + off
	if start < 0 || off < 4 || at+2 > len(b) {
		return false
	}
	p := uint32(binary.BigEndian.Uint16(b[at:]))
	s := p + uint32(binary.BigEndian.Uint16(b[start:])) + uint32(binary.BigEndian.Uint16(b[start+2:]))
	// Ones' complement zero either way; zero would read as "none" for UDP.
	h := udpCsum(^fold(s))
	binary.BigEndian.PutUint16(b[at:], h)
	return true
}

// RevealPartialChecksum undoes HidePartialChecksum after any rewrites: the
// field holds the partial checksum of the packet as it now is (the
// pseudo-header sum of its current addresses). Same bounds as
// HidePartialChecksum.
func RevealPartialChecksum(b []byte, start, off int) bool {
	at := start + off
	if start < 0 || off < 4 || at+2 > len(b) {
		return false
	}
	h := binary.BigEndian.Uint16(b[at:])
	ports := fold(uint32(binary.BigEndian.Uint16(b[start:])) + uint32(binary.BigEndian.Uint16(b[start+2:])))
	binary.BigEndian.PutUint16(b[at:], fold(uint32(^h)+uint32(^ports)))
	return true
}

// PartialChecksumProto reports whether the partial checksum at
// pkt[start+off:] is the checksum field of a TCP or UDP header that directly
// follows the IP header (IPv4, options included, or IPv6 without extension
// headers) and lies within pkt, and returns that protocol. It is the layout
// that HidePartialChecksum and the NAT rewrites, which patch the checksum of
// the transport header Decode finds, keep right; a partial checksum anywhere
// else is for CompleteChecksum to finish.
func PartialChecksumProto(pkt []byte, start, off int) (proto uint8, ok bool) {
	switch IPVersion(pkt) {
	case 4:
		hl, err := ipv4HeaderLen(pkt)
		if err != nil || start != hl {
			return 0, false
		}
		proto = ipv4Packet(pkt).protocol()
	case 6:
		if len(pkt) < IPv6HeaderLen || start != IPv6HeaderLen {
			return 0, false
		}
		proto = ipv6Packet(pkt).nextHeader()
	default:
		return 0, false
	}
	switch {
	case proto == ProtoTCP && off == tcpChecksum && start+TCPMinHeaderLen <= len(pkt):
	case proto == ProtoUDP && off == udpChecksum && start+UDPHeaderLen <= len(pkt):
	default:
		return 0, false
	}
	return proto, true
}

// GSO describes a segmentation-offload super-packet.
type GSO struct {
	Proto uint8 // ProtoTCP (TSO) or ProtoUDP (USO, UDP_L4: one datagram per segment)
	L4Off int   // offset of the TCP or UDP header (virtio_net_hdr csum_start)
	Size  int   // payload bytes per segment, the last may be shorter (gso_size)
}

// CsumOffset returns where the checksum field of the transport header lies
// from L4Off (virtio_net_hdr csum_offset): 16 for TCP, 6 for UDP, -1 for
// another protocol.
func (g GSO) CsumOffset() int {
	switch g.Proto {
	case ProtoTCP:
		return tcpChecksum
	case ProtoUDP:
		return udpChecksum
	}
	return -1
}

// segmentLayout checks pkt against g and returns the length of all headers
// and of the payload to segment.
func segmentLayout(pkt []byte, g GSO) (hdrLen, payload int, err error) {
	if g.Size <= 0 {
		return 0, 0, ErrBadGSO
	}
	if len(pkt) < 1 {
		return 0, 0, ErrTruncated
	}
	// The IP total length is not checked: Segment rewrites it.
	switch IPVersion(pkt) {
	case 4:
		hl, err := ipv4HeaderLen(pkt)
		if err != nil || g.L4Off < hl || ipv4Packet(pkt).protocol() != g.Proto {
			return 0, 0, ErrBadGSO
		}
	case 6:
		if g.L4Off < IPv6HeaderLen {
			return 0, 0, ErrBadGSO
		}
	default:
		return 0, 0, ErrBadVersion
	}
	switch g.Proto {
	case ProtoTCP:
		if g.L4Off > len(pkt) {
			return 0, 0, ErrTruncated
		}
		t, err := parseTCP(pkt[g.L4Off:])
		if err != nil {
			return 0, 0, err
		}
		hdrLen = g.L4Off + t.headerLen()
	case ProtoUDP:
		hdrLen = g.L4Off + UDPHeaderLen
		if hdrLen > len(pkt) {
			return 0, 0, ErrTruncated
		}
	default:
		return 0, 0, ErrBadGSO
	}
	return hdrLen, len(pkt) - hdrLen, nil
}

// Segments returns how many segments Segment cuts the super-packet pkt into:
// its payload divided by g.Size, rounded up, and at least one.
func Segments(pkt []byte, g GSO) (int, error) {
	_, payload, err := segmentLayout(pkt, g)
	if err != nil {
		return 0, err
	}
	return max(1, (payload+g.Size-1)/g.Size), nil
}

// Segment writes segment i (from 0) of the super-packet pkt to dst and returns
// its length, as Linux's software GSO (tcp_gso_segment, __udp_gso_segment)
// would send it: the headers of pkt with the IP length of the segment, IPv4
// identification incremented per segment, TCP sequence number advanced by the
// payload before it, FIN and PSH only on the last segment and CWR only on the
// first, UDP length of the segment; the IPv4 header checksum and the transport
// checksum are computed in full. pkt's own checksums are not read. The
// addresses of the pseudo header are the IP header's (an IPv6 routing header
// is not followed). dst must hold the segment: the headers plus g.Size bytes.
func Segment(dst, pkt []byte, g GSO, i int) (int, error) {
	hdrLen, payload, err := segmentLayout(pkt, g)
	if err != nil {
		return 0, err
	}
	n := max(1, (payload+g.Size-1)/g.Size)
	if i < 0 || i >= n {
		return 0, ErrBadGSO
	}
	from := i * g.Size
	to := min(from+g.Size, payload)
	size := hdrLen + to - from
	if len(dst) < size {
		return 0, ErrTruncated
	}
	copy(dst, pkt[:hdrLen])
	copy(dst[hdrLen:], pkt[hdrLen+from:hdrLen+to])
	seg := dst[:size]

	l4Len := size - g.L4Off
	var src, dstA netip.Addr
	if IPVersion(seg) == 4 {
		h := ipv4Packet(seg)
		h.setTotalLen(size)
		h.setID(ipv4Packet(pkt).id() + uint16(i))
		h.fixChecksum()
		src, dstA = h.src(), h.dst()
	} else {
		h := ipv6Packet(seg)
		h.setPayloadLen(size - IPv6HeaderLen)
		src, dstA = h.src(), h.dst()
	}
	pseudo := PseudoHeaderSum(src, dstA, g.Proto, l4Len)
	l4 := seg[g.L4Off:]
	switch g.Proto {
	case ProtoTCP:
		binary.BigEndian.PutUint32(l4[tcpSeq:], binary.BigEndian.Uint32(pkt[g.L4Off+tcpSeq:])+uint32(from))
		if i < n-1 {
			l4[tcpFlags] &^= TCPFin | TCPPsh
		}
		if i > 0 {
			l4[tcpFlags] &^= TCPCwr
		}
		binary.BigEndian.PutUint16(l4[tcpChecksum:], 0)
		binary.BigEndian.PutUint16(l4[tcpChecksum:], Checksum(l4, pseudo))
	case ProtoUDP:
		binary.BigEndian.PutUint16(l4[udpLength:], uint16(l4Len))
		binary.BigEndian.PutUint16(l4[udpChecksum:], 0)
		binary.BigEndian.PutUint16(l4[udpChecksum:], udpCsum(Checksum(l4, pseudo)))
	}
	return size, nil
}

// maxUDPSegments bounds the datagrams of one super-packet that UDPCoalescer
// builds; the kernel's own limit (UDP_MAX_SEGMENTS) is 128.
const maxUDPSegments = 64

// UDPCoalescer builds a USO super-packet (a GSO with Proto ProtoUDP) in place
// from consecutive UDP datagrams of one flow, as Linux's UDP GRO does, so that
// a device can hand the kernel one packet that it cuts into the same datagrams
// again (Segment cuts it the same way).
//
// Every datagram must carry a partial checksum, so that no checksum of its
// sender's is dropped; Begin and Append take where it lies (csum_start,
// csum_offset) and do not read it. A datagram may join a run when its partial
// checksum is where PartialChecksumProto wants it for UDP, it is not a
// fragment and its IPv4 flags are DF alone (the Identification of an atomic
// datagram means nothing, RFC 6864), its IP and UDP lengths are those of the
// slice, and it has a payload. It may follow the first when all its header
// fields but lengths, Identification and checksums are the first's (version,
// IHL and IPv4 options, TOS or traffic class and flow label, flags, TTL or hop
// limit, addresses, ports) and its payload is no longer than the first's. A
// shorter payload ends the run, as do 64 datagrams or 65535 bytes in all.
//
// The super-packet grows in the first datagram's slice, within its capacity;
// later datagrams are only read and must not overlap that capacity. The zero
// value is an empty coalescer. A UDPCoalescer is not safe for concurrent use.
type UDPCoalescer struct {
	pkt   []byte // the first datagram, the payloads of the others appended
	l4    int    // offset of the UDP header
	size  int    // payload bytes of the first datagram: the segment size
	n     int    // datagrams in the run
	ended bool   // a shorter datagram ended the run
}

// Begin empties c and starts a run with the datagram pkt, whose partial
// checksum lies at pkt[start+off:]. It reports whether pkt may begin one;
// if not, c stays empty.
func (c *UDPCoalescer) Begin(pkt []byte, start, off int) bool {
	*c = UDPCoalescer{}
	size, ok := usoDatagram(pkt, start, off)
	if ok {
		*c = UDPCoalescer{pkt: pkt, l4: start, size: size, n: 1}
	}
	return ok
}

// Append adds the payload of the datagram pkt, whose partial checksum lies at
// pkt[start+off:], to the run, and reports whether it did: whether pkt may
// follow (see UDPCoalescer) and its payload fits the first datagram's
// capacity. It changes nothing when it returns false.
func (c *UDPCoalescer) Append(pkt []byte, start, off int) bool {
	if c.n == 0 || c.ended || c.n >= maxUDPSegments || start != c.l4 {
		return false
	}
	size, ok := usoDatagram(pkt, start, off)
	end := len(c.pkt) + size
	if !ok || size > c.size || end > maxDatagramBytes || end > cap(c.pkt) || !sameUDPFlow(c.pkt, pkt, c.l4) {
		return false
	}
	at := len(c.pkt)
	c.pkt = c.pkt[:end]
	copy(c.pkt[at:], pkt[c.l4+UDPHeaderLen:])
	c.n++
	c.ended = size < c.size
	return true
}

// Len returns the number of datagrams in the run.
func (c *UDPCoalescer) Len() int { return c.n }

// Finish turns a run of two or more datagrams into one super-packet and
// returns it (the first datagram's slice, extended) with its description,
// and empties c. The super-packet has the IP and UDP lengths of the whole, a
// fresh IPv4 header checksum, and the partial checksum of the whole at
// g.L4Off+g.CsumOffset() in the form HidePartialChecksum gives, like every
// partial checksum between a device's Read and Write. With fewer than two
// datagrams it returns the first (or nil) unchanged and a zero GSO.
func (c *UDPCoalescer) Finish() ([]byte, GSO) {
	pkt, l4, size, n := c.pkt, c.l4, c.size, c.n
	*c = UDPCoalescer{}
	if n < 2 {
		return pkt, GSO{}
	}
	var src, dst netip.Addr
	if IPVersion(pkt) == 4 {
		h := ipv4Packet(pkt)
		h.setTotalLen(len(pkt))
		h.fixChecksum()
		src, dst = h.src(), h.dst()
	} else {
		h := ipv6Packet(pkt)
		h.setPayloadLen(len(pkt) - IPv6HeaderLen)
		src, dst = h.src(), h.dst()
	}
	u := udpDatagram(pkt[l4:])
	u.setLength(len(u))
	u.setChecksum(fold(PseudoHeaderSum(src, dst, ProtoUDP, len(u))))
	HidePartialChecksum(pkt, l4, udpChecksum)
	return pkt, GSO{Proto: ProtoUDP, L4Off: l4, Size: size}
}

// usoDatagram reports whether pkt, with its partial checksum at
// pkt[start+off:], may join a UDPCoalescer run, and returns its payload
// length.
func usoDatagram(pkt []byte, start, off int) (size int, ok bool) {
	if proto, ok := PartialChecksumProto(pkt, start, off); !ok || proto != ProtoUDP {
		return 0, false
	}
	if IPVersion(pkt) == 4 && ipv4Packet(pkt).flagsFrag() != ipv4FlagDF {
		return 0, false
	}
	if IPLen(pkt) != len(pkt) || udpDatagram(pkt[start:]).length() != len(pkt)-start {
		return 0, false
	}
	size = len(pkt) - start - UDPHeaderLen
	return size, size > 0
}

// sameUDPFlow reports whether datagrams a and b, which usoDatagram accepted
// with their UDP header at l4, have the same header fields but for lengths,
// Identification and checksums.
func sameUDPFlow(a, b []byte, l4 int) bool {
	// Version and IHL, or version and the high half of the traffic class.
	if a[0] != b[0] || string(a[l4:l4+udpLength]) != string(b[l4:l4+udpLength]) {
		return false
	}
	if IPVersion(a) == 4 {
		// TOS; flags, fragment offset, TTL and protocol; addresses and options.
		return a[ipv4TOS] == b[ipv4TOS] &&
			string(a[ipv4FlagsFrag:ipv4Checksum]) == string(b[ipv4FlagsFrag:ipv4Checksum]) &&
			string(a[ipv4Src:l4]) == string(b[ipv4Src:l4])
	}
	// Traffic class and flow label; next header, hop limit and addresses.
	return string(a[1:ipv6PayloadLen]) == string(b[1:ipv6PayloadLen]) &&
		string(a[ipv6NextHeader:IPv6HeaderLen]) == string(b[ipv6NextHeader:IPv6HeaderLen])
}
