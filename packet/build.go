package packet

import (
	"encoding/binary"
	"net/netip"
)

// Fields of the packets the builders make.
const (
	// buildTTL is the IPv4 TTL and IPv6 Hop Limit of built packets (Linux
	// net.ipv4.ip_default_ttl and net.ipv6.conf.all.hop_limit default to 64).
	buildTTL = 64
	// tosInternetControl is IP precedence 6 (INTERNETWORK CONTROL), which
	// RFC 1812 4.3.2.5 asks for on ICMP errors.
	tosInternetControl = 0xc0

	// ICMPv4MaxErrorLen bounds an ICMPv4 error and its quote (RFC 1812 4.3.2.3).
	ICMPv4MaxErrorLen = 576
	// ICMPv6MaxErrorLen bounds an ICMPv6 error and its quote (RFC 4443 2.4 (c),
	// the IPv6 minimum MTU).
	ICMPv6MaxErrorLen = 1280

	// ResetLen4 and ResetLen6 are the lengths of the RSTs the builders make.
	ResetLen4 = IPv4MinHeaderLen + TCPMinHeaderLen
	ResetLen6 = IPv6HeaderLen + TCPMinHeaderLen
)

// BuildReset writes into dst the RST that answers the TCP segment offending,
// per RFC 9293 3.10.7.1 (RFC 793 "Reset Generation"): from offending's
// destination to its source, ports swapped; if offending has ACK set, seq =
// its ack and flags RST, otherwise seq = 0, ack = its seq + payload length
// (+1 for SYN, +1 for FIN) and flags RST|ACK. Taking seq from the ACK field
// gives exactly the receiver's RCV.NXT, the only value RFC 5961 3.2 accepts
// without a challenge ACK. The RST has the IP version of offending, TTL 64
// and DF, window 0, no options.
//
// It returns dst[:ResetLen4] or dst[:ResetLen6] (cap(dst) must allow it, or
// ErrShortBuffer). It refuses an offending packet that does not decode, is not
// TCP (ErrNotTCP), is a fragment (ErrFragment: its length is not known), is
// itself a RST (ErrIsReset), or does not travel between unicast hosts
// (ErrNotUnicast). dst may share memory with offending.
func BuildReset(dst []byte, offending []byte) ([]byte, error) {
	var p Info
	if err := Decode(offending, &p); err != nil {
		return nil, err
	}
	if p.Proto != ProtoTCP {
		return nil, ErrNotTCP
	}
	if p.Fragment {
		return nil, ErrFragment
	}
	if !p.HasL4 {
		return nil, ErrNotTCP
	}
	if p.TCPFlags&TCPRst != 0 {
		return nil, ErrIsReset
	}
	if !unicast(p.Src, p.Dst) {
		return nil, ErrNotUnicast
	}
	var seq, ack uint32
	flags := TCPRst
	if p.TCPFlags&TCPAck != 0 {
		seq = p.Ack
	} else {
		ack = p.Seq + uint32(p.PayloadLen)
		if p.TCPFlags&TCPSyn != 0 {
			ack++
		}
		if p.TCPFlags&TCPFin != 0 {
			ack++
		}
		flags |= TCPAck
	}
	return buildTCP(dst, p.Dst, p.Src, p.DstPort, p.SrcPort, seq, ack, flags, 0, nil)
}

// BuildRST writes into dst a bare RST from src to dstAP with sequence number
// seq: flags RST|ACK and acknowledgment number ack if withAck, flags RST and
// acknowledgment number 0 otherwise. It serves to reset both ends of a tracked
// flow from recorded sequence numbers. Both addresses must be valid and of
// one IP version (IPv4-mapped IPv6 addresses count as IPv4), or it returns
// ErrAddrFamily. It returns dst[:ResetLen4] or dst[:ResetLen6], or
// ErrShortBuffer if cap(dst) is too small.
func BuildRST(dst []byte, src, dstAP netip.AddrPort, seq, ack uint32, withAck bool) ([]byte, error) {
	flags := TCPRst
	if withAck {
		flags |= TCPAck
	} else {
		ack = 0
	}
	return BuildTCP(dst, src, dstAP, seq, ack, flags, 0, nil)
}

// BuildTCP writes into dst a TCP segment from src to dstAP carrying payload:
// an IPv4 header (TTL 64, DF, identification 0) or IPv6 header (Hop Limit
// 64, traffic class and flow label 0) and a 20-byte TCP header without
// options, with sequence number seq, acknowledgment number ack, the flags
// byte flags and window, and correct checksums. Both addresses must be valid
// and of one IP version (IPv4-mapped IPv6 addresses count as IPv4), or it
// returns ErrAddrFamily. It returns dst[:n] for the n bytes of the packet,
// ErrShortBuffer if cap(dst) is too small, or ErrTooLong if the packet would
// not fit its IP length field. dst may share memory with payload.
func BuildTCP(dst []byte, src, dstAP netip.AddrPort, seq, ack uint32, flags uint8, window uint16, payload []byte) ([]byte, error) {
	s, d, err := addrPair(src, dstAP)
	if err != nil {
		return nil, err
	}
	return buildTCP(dst, s, d, src.Port(), dstAP.Port(), seq, ack, flags, window, payload)
}

