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
	oldSum, newSum := Sum(b[aoff:aoff+n], 0), Sum(na[:n], 0)

	portOff := 0
	if !src {
		portOff = 2
	}
	if p.HasL4 {
		l4 := b[p.L4Off:p.TotalLen]
		switch {
		case p.Proto == ProtoTCP:
			c := binary.BigEndian.Uint16(l4[tcpChecksum:])
			c = updateSum(c, oldSum, newSum)
			c = UpdateChecksum16(c, binary.BigEndian.Uint16(l4[portOff:]), port)
			binary.BigEndian.PutUint16(l4[tcpChecksum:], c)
			binary.BigEndian.PutUint16(l4[portOff:], port)
		case p.Proto == ProtoUDP:
			// RFC 768: zero means no checksum; RFC 6936 allows it over IPv6
			// for tunnels. Either way it stays zero.
			if c := binary.BigEndian.Uint16(l4[udpChecksum:]); c != 0 {
				c = updateSum(c, oldSum, newSum)
				c = UpdateChecksum16(c, binary.BigEndian.Uint16(l4[portOff:]), port)
				if c == 0 {
					c = 0xffff
				}
				binary.BigEndian.PutUint16(l4[udpChecksum:], c)
			}
			binary.BigEndian.PutUint16(l4[portOff:], port)
		case p.Proto == ProtoICMP && p.Version == 4, p.Proto == ProtoICMPv6 && p.Version == 6:
			c := binary.BigEndian.Uint16(l4[icmpChecksum:])
			if p.Version == 6 {
				c = updateSum(c, oldSum, newSum)
			}
			if p.ICMPEcho {
				c = UpdateChecksum16(c, binary.BigEndian.Uint16(l4[icmpID:]), port)
				binary.BigEndian.PutUint16(l4[icmpID:], port)
			}
			binary.BigEndian.PutUint16(l4[icmpChecksum:], c)
		}
	}
	if p.Version == 4 {
		h := IPv4(b)
		h.SetChecksum(updateSum(h.Checksum(), oldSum, newSum))
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
	oldSum, newSum := Sum(b[aoff:aoff+n], 0), Sum(na[:n], 0)

	// Every 16-bit word written inside the quote goes through put16, which
	// keeps the checksum of the ICMP error itself right.
	ocOff := p.L4Off + icmpChecksum
	oc := binary.BigEndian.Uint16(b[ocOff:])
	put16 := func(off int, v uint16) {
		oc = UpdateChecksum16(oc, binary.BigEndian.Uint16(b[off:]), v)
		binary.BigEndian.PutUint16(b[off:], v)
	}

	if p.Version == 4 {
		off := in.Off + ipv4Checksum
		put16(off, updateSum(binary.BigEndian.Uint16(b[off:]), oldSum, newSum))
	}
	portOff := in.L4Off
	if !src {
		portOff += 2
	}
	if in.FragOffset == 0 {
		switch {
		case in.Proto == ProtoTCP, in.Proto == ProtoUDP:
			csOff := in.L4Off + tcpChecksum
			if in.Proto == ProtoUDP {
				csOff = in.L4Off + udpChecksum
			}
			if csOff+2 <= in.End {
				c := binary.BigEndian.Uint16(b[csOff:])
				if in.Proto == ProtoTCP || c != 0 {
					c = updateSum(c, oldSum, newSum)
					if in.HasPorts {
						c = UpdateChecksum16(c, binary.BigEndian.Uint16(b[portOff:]), port)
					}
					if c == 0 && in.Proto == ProtoUDP {
						c = 0xffff
					}
					put16(csOff, c)
				}
			}
			if in.HasPorts {
				put16(portOff, port)
			}
		case in.Proto == ProtoICMP && p.Version == 4, in.Proto == ProtoICMPv6 && p.Version == 6:
			csOff := in.L4Off + icmpChecksum
			if csOff+2 <= in.End && (p.Version == 6 || in.HasPorts) {
				c := binary.BigEndian.Uint16(b[csOff:])
				if p.Version == 6 {
					c = updateSum(c, oldSum, newSum)
				}
				if in.HasPorts {
					c = UpdateChecksum16(c, binary.BigEndian.Uint16(b[in.L4Off+icmpID:]), port)
				}
				put16(csOff, c)
			}
			if in.HasPorts {
				put16(in.L4Off+icmpID, port)
			}
		}
	}
	for i := 0; i < n; i += 2 {
		put16(aoff+i, binary.BigEndian.Uint16(na[i:]))
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
