package packet

import (
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// Test packets are serialized by gopacket, an implementation independent of
// this package, with lengths and checksums computed by it.

func ap(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }
func ip(s string) netip.Addr     { return netip.MustParseAddr(s) }

func serialize(ls ...gopacket.SerializableLayer) []byte {
	buf := gopacket.NewSerializeBuffer()
	opts := gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}
	if err := gopacket.SerializeLayers(buf, opts, ls...); err != nil {
		panic(err)
	}
	return append([]byte(nil), buf.Bytes()...)
}

func ipv4Layer(src, dst netip.Addr, proto layers.IPProtocol) *layers.IPv4 {
	return &layers.IPv4{
		Version: 4, IHL: 5, TTL: 64, Id: 0x1234, Flags: layers.IPv4DontFragment,
		Protocol: proto, SrcIP: src.AsSlice(), DstIP: dst.AsSlice(),
	}
}

func ipv6Layer(src, dst netip.Addr, proto layers.IPProtocol) *layers.IPv6 {
	return &layers.IPv6{
		Version: 6, HopLimit: 64, NextHeader: proto, FlowLabel: 0x12345,
		SrcIP: src.AsSlice(), DstIP: dst.AsSlice(),
	}
}

func tcpLayer(src, dst uint16, flags uint8, seq, ack uint32) *layers.TCP {
	return &layers.TCP{
		SrcPort: layers.TCPPort(src), DstPort: layers.TCPPort(dst), Seq: seq, Ack: ack,
		FIN: flags&TCPFin != 0, SYN: flags&TCPSyn != 0, RST: flags&TCPRst != 0,
		PSH: flags&TCPPsh != 0, ACK: flags&TCPAck != 0, URG: flags&TCPUrg != 0,
		ECE: flags&TCPEce != 0, CWR: flags&TCPCwr != 0, Window: 64240,
	}
}

// tcp4 is an IPv4 TCP segment from src to dst.
func tcp4(src, dst string, flags uint8, seq, ack uint32, payload []byte) []byte {
	s, d := ap(src), ap(dst)
	ipl := ipv4Layer(s.Addr(), d.Addr(), layers.IPProtocolTCP)
	t := tcpLayer(s.Port(), d.Port(), flags, seq, ack)
	if flags&TCPSyn != 0 {
		t.Options = []layers.TCPOption{
			{OptionType: layers.TCPOptionKindMSS, OptionLength: 4, OptionData: []byte{0x05, 0xb4}},
			{OptionType: layers.TCPOptionKindSACKPermitted, OptionLength: 2},
			{OptionType: layers.TCPOptionKindWindowScale, OptionLength: 3, OptionData: []byte{7}},
		}
	}
	_ = t.SetNetworkLayerForChecksum(ipl)
	return serialize(ipl, t, gopacket.Payload(payload))
}

// tcp6 is an IPv6 TCP segment from src to dst.
func tcp6(src, dst string, flags uint8, seq, ack uint32, payload []byte) []byte {
	s, d := ap(src), ap(dst)
	ipl := ipv6Layer(s.Addr(), d.Addr(), layers.IPProtocolTCP)
	t := tcpLayer(s.Port(), d.Port(), flags, seq, ack)
	_ = t.SetNetworkLayerForChecksum(ipl)
	return serialize(ipl, t, gopacket.Payload(payload))
}

// udp4 is an IPv4 UDP datagram from src to dst.
func udp4(src, dst string, payload []byte) []byte {
	s, d := ap(src), ap(dst)
	ipl := ipv4Layer(s.Addr(), d.Addr(), layers.IPProtocolUDP)
	u := &layers.UDP{SrcPort: layers.UDPPort(s.Port()), DstPort: layers.UDPPort(d.Port())}
	_ = u.SetNetworkLayerForChecksum(ipl)
	return serialize(ipl, u, gopacket.Payload(payload))
}

// udp6 is an IPv6 UDP datagram from src to dst.
func udp6(src, dst string, payload []byte) []byte {
	s, d := ap(src), ap(dst)
	ipl := ipv6Layer(s.Addr(), d.Addr(), layers.IPProtocolUDP)
	u := &layers.UDP{SrcPort: layers.UDPPort(s.Port()), DstPort: layers.UDPPort(d.Port())}
	_ = u.SetNetworkLayerForChecksum(ipl)
	return serialize(ipl, u, gopacket.Payload(payload))
}

