package packet

import (
	"encoding/binary"
	"net/netip"
)

// Info is a value summary of one IP packet, filled by Decode without
// allocating. Offsets index the buffer given to Decode; the Info describes
// that buffer only while it is unchanged (see the package comment).
type Info struct {
	Version  uint8      // 4 or 6
	Src, Dst netip.Addr // outer addresses
	Proto    uint8      // transport protocol after IPv6 extension headers (ProtoESP, ProtoNoNext end the walk)
	L4Off    int        // offset of the transport header (valid if HasL4); of the payload after the IP headers otherwise
	TotalLen int        // bytes of the IP packet per its header (<= len(b); trailing bytes beyond are ignored)

	// IPv4 fragment fields, or those of an IPv6 Fragment header.
	Fragment   bool   // MF set or offset != 0
	FragOffset uint16 // in 8-byte units; 0 = first fragment
	MoreFrags  bool
	FragID     uint32 // IPv4 Identification, or IPv6 Fragment header Identification (0 without one)

	HasL4            bool   // transport header present and parsed (false for non-first fragments and unknown protocols)
	SrcPort, DstPort uint16 // TCP/UDP ports; for ICMP echo both are the echo identifier
	TCPFlags         uint8
	Seq, Ack         uint32
	Window           uint16 // as sent, not scaled
	PayloadLen       int    // TCP/UDP payload bytes (for a first fragment: bytes present in this fragment)

	ICMPType, ICMPCode uint8
	ICMPEcho           bool   // echo request or reply (v4 8/0, v6 128/129)
	ICMPEchoReply      bool   // echo reply (v4 0, v6 129)
	ICMPID             uint16 // echo identifier
	ICMPError          bool   // destination unreachable, time exceeded, parameter problem, packet too big (v6)
	Inner              Inner  // the quoted packet of an ICMP error (valid if ICMPError && Inner.Valid)
}

// Inner is the packet quoted by an ICMP error, read leniently: the quote is
// usually truncated, so its total length is not checked against the buffer.
// Valid requires the quoted IP header (and for IPv6 its extension header
// chain) to be whole and of the ICMP message's IP version.
type Inner struct {
	Valid            bool
	Off              int // offset of the quoted IP header inside the outer packet
	L4Off            int // offset of the quoted transport header inside the outer packet (of the fragment data if FragOffset != 0)
	End              int // offset just past the quoted bytes that belong to the quoted packet
	Src, Dst         netip.Addr
	Proto            uint8
	Fragment         bool   // the quoted packet is a fragment
	FragOffset       uint16 // in 8-byte units; non-zero means no transport header at L4Off
	HasPorts         bool   // first 4 bytes of the quoted TCP/UDP header present (ports), or quoted ICMP echo id
	SrcPort, DstPort uint16 // for quoted ICMP echo: both = echo id
}

// Decode checks the packet in b and fills p. On error p holds what was read
// before the failure and must not be used. See the package comment for what
// is checked and how fragments are treated.
func Decode(b []byte, p *Info) error {
	*p = Info{}
	if len(b) == 0 {
		return ErrTruncated
	}
	switch IPVersion(b) {
	case 4:
		return decode4(b, p)
	case 6:
		return decode6(b, p)
	}
	return ErrBadVersion
}

func decode4(b []byte, p *Info) error {
	ip, err := parseIPv4(b)
	if err != nil {
		return err
	}
	hl := ip.headerLen()
	p.Version = 4
	p.Src, p.Dst = ip.src(), ip.dst()
	p.Proto = ip.protocol()
	p.L4Off = hl
	p.TotalLen = len(ip)
	p.FragID = uint32(ip.id())
	p.FragOffset = ip.fragOffset()
	p.MoreFrags = ip.moreFragments()
	p.Fragment = p.MoreFrags || p.FragOffset != 0
	// Linux ip_frag_queue: a datagram may not end past 65535 bytes.
	if int(p.FragOffset)*8+len(ip) > maxDatagramBytes {
		return ErrBadFragment
	}
	if p.FragOffset != 0 {
		return nil
	}
	return decodeL4(ip, p)
}

func decode6(b []byte, p *Info) error {
	ip, err := parseIPv6(b)
	if err != nil {
		return err
	}
	p.Version = 6
	p.Src, p.Dst = ip.src(), ip.dst()
	p.TotalLen = len(ip)
	c, err := ip.chain()
	if err != nil {
		return err
	}
	p.Proto = c.Proto
	p.L4Off = c.Off
	if c.HasFrag {
		p.FragID = c.FragID
		p.FragOffset = c.FragOffset
		p.MoreFrags = c.MoreFrags
		p.Fragment = p.MoreFrags || p.FragOffset != 0
		// RFC 8200 4.5: the reassembled Payload Length may not exceed 65535.
		unfrag := c.FragHdrOff - IPv6HeaderLen
		fragData := len(ip) - c.FragHdrOff - 8
		if unfrag+int(p.FragOffset)*8+fragData > maxDatagramBytes {
			return ErrBadFragment
		}
	}
	if p.FragOffset != 0 {
		return nil
	}
	return decodeL4(ip, p)
}