// buildTCP is BuildTCP for addresses src and dstA that are valid and of one
// version.
func buildTCP(dst []byte, src, dstA netip.Addr, sport, dport uint16, seq, ack uint32, flags uint8, window uint16, payload []byte) ([]byte, error) {
	b, hl, pseudo, err := buildIP(dst, src, dstA, ProtoTCP, TCPMinHeaderLen, payload)
	if err != nil {
		return nil, err
	}
	t := b[hl:]
	binary.BigEndian.PutUint16(t[tcpSrcPort:], sport)
	binary.BigEndian.PutUint16(t[tcpDstPort:], dport)
	binary.BigEndian.PutUint32(t[tcpSeq:], seq)
	binary.BigEndian.PutUint32(t[tcpAck:], ack)
	t[tcpDataOff] = TCPMinHeaderLen / 4 << 4
	t[tcpFlags] = flags
	binary.BigEndian.PutUint16(t[tcpWindow:], window)
	binary.BigEndian.PutUint16(t[tcpChecksum:], 0)
	binary.BigEndian.PutUint16(t[tcpUrgent:], 0)
	binary.BigEndian.PutUint16(t[tcpChecksum:], Checksum(t, pseudo))
	return b, nil
}

// BuildUDP writes into dst a UDP datagram from src to dstAP carrying
// payload, with the IP header of BuildTCP and a correct checksum (one that
// computes to zero sent as all ones, RFC 768). Addresses, errors and dst as
// for BuildTCP.
func BuildUDP(dst []byte, src, dstAP netip.AddrPort, payload []byte) ([]byte, error) {
	s, d, err := addrPair(src, dstAP)
	if err != nil {
		return nil, err
	}
	b, hl, pseudo, err := buildIP(dst, s, d, ProtoUDP, UDPHeaderLen, payload)
	if err != nil {
		return nil, err
	}
	u := b[hl:]
	binary.BigEndian.PutUint16(u[udpSrcPort:], src.Port())
	binary.BigEndian.PutUint16(u[udpDstPort:], dstAP.Port())
	binary.BigEndian.PutUint16(u[udpLength:], uint16(len(u)))
	binary.BigEndian.PutUint16(u[udpChecksum:], 0)
	binary.BigEndian.PutUint16(u[udpChecksum:], udpCsum(Checksum(u, pseudo)))
	return b, nil
}

// addrPair returns the addresses of src and dst, IPv4-mapped IPv6 addresses
// unmapped, or ErrAddrFamily unless both are valid and of one IP version.
func addrPair(src, dst netip.AddrPort) (s, d netip.Addr, err error) {
	s, d = src.Addr().Unmap(), dst.Addr().Unmap()
	if !s.IsValid() || !d.IsValid() || s.Is4() != d.Is4() {
		return s, d, ErrAddrFamily
	}
	return s, d, nil
}

// buildIP lays out in dst a packet from src to dstA (valid, of one version)
// whose transport header of l4HeaderLen bytes is followed by payload: it
// checks the sizes, copies payload to its place (first, as dst may share
// memory with it) and writes the IP header (TTL 64, IPv4 DF). It returns the
// packet, the offset of the transport header, which is left for the caller
// to fill, and the pseudo-header sum of its checksum.
func buildIP(dst []byte, src, dstA netip.Addr, proto uint8, l4HeaderLen int, payload []byte) (b []byte, hl int, pseudo uint32, err error) {
	hl = IPv4MinHeaderLen
	if !src.Is4() {
		hl = IPv6HeaderLen
	}
	l4Len := l4HeaderLen + len(payload)
	if src.Is4() && hl+l4Len > maxDatagramBytes || l4Len > maxDatagramBytes {
		return nil, 0, 0, ErrTooLong
	}
	n := hl + l4Len
	if cap(dst) < n {
		return nil, 0, 0, ErrShortBuffer
	}
	b = dst[:n]
	copy(b[hl+l4HeaderLen:], payload)
	if src.Is4() {
		putIPv4Header(b, 0, n, ipv4FlagDF, buildTTL, proto, src, dstA)
	} else {
		putIPv6Header(b, l4Len, proto, buildTTL, src, dstA)
	}
	return b, hl, PseudoHeaderSum(src, dstA, proto, l4Len), nil
}