// echo4 is an ICMPv4 echo request (or reply) from src to dst.
func echo4(src, dst string, reply bool, id, seq uint16, payload []byte) []byte {
	typ := uint8(layers.ICMPv4TypeEchoRequest)
	if reply {
		typ = layers.ICMPv4TypeEchoReply
	}
	ipl := ipv4Layer(ip(src), ip(dst), layers.IPProtocolICMPv4)
	m := &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(typ, 0), Id: id, Seq: seq}
	return serialize(ipl, m, gopacket.Payload(payload))
}

// echo6 is an ICMPv6 echo request (or reply) from src to dst.
func echo6(src, dst string, reply bool, id, seq uint16, payload []byte) []byte {
	typ := uint8(layers.ICMPv6TypeEchoRequest)
	if reply {
		typ = layers.ICMPv6TypeEchoReply
	}
	ipl := ipv6Layer(ip(src), ip(dst), layers.IPProtocolICMPv6)
	m := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(typ, 0)}
	_ = m.SetNetworkLayerForChecksum(ipl)
	e := &layers.ICMPv6Echo{Identifier: id, SeqNumber: seq}
	return serialize(ipl, m, e, gopacket.Payload(payload))
}

// icmp4Err is an ICMPv4 error from src to dst quoting quoted (cut to n bytes
// if n >= 0).
func icmp4Err(src, dst string, typ, code uint8, quoted []byte, n int) []byte {
	if n >= 0 && n < len(quoted) {
		quoted = quoted[:n]
	}
	ipl := ipv4Layer(ip(src), ip(dst), layers.IPProtocolICMPv4)
	ipl.Flags = 0
	m := &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(typ, code)}
	return serialize(ipl, m, gopacket.Payload(quoted))
}

// icmp6Err is an ICMPv6 error from src to dst quoting quoted (cut to n bytes
// if n >= 0); rest is bytes 4-7 of the header (MTU, pointer).
func icmp6Err(src, dst string, typ, code uint8, rest uint32, quoted []byte, n int) []byte {
	if n >= 0 && n < len(quoted) {
		quoted = quoted[:n]
	}
	ipl := ipv6Layer(ip(src), ip(dst), layers.IPProtocolICMPv6)
	m := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(typ, code)}
	_ = m.SetNetworkLayerForChecksum(ipl)
	body := binary.BigEndian.AppendUint32(nil, rest)
	return serialize(ipl, m, gopacket.Payload(append(body, quoted...)))
}

// withIPv4Options returns pkt (an IPv4 packet without options) with opts
// (a multiple of 4 bytes) inserted after the header, lengths and header
// checksum fixed.
func withIPv4Options(pkt, opts []byte) []byte {
	out := append(append(append([]byte(nil), pkt[:20]...), opts...), pkt[20:]...)
	out[0] = 0x40 | byte((20+len(opts))/4)
	binary.BigEndian.PutUint16(out[2:], uint16(len(out)))
	refFixIPv4(out)
	return out
}

// ext is one IPv6 extension header: its type and its bytes, whose first byte
// (Next Header) withExt fills in.
type ext struct {
	typ  uint8
	body []byte
}

func hbh(n int) ext { // Hop-by-Hop with n*8 bytes, PadN options
	b := make([]byte, n*8)
	b[1] = byte(n - 1)
	b[2], b[3] = 1, byte(n*8-4)
	return ext{ProtoHopByHop, b}
}

func dstopts(n int) ext {
	e := hbh(n)
	e.typ = ProtoDstOpts
	return e
}

func routing0() ext { // Routing type 4 (SRH) with segments left 0 and one segment
	b := make([]byte, 24)
	b[1], b[2], b[3] = 2, 4, 0
	return ext{ProtoRouting, b}
}

func fragHdr(off uint16, more bool, id uint32) ext {
	b := make([]byte, 8)
	v := off << 3
	if more {
		v |= 1
	}
	binary.BigEndian.PutUint16(b[2:], v)
	binary.BigEndian.PutUint32(b[4:], id)
	return ext{ProtoFragment, b}
}

func ah() ext { // AH with a 12-byte ICV: payload length 4 means (4+2)*4 = 24 bytes
	b := make([]byte, 24)
	b[1] = 4
	binary.BigEndian.PutUint32(b[4:], 0x100)
	return ext{ProtoAH, b}
}

