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
// behind a virtio_net_hdr) and their conversion to packets anyone can read.
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

// GSO describes a segmentation-offload super-packet.
type GSO struct {
	Proto uint8 // ProtoTCP (TSO) or ProtoUDP (USO, UDP_L4: one datagram per segment)
	L4Off int   // offset of the TCP or UDP header (virtio_net_hdr csum_start)
	Size  int   // payload bytes per segment, the last may be shorter (gso_size)
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
	switch pkt[0] >> 4 {
	case 4:
		hl, err := ipv4HeaderLen(pkt)
		if err != nil || g.L4Off < hl || pkt[ipv4Proto] != g.Proto {
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
	if seg[0]>>4 == 4 {
		h := ipv4Packet(seg)
		binary.BigEndian.PutUint16(seg[ipv4TotalLen:], uint16(size))
		binary.BigEndian.PutUint16(seg[ipv4ID:], binary.BigEndian.Uint16(pkt[ipv4ID:])+uint16(i))
		h.setChecksum(0)
		h.setChecksum(Checksum(seg[:h.headerLen()], 0))
		src, dstA = h.src(), h.dst()
	} else {
		h := ipv6Packet(seg)
		binary.BigEndian.PutUint16(seg[ipv6PayloadLen:], uint16(size-IPv6HeaderLen))
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