// decodeL4 reads the transport header at p.L4Off of pkt, which ends at the IP
// total length. In a first fragment a header that does not fit is not an
// error; HasL4 stays false.
func decodeL4(pkt []byte, p *Info) error {
	seg := pkt[p.L4Off:]
	frag := p.Fragment
	switch {
	case p.Proto == ProtoTCP:
		// parseTCP's checks, told apart: in a first fragment a header cut
		// short is not an error, a data offset below 5 is.
		if len(seg) < TCPMinHeaderLen {
			return truncated(frag, ErrTruncated)
		}
		t := tcpSegment(seg)
		n := t.headerLen()
		if n < TCPMinHeaderLen {
			return ErrBadDataOffset
		}
		if n > len(seg) {
			return truncated(frag, ErrBadDataOffset)
		}
		p.SrcPort, p.DstPort = t.srcPort(), t.dstPort()
		p.TCPFlags = t.flags()
		p.Seq, p.Ack = t.seq(), t.ack()
		p.Window = t.window()
		p.PayloadLen = len(seg) - n
	case p.Proto == ProtoUDP:
		if len(seg) < UDPHeaderLen {
			return truncated(frag, ErrTruncated)
		}
		// A first fragment holds only part of the datagram: its Length is
		// not checked, and its payload is what is present.
		u := udpDatagram(seg)
		if !frag {
			var err error
			if u, err = parseUDP(seg); err != nil {
				return err
			}
		}
		p.PayloadLen = len(u.payload())
		p.SrcPort, p.DstPort = u.srcPort(), u.dstPort()
	case p.Proto == ProtoICMP && p.Version == 4, p.Proto == ProtoICMPv6 && p.Version == 6:
		m, err := parseICMP(seg)
		if err != nil {
			return truncated(frag, err)
		}
		p.ICMPType, p.ICMPCode = m.typ(), m.code()
		p.ICMPEcho, p.ICMPEchoReply, p.ICMPError = icmpClass(p.Version, m.typ())
		if p.ICMPEcho {
			p.ICMPID = m.id()
			p.SrcPort, p.DstPort = p.ICMPID, p.ICMPID
		}
		if p.ICMPError {
			decodeInner(pkt, p.L4Off+icmpHeaderLen, p.Version, &p.Inner)
		}
	default:
		return nil
	}
	p.HasL4 = true
	return nil
}

func truncated(firstFragment bool, err error) error {
	if firstFragment {
		return nil
	}
	return err
}

// decodeInner reads the packet quoted at pkt[off:] by an ICMP error of IP
// version v.
func decodeInner(pkt []byte, off int, v uint8, in *Inner) {
	q := pkt[off:]
	in.Off = off
	switch v {
	case 4:
		hl, err := ipv4HeaderLen(q)
		if err != nil {
			return
		}
		ip := ipv4Packet(q)
		if tl := ip.totalLen(); tl >= hl && tl < len(q) {
			q = q[:tl]
		}
		in.Src, in.Dst = ip.src(), ip.dst()
		in.Proto = ip.protocol()
		in.Fragment = ip.isFragment()
		in.FragOffset = ip.fragOffset()
		in.L4Off = off + hl
	case 6:
		if len(q) < IPv6HeaderLen || IPVersion(q) != 6 {
			return
		}
		ip := ipv6Packet(q)
		if tl := IPv6HeaderLen + ip.payloadLen(); tl < len(q) {
			q = q[:tl]
		}
		c, err := walkIPv6(q, ip.nextHeader())
		if err != nil {
			return
		}
		in.Src, in.Dst = ip.src(), ip.dst()
		in.Proto = c.Proto
		in.Fragment = c.HasFrag && (c.MoreFrags || c.FragOffset != 0)
		in.FragOffset = c.FragOffset
		in.L4Off = off + c.Off
	default:
		return
	}
	in.Valid = true
	in.End = off + len(q)
	if in.FragOffset != 0 {
		return
	}
	l4 := pkt[in.L4Off:in.End]
	switch {
	case in.Proto == ProtoTCP, in.Proto == ProtoUDP:
		if len(l4) >= 4 {
			in.HasPorts = true
			in.SrcPort = binary.BigEndian.Uint16(l4[0:])
			in.DstPort = binary.BigEndian.Uint16(l4[2:])
		}
	case in.Proto == ProtoICMP && v == 4, in.Proto == ProtoICMPv6 && v == 6:
		if m, err := parseICMP(l4); err == nil && m.isEcho(v) {
			in.HasPorts = true
			in.SrcPort, in.DstPort = m.id(), m.id()
		}
	}
}