// withExt returns pkt (an IPv6 packet without extension headers) with exts
// inserted after the fixed header, in order. The upper-layer checksum does
// not cover extension headers, so it stays right.
func withExt(pkt []byte, exts ...ext) []byte {
	out := append([]byte(nil), pkt[:40]...)
	next := pkt[6]
	for i, e := range exts {
		if i == 0 {
			out[6] = e.typ
		}
		b := append([]byte(nil), e.body...)
		b[0] = next
		if i+1 < len(exts) {
			b[0] = exts[i+1].typ
		}
		out = append(out, b...)
	}
	out = append(out, pkt[40:]...)
	binary.BigEndian.PutUint16(out[4:], uint16(len(out)-40))
	return out
}

// frag4 cuts the IPv4 packet pkt (no options) into the fragment holding
// payload bytes [off*8, off*8+n), MF set if more.
func frag4(pkt []byte, off uint16, n int, more bool) []byte {
	data := pkt[20:]
	end := min(int(off)*8+n, len(data))
	out := append(append([]byte(nil), pkt[:20]...), data[int(off)*8:end]...)
	binary.BigEndian.PutUint16(out[2:], uint16(len(out)))
	v := off
	if more {
		v |= 0x2000
	}
	binary.BigEndian.PutUint16(out[6:], v)
	refFixIPv4(out)
	return out
}

// frag6 cuts the IPv6 packet pkt (no extension headers) into the fragment
// holding upper-layer bytes [off*8, off*8+n).
func frag6(pkt []byte, off uint16, n int, more bool, id uint32) []byte {
	data := pkt[40:]
	end := min(int(off)*8+n, len(data))
	out := append(append([]byte(nil), pkt[:40]...), data[int(off)*8:end]...)
	binary.BigEndian.PutUint16(out[4:], uint16(len(out)-40))
	return withExt(out, fragHdr(off, more, id))
}

// ---- Independent checksum code: byte by byte, no shared helpers. ----

func refSum(data []byte) uint16 {
	var s uint64
	for i := 0; i < len(data); i++ {
		if i%2 == 0 {
			s += uint64(data[i]) << 8
		} else {
			s += uint64(data[i])
		}
	}
	for s > 0xffff {
		s = s&0xffff + s>>16
	}
	return ^uint16(s)
}

func refPseudo(src, dst []byte, proto uint8, n int) []byte {
	b := append(append([]byte(nil), src...), dst...)
	if len(src) == 4 {
		return append(b, 0, proto, byte(n>>8), byte(n))
	}
	return append(b, byte(n>>24), byte(n>>16), byte(n>>8), byte(n), 0, 0, 0, proto)
}

// refChecksum computes the checksum of data with the 2 bytes at csumOff read
// as zero, after prefix (a pseudo header or nil).
func refChecksum(prefix, data []byte, csumOff int) uint16 {
	d := append(append([]byte(nil), prefix...), data...)
	d[len(prefix)+csumOff], d[len(prefix)+csumOff+1] = 0, 0
	return refSum(d)
}

func refFixIPv4(b []byte) {
	hl := int(b[0]&0xf) * 4
	binary.BigEndian.PutUint16(b[10:], refChecksum(nil, b[:hl], 10))
}