// BuildUnreachable writes into dst the ICMP error that refuses offending:
// ICMPv4 destination unreachable, code 13 (communication administratively
// prohibited, RFC 1812 5.2.7.1), or ICMPv6 destination unreachable, code 1
// (administratively prohibited, RFC 4443 3.1), from `from` to offending's
// source, TTL/Hop Limit 64. The quote is offending up to its IP total length,
// cut so that the error fits in 576 bytes (IPv4, RFC 1812 4.3.2.3), 1280
// bytes (IPv6, RFC 4443 2.4) and cap(dst); if cap(dst) cannot hold the IP
// headers and the first 8 bytes of the transport header (RFC 792), or the
// whole 576 or 1280 bytes when those are more, it returns ErrShortBuffer.
//
// Following RFC 1122 3.2.2 and RFC 4443 2.4 (e) it never answers an ICMP
// error or an ICMP message whose type it cannot read (ErrICMPError), a
// non-first fragment (ErrFragment), or a packet whose source is unspecified
// or multicast or whose destination is multicast or the IPv4 limited
// broadcast (ErrNotUnicast). from must be of offending's IP version
// (ErrAddrFamily). dst may share memory with offending.
func BuildUnreachable(dst []byte, offending []byte, from netip.Addr) ([]byte, error) {
	return buildICMPError(dst, offending, from, ICMPv4Unreachable, ICMPv4CodeAdminProhibited, ICMPv6Unreachable, ICMPv6CodeAdminProhibited)
}

// buildICMPError is BuildUnreachable with the ICMPv4 type and code t4, c4 and
// the ICMPv6 ones t6, c6.
func buildICMPError(dst []byte, offending []byte, from netip.Addr, t4, c4, t6, c6 uint8) ([]byte, error) {
	var p Info
	if err := Decode(offending, &p); err != nil {
		return nil, err
	}
	if p.FragOffset != 0 {
		return nil, ErrFragment
	}
	switch {
	case p.Version == 4 && p.Proto == ProtoICMP:
		// Linux icmp_send also refuses types it does not know (> 18).
		if !p.HasL4 || p.ICMPError || p.ICMPType == ICMPv4SourceQuench ||
			p.ICMPType == ICMPv4Redirect || p.ICMPType > 18 {
			return nil, ErrICMPError
		}
	case p.Version == 6 && p.Proto == ProtoICMPv6:
		if !p.HasL4 || p.ICMPType < 128 {
			return nil, ErrICMPError
		}
	}
	if !unicast(p.Src, p.Dst) {
		return nil, ErrNotUnicast
	}
	from = from.Unmap()
	if !from.IsValid() || from.Is4() != (p.Version == 4) {
		return nil, ErrAddrFamily
	}

	hl, limit := IPv4MinHeaderLen, ICMPv4MaxErrorLen
	if p.Version == 6 {
		hl, limit = IPv6HeaderLen, ICMPv6MaxErrorLen
	}
	hdr := hl + icmpHeaderLen
	quote := min(p.TotalLen, limit-hdr, cap(dst)-hdr)
	if quote < min(p.TotalLen, p.L4Off+8, limit-hdr) {
		return nil, ErrShortBuffer
	}
	n := hdr + quote
	b := dst[:n]
	// The quote first: dst may overlap offending, and copy is a memmove.
	copy(b[hdr:], offending[:quote])
	m := b[hl:]
	m[icmpType], m[icmpCode] = t4, c4
	if p.Version == 6 {
		m[icmpType], m[icmpCode] = t6, c6
	}
	binary.BigEndian.PutUint16(m[icmpChecksum:], 0)
	binary.BigEndian.PutUint32(m[icmpID:], 0)
	if p.Version == 4 {
		putIPv4Header(b, tosInternetControl, n, 0, buildTTL, ProtoICMP, from, p.Src)
		binary.BigEndian.PutUint16(m[icmpChecksum:], Checksum(m, 0))
	} else {
		putIPv6Header(b, len(m), ProtoICMPv6, buildTTL, from, p.Src)
		binary.BigEndian.PutUint16(m[icmpChecksum:], Checksum(m, PseudoHeaderSum(from, p.Src, ProtoICMPv6, len(m))))
	}
	return b, nil
}

// unicast reports whether a packet from src to dst is between single hosts:
// src neither unspecified nor multicast nor the IPv4 limited broadcast, dst
// neither multicast nor the limited broadcast.
func unicast(src, dst netip.Addr) bool {
	bcast := netip.AddrFrom4([4]byte{255, 255, 255, 255})
	return !src.IsUnspecified() && !src.IsMulticast() && src != bcast &&
		!dst.IsMulticast() && dst != bcast
}