// IPv4HeaderChecksumValid reports whether b starts with a whole IPv4 header
// (version 4, IHL >= 5, within b) whose header checksum is right: what Linux's
// ip_rcv checks before routing. It is false for anything else, IPv6 included
// (IPv6 has no header checksum). It reads only the header, so a packet whose
// transport checksum is still partial (checksum offload) passes.
func IPv4HeaderChecksumValid(b []byte) bool {
	if len(b) < IPv4MinHeaderLen || b[ipv4VersIHL]>>4 != 4 {
		return false
	}
	hl := int(b[ipv4VersIHL]&0x0f) * 4
	if hl < IPv4MinHeaderLen || hl > len(b) {
		return false
	}
	// The header without options, unrolled: this runs for every packet forwarded.
	h := b[:IPv4MinHeaderLen]
	s := uint64(binary.BigEndian.Uint32(h[0:])) + uint64(binary.BigEndian.Uint32(h[4:])) +
		uint64(binary.BigEndian.Uint32(h[8:])) + uint64(binary.BigEndian.Uint32(h[12:])) +
		uint64(binary.BigEndian.Uint32(h[16:]))
	if hl > IPv4MinHeaderLen {
		s += uint64(sum(b[IPv4MinHeaderLen:hl], 0))
	}
	s = s&0xffffffff + s>>32
	s = s&0xffffffff + s>>32
	return fold(uint32(s)) == 0xffff
}

// ChecksumsValid reports whether the checksums of the packet p describes
// are correct: the IPv4 header checksum, and the transport checksum when the
// whole transport segment is present (not a fragment) and the protocol is
// TCP, UDP, ICMP or ICMPv6. A zero UDP checksum means none: correct over
// IPv4, wrong over IPv6 (RFC 8200 8.1). p must come from Decode(b, p).
func ChecksumsValid(b []byte, p *Info) bool {
	if !p.consistent(b) {
		return false
	}
	if p.Version == 4 && !ipv4Packet(b).checksumValid() {
		return false
	}
	if !p.HasL4 || p.Fragment {
		return true
	}
	seg := b[p.L4Off:p.TotalLen]
	switch p.Proto {
	case ProtoTCP:
	case ProtoUDP:
		seg = seg[:UDPHeaderLen+p.PayloadLen]
		if udpDatagram(seg).checksum() == 0 {
			// None over IPv4 (RFC 768); invalid over IPv6 (RFC 8200 8.1).
			return p.Version == 4
		}
	case ProtoICMP:
		return Checksum(seg, 0) == 0
	case ProtoICMPv6:
	default:
		return true
	}
	return Checksum(seg, PseudoHeaderSum(p.Src, p.Dst, p.Proto, len(seg))) == 0
}

// consistent reports whether p could have come from Decode(b, p): the
// offsets the rewrites and ChecksumsValid use lie within b, so they cannot
// panic whatever p holds.
func (p *Info) consistent(b []byte) bool {
	if p.TotalLen > len(b) || p.TotalLen < 1 {
		return false
	}
	switch p.Version {
	case 4:
		if p.TotalLen < IPv4MinHeaderLen || IPVersion(b) != 4 {
			return false
		}
		if hl := ipv4Packet(b).headerLen(); hl < IPv4MinHeaderLen || hl > p.TotalLen {
			return false
		}
	case 6:
		if p.TotalLen < IPv6HeaderLen || IPVersion(b) != 6 {
			return false
		}
	default:
		return false
	}
	if !p.HasL4 {
		return true
	}
	minOff := IPv4MinHeaderLen
	if p.Version == 6 {
		minOff = IPv6HeaderLen
	}
	var need int
	switch p.Proto {
	case ProtoTCP:
		need = TCPMinHeaderLen
	case ProtoUDP:
		need = UDPHeaderLen
		if p.PayloadLen < 0 || p.PayloadLen > p.TotalLen || p.L4Off+UDPHeaderLen+p.PayloadLen > p.TotalLen {
			return false
		}
	default:
		need = icmpHeaderLen
	}
	return p.L4Off >= minOff && p.L4Off <= p.TotalLen-need
}

// innerConsistent reports whether p.Inner could have come from Decode(b, p)
// and lies where the inner rewrites can patch it: within the ICMP error, at
// even offsets from the ICMP header so that the 16-bit words of the outer
// checksum line up.
func (p *Info) innerConsistent(b []byte) bool {
	in := &p.Inner
	if !p.HasL4 || !p.ICMPError || !in.Valid || in.Off != p.L4Off+icmpHeaderLen {
		return false
	}
	if p.Version == 4 && p.Proto != ProtoICMP || p.Version == 6 && p.Proto != ProtoICMPv6 {
		return false
	}
	if in.End > p.TotalLen || in.L4Off > in.End || (in.L4Off-in.Off)%2 != 0 {
		return false
	}
	hl := IPv6HeaderLen
	if p.Version == 4 {
		hl = IPv4MinHeaderLen
	}
	if in.Off+hl > in.End {
		return false
	}
	q := b[in.Off:in.End]
	if p.Version == 4 {
		hl = ipv4Packet(q).headerLen()
		if IPVersion(q) != 4 || hl < IPv4MinHeaderLen {
			return false
		}
	} else if IPVersion(q) != 6 {
		return false
	}
	if in.L4Off < in.Off+hl {
		return false
	}
	if in.HasPorts {
		need := 4
		if in.Proto == ProtoICMP || in.Proto == ProtoICMPv6 {
			need = icmpHeaderLen
		}
		if in.L4Off+need > in.End {
			return false
		}
	}
	return true
}