// checkPacket decodes pkt with gopacket, fails on a decoding error, and
// recomputes every checksum it can reach from scratch: the IPv4 header, and
// the TCP, UDP, ICMPv4 or ICMPv6 checksum of an unfragmented packet. A
// checksum must equal the recomputed value exactly (for UDP a computed 0 is
// sent as 0xffff, and 0 over IPv4 means none).
func checkPacket(t testing.TB, pkt []byte) gopacket.Packet {
	t.Helper()
	lt := layers.LayerTypeIPv4
	if len(pkt) > 0 && pkt[0]>>4 == 6 {
		lt = layers.LayerTypeIPv6
	}
	gp := gopacket.NewPacket(pkt, lt, gopacket.Default)
	// An error past the transport layer (gopacket guessing an application
	// protocol from a port) is not ours.
	if el := gp.ErrorLayer(); el != nil && gp.TransportLayer() == nil &&
		gp.Layer(layers.LayerTypeICMPv4) == nil && gp.Layer(layers.LayerTypeICMPv6) == nil {
		t.Fatalf("gopacket: %v\n% x", el.Error(), pkt)
	}
	var src, dst []byte
	switch l := gp.NetworkLayer().(type) {
	case *layers.IPv4:
		src, dst = l.SrcIP.To4(), l.DstIP.To4()
		if got, want := l.Checksum, refChecksum(nil, l.Contents, 10); got != want {
			t.Errorf("IPv4 header checksum %#04x, want %#04x", got, want)
		}
	case *layers.IPv6:
		src, dst = l.SrcIP.To16(), l.DstIP.To16()
	}
	if l, ok := gp.Layer(layers.LayerTypeTCP).(*layers.TCP); ok {
		seg := append(append([]byte(nil), l.Contents...), l.Payload...)
		if got, want := l.Checksum, refChecksum(refPseudo(src, dst, ProtoTCP, len(seg)), seg, 16); got != want {
			t.Errorf("TCP checksum %#04x, want %#04x", got, want)
		}
	}
	if l, ok := gp.Layer(layers.LayerTypeUDP).(*layers.UDP); ok {
		seg := append(append([]byte(nil), l.Contents...), l.Payload...)
		want := refChecksum(refPseudo(src, dst, ProtoUDP, len(seg)), seg, 6)
		if want == 0 {
			want = 0xffff
		}
		if got := l.Checksum; got != want && !(got == 0 && len(src) == 4) {
			t.Errorf("UDP checksum %#04x, want %#04x", got, want)
		}
	}
	if l, ok := gp.Layer(layers.LayerTypeICMPv4).(*layers.ICMPv4); ok {
		seg := append(append([]byte(nil), l.Contents...), l.Payload...)
		if got, want := l.Checksum, refChecksum(nil, seg, 2); got != want {
			t.Errorf("ICMPv4 checksum %#04x, want %#04x", got, want)
		}
	}
	if l, ok := gp.Layer(layers.LayerTypeICMPv6).(*layers.ICMPv6); ok {
		seg := append(append([]byte(nil), l.Contents...), l.Payload...)
		if got, want := l.Checksum, refChecksum(refPseudo(src, dst, ProtoICMPv6, len(seg)), seg, 2); got != want {
			t.Errorf("ICMPv6 checksum %#04x, want %#04x", got, want)
		}
	}
	return gp
}

// checkQuoted recomputes from scratch the checksums of a quoted packet that
// an ICMP error carries whole: the quoted IPv4 header always, and the quoted
// transport checksum when the quote holds the whole quoted packet.
func checkQuoted(t testing.TB, quoted []byte) {
	t.Helper()
	var src, dst []byte
	var proto uint8
	var l4 []byte
	switch quoted[0] >> 4 {
	case 4:
		hl := int(quoted[0]&0xf) * 4
		if got, want := binary.BigEndian.Uint16(quoted[10:]), refChecksum(nil, quoted[:hl], 10); got != want {
			t.Errorf("quoted IPv4 header checksum %#04x, want %#04x", got, want)
		}
		if int(binary.BigEndian.Uint16(quoted[2:])) != len(quoted) || binary.BigEndian.Uint16(quoted[6:])&0x3fff != 0 {
			return // cut, or a fragment
		}
		src, dst, proto, l4 = quoted[12:16], quoted[16:20], quoted[9], quoted[hl:]
	case 6:
		if 40+int(binary.BigEndian.Uint16(quoted[4:])) != len(quoted) || quoted[6] == ProtoHopByHop {
			return
		}
		src, dst, proto, l4 = quoted[8:24], quoted[24:40], quoted[6], quoted[40:]
	}
	var off int
	var prefix []byte
	switch proto {
	case ProtoTCP:
		off, prefix = 16, refPseudo(src, dst, proto, len(l4))
	case ProtoUDP:
		off, prefix = 6, refPseudo(src, dst, proto, len(l4))
	case ProtoICMP:
		off = 2
	case ProtoICMPv6:
		off, prefix = 2, refPseudo(src, dst, proto, len(l4))
	default:
		return
	}
	want := refChecksum(prefix, l4, off)
	if want == 0 && proto == ProtoUDP {
		want = 0xffff
	}
	if got := binary.BigEndian.Uint16(l4[off:]); got != want && !(got == 0 && proto == ProtoUDP && len(src) == 4) {
		t.Errorf("quoted proto %d checksum %#04x, want %#04x", proto, got, want)
	}
}

func bytesOf(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = seed + byte(i*7)
	}
	return b
}
