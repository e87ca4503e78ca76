package packet

import (
	"encoding/binary"
	"net/netip"
)

// SetSource rewrites the source address and source port (or echo id); see
// "NAT rewrites" in the package comment.
func SetSource(b []byte, p *Info, addr netip.Addr, port uint16) bool {
	return setOuter(b, p, addr, port, true)
}

// SetDestination rewrites the destination address and destination port (or
// echo id).
func SetDestination(b []byte, p *Info, addr netip.Addr, port uint16) bool {
	return setOuter(b, p, addr, port, false)
}

// SetInnerSource rewrites the source address and port (or echo id) of the
// packet quoted by an ICMP error: the quoted IPv4 header checksum, the quoted
// transport checksum when its field lies within the quote (an incremental
// update is exact even when the quoted payload is cut), and the ICMP
// checksum of the error itself. It returns false unless p.ICMPError and
// p.Inner.Valid.
func SetInnerSource(b []byte, p *Info, addr netip.Addr, port uint16) bool {
	return setInner(b, p, addr, port, true)
}

// SetInnerDestination is SetInnerSource for the quoted packet's destination.
func SetInnerDestination(b []byte, p *Info, addr netip.Addr, port uint16) bool {
	return setInner(b, p, addr, port, false)
}

// familyAddr returns addr as the 4 or 16 bytes of an address of IP version v.
func familyAddr(v uint8, addr netip.Addr) (a [16]byte, n int, ok bool) {
	if addr.Is4In6() {
		addr = addr.Unmap()
	}
	switch {
	case v == 4 && addr.Is4():
		a4 := addr.As4()
		copy(a[:], a4[:])
		return a, 4, true
	case v == 6 && addr.Is6():
		return addr.As16(), 16, true
	}
	return a, 0, false
}

// addrOffset returns the offset of the source or destination address in an
// IP header of version v.
func addrOffset(v uint8, src bool) int {
	switch {
	case v == 4 && src:
		return ipv4Src
	case v == 4:
		return ipv4Dst
	case src:
		return ipv6Src
	}
	return ipv6Dst
}

func setOuter(b []byte, p *Info, addr netip.Addr, port uint16, src bool) bool {
	if !p.consistent(b) {
		return false
	}
	na, n, ok := familyAddr(p.Version, addr)
	if !ok {
		return false
	}
	if !p.HasL4 && p.Fragment && p.FragOffset == 0 &&
		(p.Proto == ProtoTCP || p.Proto == ProtoUDP || p.Proto == ProtoICMPv6 && p.Version == 6) {
		return false
	}
	aoff := addrOffset(p.Version, src)
	delta := sumDelta(sum(b[aoff:aoff+n], 0), sum(na[:n], 0))

	if p.HasL4 {
		hasPort := p.Proto == ProtoTCP || p.Proto == ProtoUDP || p.ICMPEcho
		patchL4(b[p.L4Off:p.TotalLen], p.Proto, p.Version, delta, src, port, hasPort, nil)
	}
	if p.Version == 4 {
		h := ipv4Packet(b)
		h.setChecksum(updateDelta(h.checksum(), delta))
	}
	copy(b[aoff:aoff+n], na[:n])

	a := netip.AddrFrom4([4]byte(na[:4]))
	if p.Version == 6 {
		a = netip.AddrFrom16(na)
	}
	if src {
		p.Src = a
	} else {
		p.Dst = a
	}
	switch {
	case !p.HasL4:
	case p.Proto == ProtoTCP || p.Proto == ProtoUDP:
		if src {
			p.SrcPort = port
		} else {
			p.DstPort = port
		}
	case p.ICMPEcho:
		p.ICMPID, p.SrcPort, p.DstPort = port, port, port
	}
	return true
}

func setInner(b []byte, p *Info, addr netip.Addr, port uint16, src bool) bool {
	if !p.consistent(b) || !p.innerConsistent(b) {
		return false
	}
	na, n, ok := familyAddr(p.Version, addr)
	if !ok {
		return false
	}
	in := &p.Inner
	aoff := in.Off + addrOffset(p.Version, src)
	delta := sumDelta(sum(b[aoff:aoff+n], 0), sum(na[:n], 0))

	// Every 16-bit word written inside the quote goes through put16, which
	// keeps oc, the checksum of the ICMP error itself, right.
	ocOff := p.L4Off + icmpChecksum
	oc := binary.BigEndian.Uint16(b[ocOff:])

	if p.Version == 4 {
		off := in.Off + ipv4Checksum
		put16(b, off, updateDelta(binary.BigEndian.Uint16(b[off:]), delta), &oc)
	}
	if in.FragOffset == 0 {
		patchL4(b[in.L4Off:in.End], in.Proto, p.Version, delta, src, port, in.HasPorts, &oc)
	}
	for i := 0; i < n; i += 2 {
		put16(b, aoff+i, binary.BigEndian.Uint16(na[i:]), &oc)
	}
	binary.BigEndian.PutUint16(b[ocOff:], oc)

	a := netip.AddrFrom4([4]byte(na[:4]))
	if p.Version == 6 {
		a = netip.AddrFrom16(na)
	}
	if src {
		in.Src = a
	} else {
		in.Dst = a
	}
	if in.HasPorts {
		if in.Proto == ProtoICMP || in.Proto == ProtoICMPv6 {
			in.SrcPort, in.DstPort = port, port
		} else if src {
			in.SrcPort = port
		} else {
			in.DstPort = port
		}
	}
	return true
}

// patchL4 moves the transport header at the start of l4, in a packet of IP
// version v, to a new source (src) or destination address and port. Its
// checksum, when the field lies within l4 (a quote may cut the header
// short), changes by the address change (delta, from sumDelta; every
// checksum but ICMPv4's covers the addresses through the pseudo header)
// and, if hasPort, by the port change; a zero UDP checksum (none)
// stays zero. If hasPort, the source or destination port becomes port (for
// ICMP, the echo identifier). Other protocols are left alone. Each word is
// written by put16 with oc.
func patchL4(l4 []byte, proto, v uint8, delta uint32, src bool, port uint16, hasPort bool, oc *uint16) {
	csOff, portOff, pseudo := 0, 0, true
	if !src {
		portOff = 2
	}
	switch {
	case proto == ProtoTCP:
		csOff = tcpChecksum
	case proto == ProtoUDP:
		csOff = udpChecksum
	case proto == ProtoICMP && v == 4, proto == ProtoICMPv6 && v == 6:
		csOff, portOff, pseudo = icmpChecksum, icmpID, v == 6
	default:
		return
	}
	if csOff+2 <= len(l4) && (pseudo || hasPort) {
		c := binary.BigEndian.Uint16(l4[csOff:])
		// RFC 768: zero means no checksum; RFC 6936 allows it over IPv6
		// for tunnels. Either way it stays zero.
		if proto != ProtoUDP || c != 0 {
			if pseudo {
				c = updateDelta(c, delta)
			}
			if hasPort {
				c = updateChecksum16(c, binary.BigEndian.Uint16(l4[portOff:]), port)
			}
			if proto == ProtoUDP {
				c = udpCsum(c)
			}
			put16(l4, csOff, c, oc)
		}
	}
	if hasPort {
		put16(l4, portOff, port, oc)
	}
}

// put16 writes v at b[off:] and, unless oc is nil, updates *oc, the checksum
// of a message that covers the word (an ICMP error quoting it).
func put16(b []byte, off int, v uint16, oc *uint16) {
	if oc != nil {
		*oc = updateChecksum16(*oc, binary.BigEndian.Uint16(b[off:]), v)
	}
	binary.BigEndian.PutUint16(b[off:], v)
}
